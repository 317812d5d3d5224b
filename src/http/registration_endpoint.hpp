// The registration API over HTTPS (DESIGN.md flow 3; docs/registration-api.md), JSON in and out:
//
//   POST   /v1/registrations        {customer_id, registration_key, mailbox, device_token,
//                                    environment, previous_device_token?}
//                                   -> 201 new listener URL / 200 the same one as before
//   DELETE /v1/registrations/{id}   {customer_id, registration_key} -> 200 / 404
//
// Refusals are {"error": code, "message": text, "field"?: name}: 400, 401, 403, 404, 409, 413,
// 415, 421, 429 and 503 carry Retry-After. No answer or log line holds a registration key, a
// mailbox address or a full device token; the listener URL is only in the reply.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <cstddef>
#include <string_view>
#include <variant>

#include "common/log.hpp"
#include "http/router.hpp"
#include "relay/registration_service.hpp"

namespace mp::http {

// A request body over this is refused with 413 before it is parsed.
inline constexpr std::size_t kMaxRegistrationBodyBytes = 16 * 1024;

// The bodies, parsed and type-checked (values are checked by the service). Pure, for tests.
std::variant<relay::RegisterRequest, relay::RegistrationRefusal> parse_register_body(
    std::string_view body);
// `id_text` is the path's {id}.
std::variant<relay::UnregisterRequest, relay::RegistrationRefusal> parse_unregister_body(
    std::string_view body, std::string_view id_text);
// The HTTP status of a refusal.
beast_http::status refusal_status(relay::RefusalKind kind) noexcept;

class RegistrationEndpoint {
 public:
  RegistrationEndpoint(relay::RegistrationService& service, prometheus::Registry& registry);

  void add_routes(Router& router);

 private:
  boost::asio::awaitable<Response> create(const Request& req, const RequestContext& ctx);
  boost::asio::awaitable<Response> remove(const Request& req, const RequestContext& ctx);
  // The JSON refusal, counted and logged.
  Response refuse(const Request& req, const RequestContext& ctx,
                  const relay::RegistrationRefusal& r, std::string_view customer_id);
  // A refusal of the body before it reaches the service (size, media type), or nullopt.
  static std::optional<relay::RegistrationRefusal> body_refusal(const Request& req);

  relay::RegistrationService& service_;
  prometheus::Family<prometheus::Counter>& requests_;
  log::Throttle refused_log_;
};

}  // namespace mp::http
