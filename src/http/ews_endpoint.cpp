// HTTP checks and replies of the EWS listener endpoint.
#include "http/ews_endpoint.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include "common/log.hpp"
#include "common/text.hpp"

namespace mp::http {
namespace {

constexpr std::string_view kSendNotificationAction =
    "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification";

// "text/xml; charset=utf-8" (any case, charset optional but UTF-8 if given).
bool acceptable_content_type(std::string_view value) {
  const auto semicolon = value.find(';');
  if (!boost::beast::iequals(trim_spaces_and_tabs(value.substr(0, semicolon)), "text/xml"))
    return false;
  if (semicolon == std::string_view::npos) return true;
  std::string_view params = value.substr(semicolon + 1);
  while (!params.empty()) {
    const auto next = params.find(';');
    const std::string_view p = trim_spaces_and_tabs(params.substr(0, next));
    const auto eq = p.find('=');
    if (eq != std::string_view::npos &&
        boost::beast::iequals(trim_spaces_and_tabs(p.substr(0, eq)), "charset")) {
      std::string_view charset = trim_spaces_and_tabs(p.substr(eq + 1));
      if (charset.size() >= 2 && charset.front() == '"' && charset.back() == '"') {
        charset = charset.substr(1, charset.size() - 2);
      }
      if (!boost::beast::iequals(charset, "utf-8") && !boost::beast::iequals(charset, "utf8"))
        return false;
    }
    if (next == std::string_view::npos) break;
    params.remove_prefix(next + 1);
  }
  return true;
}

Response soap_response(const RequestHeader& req, beast_http::status status, std::string body) {
  return make_response(req, status, "text/xml; charset=utf-8", std::move(body));
}

}  // namespace

EwsEndpoint::EwsEndpoint(relay::EwsCallbackService& service, EwsEndpointOptions options,
                         prometheus::Registry& registry)
    : service_(service),
      options_(std::move(options)),
      refused_(prometheus::BuildCounter()
                   .Name("mailpush_ews_refused_total")
                   .Help("EWS callbacks refused before reaching a registration, by reason")
                   .Register(registry)) {}

void EwsEndpoint::add_routes(Router& router) {
  RouteOptions options;
  options.header_check = [this](const RequestHeader& req, const RequestContext& ctx) {
    return check_header(req, ctx);
  };
  router.add_prefix(
      beast_http::verb::post, std::string(kEwsNotifyPrefix), "ews_notify",
      [this](const Request& req, const RequestContext& ctx) { return handle(req, ctx); },
      std::move(options));
}

boost::asio::awaitable<std::optional<Response>> EwsEndpoint::check_header(
    const RequestHeader& req, const RequestContext& ctx) {
  const IpAddress caller = request_caller(req, ctx, options_.trusted_proxies);
  auto outcome = co_await service_.precheck(ctx.path_rest, caller);
  if (!outcome) co_return std::nullopt;
  co_return answer(req, *outcome);
}

Response EwsEndpoint::refuse(const RequestHeader& req, beast_http::status status,
                             std::string_view reason, std::string_view message) {
  refused_.Add({{"reason", std::string(reason)}}).Increment();
  refused_log_.write(log::Level::warn, "ews.refused", {{"reason", reason}, {"message", message}});
  return soap_response(req, status, ews::build_fault("soap:Client", message));
}

boost::asio::awaitable<Response> EwsEndpoint::handle(const Request& req,
                                                     const RequestContext& ctx) {
  if (!acceptable_content_type(req[beast_http::field::content_type])) {
    co_return refuse(req, beast_http::status::unsupported_media_type, "content_type",
                     "Content-Type must be text/xml; charset=utf-8");
  }
  // SOAPAction comes quoted or not (Exchange Online sends it bare); absent is tolerated.
  std::string_view action = trim_spaces_and_tabs(req["SOAPAction"]);
  if (action.size() >= 2 && action.front() == '"' && action.back() == '"') {
    action = action.substr(1, action.size() - 2);
  }
  if (!action.empty() && action != kSendNotificationAction) {
    co_return refuse(req, beast_http::status::bad_request, "soap_action",
                     "SOAPAction must be " + std::string(kSendNotificationAction));
  }
  auto parsed = ews::parse_send_notification(req.body(), options_.limits);
  if (auto* error = std::get_if<ews::ParseError>(&parsed)) {
    const auto status = error->refusal == ews::Refusal::too_large
                            ? beast_http::status::payload_too_large
                            : beast_http::status::bad_request;
    co_return refuse(req, status, ews::refusal_name(error->refusal), error->message);
  }
  const auto& callback = std::get<ews::SendNotification>(parsed);

  const IpAddress caller = request_caller(req, ctx, options_.trusted_proxies);
  const auto outcome = co_await service_.handle(ctx.path_rest, callback, caller);

  if (outcome.outcome == relay::CallbackOutcome::ok) {
    // The hot path: no log record is built unless debug logging is on.
    if (log::enabled(log::Level::debug)) {
      log::debug("ews.callback", {{"result", "ok"}, {"customer", outcome.customer_id}});
    }
    co_return soap_response(req, beast_http::status::ok,
                            ews::build_reply(ews::SubscriptionStatus::ok));
  }
  co_return answer(req, outcome);
}

Response EwsEndpoint::answer(const RequestHeader& req, const relay::CallbackResult& outcome) {
  nlohmann::json fields = {{"result", relay::callback_outcome_name(outcome.outcome)},
                           {"reason", outcome.reason}};
  if (!outcome.customer_id.empty()) fields["customer"] = outcome.customer_id;
  switch (outcome.outcome) {
    case relay::CallbackOutcome::ok:
      return soap_response(req, beast_http::status::ok,
                           ews::build_reply(ews::SubscriptionStatus::ok));
    case relay::CallbackOutcome::unsubscribe_unknown:
      // Unknown secrets are what a flood of made-up URLs produces: debug only, counted in
      // mailpush_ews_callbacks_total{result="unsubscribe_unknown"}.
      log::debug("ews.unsubscribe", std::move(fields));
      return soap_response(req, beast_http::status::ok,
                           ews::build_reply(ews::SubscriptionStatus::unsubscribe));
    case relay::CallbackOutcome::unsubscribe_superseded:
      log::info("ews.unsubscribe", std::move(fields));
      return soap_response(req, beast_http::status::ok,
                           ews::build_reply(ews::SubscriptionStatus::unsubscribe));
    case relay::CallbackOutcome::forbidden:
      log::warn("ews.forbidden", std::move(fields));
      return soap_response(req, beast_http::status::forbidden,
                           ews::build_fault("soap:Client", "caller not allowed for this customer"));
    case relay::CallbackOutcome::invalid:
      return refuse(req, beast_http::status::bad_request, "invalid_values", outcome.reason);
    case relay::CallbackOutcome::rate_limited: {
      unknown_log_.write(log::Level::info, "ews.rate_limited", std::move(fields));
      auto res = soap_response(
          req, beast_http::status::service_unavailable,
          ews::build_fault("soap:Server", "too many callbacks for now; retry after Retry-After"));
      res.set(beast_http::field::retry_after, "10");
      return res;
    }
    case relay::CallbackOutcome::unavailable:
      break;
  }
  log::warn("ews.unavailable", std::move(fields));
  auto res =
      soap_response(req, beast_http::status::service_unavailable,
                    ews::build_fault("soap:Server", "temporarily unable to record events; retry"));
  res.set(beast_http::field::retry_after, "30");
  return res;
}

}  // namespace mp::http
