// POST /ews/v1/notify/{secret}: the HTTP face of the EWS listener. Checks what HTTP can tell
// (content type, SOAPAction, caller address), parses the SOAP body and answers what the
// callback use case decides: OK, Unsubscribe, 403, or 503 so that Exchange retries.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <string_view>
#include <vector>

#include "common/cidr.hpp"
#include "common/log.hpp"
#include "ews/send_notification.hpp"
#include "http/client_address.hpp"
#include "http/router.hpp"
#include "relay/ews_callback_service.hpp"

namespace mp::http {

inline constexpr std::string_view kEwsNotifyPrefix = "/ews/v1/notify/";

struct EwsEndpointOptions {
  ews::ParseLimits limits;
  std::vector<Cidr> trusted_proxies;  // whose X-Forwarded-For is believed
};

class EwsEndpoint {
 public:
  EwsEndpoint(relay::EwsCallbackService& service, EwsEndpointOptions options,
              prometheus::Registry& registry);
  void add_routes(Router& router);
  // Before the body: an unknown secret is answered from the header alone (see
  // EwsCallbackService::precheck), so made-up URLs cost neither a body read nor an XML parse.
  boost::asio::awaitable<std::optional<Response>> check_header(const RequestHeader& req,
                                                               const RequestContext& ctx);
  boost::asio::awaitable<Response> handle(const Request& req, const RequestContext& ctx);

 private:
  Response refuse(const RequestHeader& req, beast_http::status status, std::string_view reason,
                  std::string_view message);
  // What Exchange is told for an outcome other than a recorded callback.
  Response answer(const RequestHeader& req, const relay::CallbackResult& outcome);

  relay::EwsCallbackService& service_;
  EwsEndpointOptions options_;
  prometheus::Family<prometheus::Counter>& refused_;
  log::Throttle refused_log_;
  log::Throttle unknown_log_;  // addresses over their unknown-secret limit
};

}  // namespace mp::http
