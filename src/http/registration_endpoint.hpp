// The registration API over HTTPS (DESIGN.md flow 3; docs/registration-api.md), JSON in and out:
//
//   POST   /v1/registrations       {customer_id, registration_key, mailbox, device_token,
//                                   environment} [+ Authorization: Bearer <capability>]
//                                  -> 201 a new capability and listener URL (the registration
//                                     of this mailbox and device it replaces ends), or 200 the
//                                     presented one refreshed
//   PATCH  /v1/registrations/self  Bearer + {device_token, environment} -> 200 moved / 404
//   DELETE /v1/registrations/self  Bearer -> 200 / 404
//   DELETE /v1/registrations/{id}  -> 410: registration ids are no longer a handle
//
// A missing, made-up, ended or wrong capability is answered 404 alike. Refusals are
// {"error": code, "message": text, "field"?: name}: 400, 401, 403, 404, 409, 410, 413, 415, 421,
// 429 and 503 carry Retry-After. No answer or log line holds a registration key, a capability,
// a mailbox address or a full device token; the capability is only in the reply.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "common/cidr.hpp"
#include "common/log.hpp"
#include "http/router.hpp"
#include "relay/registration_service.hpp"

namespace mp::http {

// A request body over this is refused with 413 before it is parsed.
inline constexpr std::size_t kMaxRegistrationBodyBytes = 16 * 1024;

// The bodies, parsed and type-checked (values are checked by the service). Pure, for tests.
std::variant<relay::RegisterRequest, relay::RegistrationRefusal> parse_register_body(
    std::string_view body);
std::variant<relay::MoveRequest, relay::RegistrationRefusal> parse_move_body(std::string_view body);
// The token of an `Authorization: Bearer <token>` header value; nullopt for another scheme or
// none.
std::optional<std::string_view> bearer_token(std::string_view authorization);

// A JSON number that is a whole number, as an int64 (an unsigned one past 2^62 is held at 2^62,
// beyond any limit a caller checks it against); nullopt for any other value.
std::optional<std::int64_t> whole_number(const nlohmann::json& value);
// The HTTP status of a refusal.
beast_http::status refusal_status(relay::RefusalKind kind) noexcept;

class RegistrationEndpoint {
 public:
  // `trusted_proxies`: load balancers whose X-Forwarded-For names the caller (the caller's
  // address is what refused credentials are limited by, and what the audit log records).
  RegistrationEndpoint(relay::RegistrationService& service, prometheus::Registry& registry,
                       std::vector<Cidr> trusted_proxies = {});

  void add_routes(Router& router);

 private:
  boost::asio::awaitable<Response> create(const Request& req, const RequestContext& ctx);
  boost::asio::awaitable<Response> move(const Request& req, const RequestContext& ctx);
  boost::asio::awaitable<Response> remove(const Request& req, const RequestContext& ctx);
  // The JSON refusal, counted and logged.
  Response refuse(const Request& req, const RequestContext& ctx,
                  const relay::RegistrationRefusal& r, std::string_view customer_id);
  // A refusal of the body before it reaches the service (size, media type), or nullopt.
  static std::optional<relay::RegistrationRefusal> body_refusal(const Request& req);
  // The caller: its address behind trusted proxies, and its per-address limit key.
  relay::Caller caller_of(const Request& req, const RequestContext& ctx) const;

  relay::RegistrationService& service_;
  std::vector<Cidr> trusted_proxies_;
  prometheus::Family<prometheus::Counter>& requests_;
  log::Throttle refused_log_;
};

}  // namespace mp::http
