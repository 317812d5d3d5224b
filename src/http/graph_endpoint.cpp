// HTTP checks and replies of the Graph listener endpoints.
#include "http/graph_endpoint.hpp"

#include <boost/beast/core/string.hpp>
#include <nlohmann/json.hpp>

#include "common/text.hpp"
#include "http/client_address.hpp"
#include "http/registration_endpoint.hpp"
#include "relay/registration_service.hpp"

namespace mp::http {
namespace {

// "application/json", any case, with or without parameters (Graph sends charset=utf-8).
bool is_json(std::string_view content_type) {
  const std::string_view type =
      trim_spaces_and_tabs(content_type.substr(0, content_type.find(';')));
  return boost::beast::iequals(type, "application/json");
}

Response json_error(const RequestHeader& req, beast_http::status status, std::string_view code,
                    std::string_view message) {
  return json_response(req, status, nlohmann::json{{"error", code}, {"message", message}}.dump());
}

}  // namespace

GraphEndpoint::GraphEndpoint(relay::GraphService& service, GraphEndpointOptions options,
                             prometheus::Registry& registry)
    : service_(service),
      options_(std::move(options)),
      refused_(prometheus::BuildCounter()
                   .Name("mailpush_graph_refused_total")
                   .Help("Graph requests refused before reaching a registration, by reason")
                   .Register(registry)) {}

void GraphEndpoint::add_routes(Router& router) {
  for (const auto& [prefix, name] : {std::pair{kGraphNotifyPrefix, "graph_notify"},
                                     {kGraphLifecyclePrefix, "graph_lifecycle"}}) {
    RouteOptions options;
    options.max_body_bytes = options_.limits.max_body_bytes;
    router.add_prefix(
        beast_http::verb::post, std::string(prefix), name,
        [this](const Request& req, const RequestContext& ctx) { return handle(req, ctx); },
        std::move(options));
  }
  RouteOptions small;
  small.max_body_bytes = 1024;
  router.add(
      beast_http::verb::put, std::string(kGraphUnreadPath), "registration_unread",
      [this](const Request& req, const RequestContext& ctx) { return resync(req, ctx); },
      std::move(small));
}

boost::asio::awaitable<Response> GraphEndpoint::resync(const Request& req,
                                                       const RequestContext& ctx) {
  if (!is_json(req[beast_http::field::content_type])) {
    co_return refuse(req, beast_http::status::unsupported_media_type, "content_type",
                     "Content-Type must be application/json");
  }
  const auto capability = bearer_token(req[beast_http::field::authorization]);
  std::optional<std::int64_t> unread;
  try {
    const auto doc = nlohmann::json::parse(req.body());
    if (doc.is_object() && doc.contains("unread")) unread = whole_number(doc["unread"]);
  } catch (const nlohmann::json::exception&) {
  }
  if (!unread || *unread < 0 || *unread > relay::kMaxStatedUnread) {
    co_return refuse(req, beast_http::status::bad_request, "invalid_unread",
                     "the body must be {\"unread\": N}, N the Inbox's unread count, 0 to " +
                         std::to_string(relay::kMaxStatedUnread));
  }
  if (!capability) {
    co_return json_error(req, beast_http::status::unauthorized, "missing_capability",
                         "present the registration's capability as 'Authorization: Bearer "
                         "<capability>'");
  }
  const IpAddress caller = request_caller(req, ctx, options_.trusted_proxies);
  const auto result =
      co_await service_.resync(*capability, static_cast<std::uint32_t>(*unread), caller);
  if (result.outcome != relay::GraphOutcome::accepted) {
    if (result.outcome == relay::GraphOutcome::unknown) {
      co_return json_error(req, beast_http::status::not_found, "not_found",
                           "no active Graph registration has this capability");
    }
    co_return answer(req, result);
  }
  log::info(
      "registration.unread_resync",
      {{"customer", result.customer_id}, {"unread", *unread}, {"badge_marked", result.marked}});
  co_return json_response(req, beast_http::status::ok, nlohmann::json{{"unread", *unread}}.dump());
}

Response GraphEndpoint::refuse(const RequestHeader& req, beast_http::status status,
                               std::string_view reason, std::string message) {
  refused_.Add({{"reason", std::string(reason)}}).Increment();
  refused_log_.write(log::Level::warn, "graph.refused", {{"reason", reason}, {"message", message}});
  return json_error(req, status, reason, message);
}

boost::asio::awaitable<Response> GraphEndpoint::handle(const Request& req,
                                                       const RequestContext& ctx) {
  const IpAddress caller = request_caller(req, ctx, options_.trusted_proxies);
  if (auto token = graph::validation_token(req.target())) {
    if (auto* bad = std::get_if<graph::TokenError>(&*token)) {
      co_return refuse(req, beast_http::status::bad_request, "validation_token", bad->message);
    }
    const auto result = co_await service_.validate(ctx.path_rest, caller);
    if (result.outcome != relay::GraphOutcome::accepted) co_return answer(req, result);
    validated_log_.write(log::Level::info, "graph.validated",
                         {{"customer", result.customer_id}, {"route", ctx.route}});
    Response res = make_response(req, beast_http::status::ok, "text/plain; charset=utf-8",
                                 std::get<std::string>(*token));
    res.set("X-Content-Type-Options", "nosniff");
    co_return res;
  }
  if (!is_json(req[beast_http::field::content_type])) {
    co_return refuse(req, beast_http::status::unsupported_media_type, "content_type",
                     "Content-Type must be application/json");
  }
  auto parsed = graph::parse_notifications(req.body(), options_.limits);
  if (auto* error = std::get_if<graph::ParseError>(&parsed)) {
    const auto status = error->refusal == graph::Refusal::too_large
                            ? beast_http::status::payload_too_large
                            : beast_http::status::bad_request;
    co_return refuse(req, status, graph::refusal_name(error->refusal), error->message);
  }
  const auto result =
      co_await service_.notify(ctx.path_rest, std::get<graph::Notifications>(parsed), caller);
  co_return answer(req, result);
}

Response GraphEndpoint::answer(const RequestHeader& req, const relay::GraphResult& result) {
  switch (result.outcome) {
    case relay::GraphOutcome::accepted: {
      const auto& t = result.tally;
      if (t.wrong_client_state > 0 || t.wrong_tenant > 0) {
        // Dropped silently for the caller (still 202), but an operator sees it: a misbuilt app,
        // or someone who learned a URL without its clientState.
        dropped_log_.write(log::Level::warn, "graph.dropped",
                           {{"customer", result.customer_id},
                            {"wrong_client_state", t.wrong_client_state},
                            {"wrong_tenant", t.wrong_tenant}});
      }
      if (t.reauthorization_required + t.subscription_removed + t.missed > 0) {
        log::info("graph.lifecycle", {{"customer", result.customer_id},
                                      {"reauthorization_required", t.reauthorization_required},
                                      {"subscription_removed", t.subscription_removed},
                                      {"missed", t.missed}});
      } else if (log::enabled(log::Level::debug)) {
        log::debug("graph.notification", {{"customer", result.customer_id},
                                          {"created", t.created},
                                          {"deleted", t.deleted},
                                          {"marked", result.marked}});
      }
      Response res{beast_http::status::accepted, req.version()};
      res.set(beast_http::field::cache_control, "no-store");
      res.keep_alive(wants_keep_alive(req));
      res.prepare_payload();
      return res;
    }
    case relay::GraphOutcome::unknown:
      // Made-up URLs are what a scan produces: counted, not logged one by one.
      return json_error(req, beast_http::status::not_found, "unknown_registration",
                        "no active Graph registration has this URL");
    case relay::GraphOutcome::rate_limited: {
      auto res = json_error(req, beast_http::status::too_many_requests, "rate_limited",
                            "too many requests for this URL or from this address; retry after "
                            "Retry-After");
      res.set(beast_http::field::retry_after, "10");
      return res;
    }
    case relay::GraphOutcome::unavailable:
      break;
  }
  auto res = json_error(req, beast_http::status::service_unavailable, "unavailable",
                        "temporarily unable to record notifications; retry");
  res.set(beast_http::field::retry_after, "30");
  return res;
}

}  // namespace mp::http
