// POST /ews/v1/notify/{secret}: the HTTP face of the EWS listener. Checks what HTTP can tell
// (content type, SOAPAction, caller address), parses the SOAP body and answers what the
// callback use case decides: OK, Unsubscribe, 403, or 503 so that Exchange retries.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <string_view>
#include <vector>

#include "common/cidr.hpp"
#include "ews/send_notification.hpp"
#include "http/router.hpp"
#include "relay/ews_callback_service.hpp"

namespace mp::http {

inline constexpr std::string_view kEwsNotifyPrefix = "/ews/v1/notify/";

struct EwsEndpointOptions {
  ews::ParseLimits limits;
  std::vector<Cidr> trusted_proxies;  // whose X-Forwarded-For is believed
};

// The caller as seen through trusted proxies: X-Forwarded-For is read right to left, skipping
// trusted proxies, and only when the connection itself comes from one. Anything unparsable
// stops the walk at the last address that is known.
IpAddress caller_address(const IpAddress& peer, std::string_view forwarded_for,
                         const std::vector<Cidr>& trusted_proxies);
// caller_address of a request: its connection's peer and every X-Forwarded-For line, in order
// (a proxy may add its own line after the client's).
IpAddress request_caller(const Request& req, const RequestContext& ctx,
                         const std::vector<Cidr>& trusted_proxies);

class EwsEndpoint {
 public:
  EwsEndpoint(relay::EwsCallbackService& service, EwsEndpointOptions options,
              prometheus::Registry& registry);
  void add_routes(Router& router);
  boost::asio::awaitable<Response> handle(const Request& req, const RequestContext& ctx);

 private:
  Response refuse(const Request& req, beast_http::status status, std::string_view reason,
                  std::string_view message);

  relay::EwsCallbackService& service_;
  EwsEndpointOptions options_;
  prometheus::Family<prometheus::Counter>& refused_;
};

}  // namespace mp::http
