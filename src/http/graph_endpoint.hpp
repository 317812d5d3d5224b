// POST /graph/v1/notify/{secret} and /graph/v1/lifecycle/{secret}: the HTTP face of the Graph
// listener (issue 20). A request with ?validationToken= is Graph validating the URL: 200 with
// the decoded token as text/plain for an active Graph registration, 404 otherwise, no write.
// Any other request is a notification body: 202 once recorded, 400 for a body that is not the
// documented JSON (nothing of it recorded), 404 for an unknown registration, 503 when the
// database cannot record (Graph retries).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <string_view>
#include <vector>

#include "common/cidr.hpp"
#include "common/log.hpp"
#include "graph/notification.hpp"
#include "http/router.hpp"
#include "relay/graph_service.hpp"

namespace mp::http {

inline constexpr std::string_view kGraphNotifyPrefix = "/graph/v1/notify/";
inline constexpr std::string_view kGraphLifecyclePrefix = "/graph/v1/lifecycle/";
// The app's resync of a Graph registration's count, with its capability as the bearer token.
inline constexpr std::string_view kGraphUnreadPath = "/v1/registrations/self/unread";

struct GraphEndpointOptions {
  graph::ParseLimits limits;
  std::vector<Cidr> trusted_proxies;  // whose X-Forwarded-For is believed
};

class GraphEndpoint {
 public:
  GraphEndpoint(relay::GraphService& service, GraphEndpointOptions options,
                prometheus::Registry& registry);
  void add_routes(Router& router);
  boost::asio::awaitable<Response> handle(const Request& req, const RequestContext& ctx);
  // PUT /v1/registrations/self/unread {"unread": N}.
  boost::asio::awaitable<Response> resync(const Request& req, const RequestContext& ctx);

 private:
  Response refuse(const RequestHeader& req, beast_http::status status, std::string_view reason,
                  std::string message);
  Response answer(const RequestHeader& req, const relay::GraphResult& result);

  relay::GraphService& service_;
  GraphEndpointOptions options_;
  prometheus::Family<prometheus::Counter>& refused_;
  log::Throttle refused_log_;
  log::Throttle dropped_log_;
  log::Throttle validated_log_;
};

}  // namespace mp::http
