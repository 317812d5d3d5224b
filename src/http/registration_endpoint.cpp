// The registration API's HTTP side: bodies parsed and type-checked here, the use case in
// relay::RegistrationService, one log line and one counted result per request.
#include "http/registration_endpoint.hpp"

#include <algorithm>
#include <boost/beast/http/field.hpp>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "http/client_address.hpp"

namespace mp::http {
namespace {

namespace bhttp = boost::beast::http;
using nlohmann::json;

constexpr std::string_view kRegistrationsPath = "/v1/registrations";
constexpr std::string_view kRegistrationPrefix = "/v1/registrations/";

relay::RegistrationRefusal invalid(std::string field, std::string code, std::string message) {
  relay::RegistrationRefusal r;
  r.kind = relay::RefusalKind::invalid;
  r.field = std::move(field);
  r.code = std::move(code);
  r.message = std::move(message);
  return r;
}

// The body as a JSON object, or why not. Parser messages quote the input, so only the byte
// offset of the problem is given.
std::variant<json, relay::RegistrationRefusal> parse_object(std::string_view body) {
  json doc;
  try {
    doc = json::parse(body);
  } catch (const json::parse_error& e) {
    return invalid(
        "", "invalid_json",
        "the body is not valid JSON in UTF-8 (problem at byte " + std::to_string(e.byte) + ")");
  } catch (const json::exception&) {
    // e.g. a number too large for a double ("1e999"): nlohmann reports it as out_of_range, not
    // as a parse error (found by fuzz_registration).
    return invalid("", "invalid_json", "the body holds a number out of range");
  }
  if (!doc.is_object()) {
    return invalid("", "invalid_json", "the body must be a JSON object");
  }
  return doc;
}

// A string field of the object: "" when absent; a refusal when it holds another type.
std::optional<relay::RegistrationRefusal> read_string(const json& doc, const char* name,
                                                      std::string& out) {
  const auto it = doc.find(name);
  if (it == doc.end()) return std::nullopt;
  if (!it->is_string()) {
    return invalid(name, "invalid_" + std::string(name),
                   std::string(name) + " must be a JSON string, not " + it->type_name());
  }
  out = it->get<std::string>();
  return std::nullopt;
}

bool is_public_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
}

std::string result_label(store::CapabilityChange change) {
  return store::capability_change_name(change);
}

constexpr std::string_view kSelf = "self";

}  // namespace

std::variant<relay::RegisterRequest, relay::RegistrationRefusal> parse_register_body(
    std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* refused = std::get_if<relay::RegistrationRefusal>(&parsed)) return std::move(*refused);
  const json& doc = std::get<json>(parsed);
  relay::RegisterRequest r;
  for (const auto& [name, target] :
       {std::pair<const char*, std::string*>{"customer_id", &r.customer_id},
        {"registration_key", &r.registration_key},
        {"mailbox", &r.mailbox},
        {"device_token", &r.device_token},
        {"environment", &r.environment}}) {
    if (auto refused = read_string(doc, name, *target)) return std::move(*refused);
  }
  if (const auto it = doc.find("folder_id"); it != doc.end() && !it->is_null()) {
    std::string folder;
    if (auto refused = read_string(doc, "folder_id", folder)) return std::move(*refused);
    r.folder_id = std::move(folder);
  }
  if (auto refused = read_string(doc, "source", r.source)) return std::move(*refused);
  for (const auto& [name, target] :
       {std::pair<const char*, std::optional<std::string>*>{"client_state", &r.client_state},
        {"tenant_id", &r.tenant_id},
        {"user_id", &r.user_id}}) {
    if (const auto it = doc.find(name); it != doc.end() && !it->is_null()) {
      std::string value;
      if (auto refused = read_string(doc, name, value)) return std::move(*refused);
      *target = std::move(value);
    }
  }
  if (const auto it = doc.find("unread"); it != doc.end() && !it->is_null()) {
    r.unread = whole_number(*it);
    if (!r.unread) {
      return invalid("unread", "invalid_unread",
                     std::string("unread must be a whole JSON number, not ") + it->type_name());
    }
  }
  if (doc.contains("previous_device_token")) {
    return invalid("previous_device_token", "use_patch_self",
                   "previous_device_token is no longer accepted: move a registration to a new "
                   "token with PATCH /v1/registrations/self, its capability as 'Authorization: "
                   "Bearer <capability>' and {device_token, environment}");
  }
  return r;
}

std::variant<relay::MoveRequest, relay::RegistrationRefusal> parse_move_body(
    std::string_view body) {
  auto parsed = parse_object(body);
  if (auto* refused = std::get_if<relay::RegistrationRefusal>(&parsed)) return std::move(*refused);
  const json& doc = std::get<json>(parsed);
  relay::MoveRequest r;
  if (auto refused = read_string(doc, "device_token", r.device_token)) return std::move(*refused);
  if (auto refused = read_string(doc, "environment", r.environment)) return std::move(*refused);
  return r;
}

std::optional<std::int64_t> whole_number(const json& value) {
  if (!value.is_number_integer()) return std::nullopt;
  if (value.is_number_unsigned()) {
    return static_cast<std::int64_t>(
        std::min<std::uint64_t>(value.get<std::uint64_t>(), std::uint64_t{1} << 62));
  }
  return value.get<std::int64_t>();
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size() ||
      !boost::beast::iequals(authorization.substr(0, scheme.size()), scheme)) {
    return std::nullopt;
  }
  std::string_view token = authorization.substr(scheme.size());
  while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

beast_http::status refusal_status(relay::RefusalKind kind) noexcept {
  switch (kind) {
    case relay::RefusalKind::invalid:
      return bhttp::status::bad_request;
    case relay::RefusalKind::unauthorized:
      return bhttp::status::unauthorized;
    case relay::RefusalKind::forbidden:
      return bhttp::status::forbidden;
    case relay::RefusalKind::not_found:
      return bhttp::status::not_found;
    case relay::RefusalKind::device_refused:
      return bhttp::status::conflict;
    case relay::RefusalKind::wrong_region:
      return bhttp::status::misdirected_request;
    case relay::RefusalKind::rate_limited:
      return bhttp::status::too_many_requests;
    case relay::RefusalKind::unavailable:
      return bhttp::status::service_unavailable;
    case relay::RefusalKind::internal:
      return bhttp::status::internal_server_error;
    case relay::RefusalKind::gone:
      return bhttp::status::gone;
    case relay::RefusalKind::too_large:
      return bhttp::status::payload_too_large;
    case relay::RefusalKind::unsupported:
      return bhttp::status::unsupported_media_type;
  }
  return bhttp::status::internal_server_error;
}

RegistrationEndpoint::RegistrationEndpoint(relay::RegistrationService& service,
                                           prometheus::Registry& registry,
                                           std::vector<Cidr> trusted_proxies)
    : service_(service),
      trusted_proxies_(std::move(trusted_proxies)),
      requests_(prometheus::BuildCounter()
                    .Name("mailpush_registration_requests_total")
                    .Help("Registration API requests by result (what changed, or the error code)")
                    .Register(registry)) {
  for (const char* result : {"created", "unchanged", "replaced", "moved", "deleted"}) {
    requests_.Add({{"result", result}});
  }
}

void RegistrationEndpoint::add_routes(Router& router) {
  // The server refuses a longer body from its Content-Length, before reading any of it.
  const RouteOptions small{kMaxRegistrationBodyBytes, {}};
  router.add(
      beast_http::verb::post, std::string(kRegistrationsPath), "registration_create",
      [this](const Request& req, const RequestContext& ctx) { return create(req, ctx); }, small);
  router.add(
      beast_http::verb::patch, std::string(kRegistrationPrefix) + std::string(kSelf),
      "registration_move",
      [this](const Request& req, const RequestContext& ctx) { return move(req, ctx); }, small);
  router.add_prefix(
      beast_http::verb::delete_, std::string(kRegistrationPrefix), "registration_delete",
      [this](const Request& req, const RequestContext& ctx) { return remove(req, ctx); }, small);
}

relay::Caller RegistrationEndpoint::caller_of(const Request& req, const RequestContext& ctx) const {
  const IpAddress ip = request_caller(req, ctx, trusted_proxies_);
  return relay::Caller{ip.to_string(), ctx.local_port, address_limit_key(ip)};
}

std::optional<relay::RegistrationRefusal> RegistrationEndpoint::body_refusal(const Request& req) {
  relay::RegistrationRefusal r;
  if (req.body().size() > kMaxRegistrationBodyBytes) {
    r.kind = relay::RefusalKind::too_large;
    r.code = "too_large";
    r.message = "the body is larger than " + std::to_string(kMaxRegistrationBodyBytes) +
                " bytes; a registration is a few hundred";
    return r;
  }
  const std::string_view type = req[beast_http::field::content_type];
  const std::string_view media = type.substr(0, type.find(';'));
  if (!type.empty() && !boost::beast::iequals(media, "application/json")) {
    r.kind = relay::RefusalKind::unsupported;
    r.code = "unsupported_media_type";
    r.message = "send the body as Content-Type: application/json";
    return r;
  }
  return std::nullopt;
}

Response RegistrationEndpoint::refuse(const Request& req, const RequestContext& ctx,
                                      const relay::RegistrationRefusal& r,
                                      std::string_view customer_id) {
  const auto status = refusal_status(r.kind);
  requests_.Add({{"result", r.code}}).Increment();
  json fields = {{"route", ctx.route},
                 {"reason", r.code},
                 {"status", static_cast<int>(status)},
                 {"peer", caller_of(req, ctx).address},
                 {"message", r.message}};
  if (!r.field.empty()) fields["field"] = r.field;
  if (is_public_id(customer_id)) fields["customer"] = customer_id;
  // The operators' problems (5xx) are warnings; the callers' are information, throttled: any
  // client can cause them.
  if (static_cast<int>(status) >= 500) {
    log::warn("registration.refused", std::move(fields));
  } else {
    refused_log_.write(log::Level::info, "registration.refused", std::move(fields));
  }
  json body = {{"error", r.code}, {"message", r.message}};
  if (!r.field.empty()) body["field"] = r.field;
  if (!r.region_host.empty()) body["region_host"] = r.region_host;
  auto res = json_response(req, status, body.dump());
  if (r.retry_after.count() > 0) {
    res.set(beast_http::field::retry_after, std::to_string(r.retry_after.count()));
  }
  res.set(beast_http::field::cache_control, "no-store");
  return res;
}

namespace {

// The capability of `Authorization: Bearer`, or "" (which no registration has).
std::string presented_capability(const Request& req) {
  const auto token = bearer_token(req[beast_http::field::authorization]);
  return token ? std::string(*token) : std::string();
}

}  // namespace

boost::asio::awaitable<Response> RegistrationEndpoint::create(const Request& req,
                                                              const RequestContext& ctx) {
  if (auto refused = body_refusal(req)) co_return refuse(req, ctx, *refused, "");
  auto parsed = parse_register_body(req.body());
  if (auto* refused = std::get_if<relay::RegistrationRefusal>(&parsed)) {
    co_return refuse(req, ctx, *refused, "");
  }
  relay::RegisterRequest& request = std::get<relay::RegisterRequest>(parsed);
  if (auto presented = presented_capability(req); !presented.empty()) {
    request.capability = std::move(presented);
  }
  const relay::Caller caller = caller_of(req, ctx);
  auto outcome = co_await service_.register_device(request, caller);
  if (auto* refused = std::get_if<relay::RegistrationRefusal>(&outcome)) {
    co_return refuse(req, ctx, *refused, request.customer_id);
  }
  const relay::Registered& r = std::get<relay::Registered>(outcome);
  requests_.Add({{"result", result_label(r.change)}}).Increment();
  const bool created = r.change != store::CapabilityChange::unchanged;
  log::info("registration.registered", {{"customer", r.customer_id},
                                        {"registration", r.registration_id},
                                        {"change", result_label(r.change)},
                                        {"source", r.source},
                                        {"device", r.device},
                                        {"environment", r.environment},
                                        {"token_was_base64", r.token_was_base64},
                                        {"peer", caller.address}});
  json notes = json::array();
  if (r.token_was_base64) {
    notes.push_back(
        "the device token arrived as base64 and was stored as hex; APNs only accepts hex, so "
        "send the token bytes as hex");
  }
  if (r.change == store::CapabilityChange::replaced) {
    notes.push_back(
        "this mailbox was registered on this device with another capability, which has ended: "
        "subscribe again at Exchange with this listener URL, and keep the capability to refresh, "
        "move or delete the registration");
  }
  if (r.source == "graph") {
    json body = {{"customer_id", r.customer_id},
                 {"capability", r.capability},
                 {"source", "graph"},
                 {"notification_url", r.listener_url},
                 {"lifecycle_notification_url", r.lifecycle_url},
                 {"resource", relay::kGraphResource},
                 {"change_type", relay::kGraphChangeTypes},
                 {"expiration_max_minutes", relay::kGraphMaxExpirationMinutes},
                 {"device", r.device},
                 {"environment", r.environment},
                 {"change", result_label(r.change)},
                 {"notes", notes}};
    auto res =
        json_response(req, created ? bhttp::status::created : bhttp::status::ok, body.dump());
    res.set(beast_http::field::cache_control, "no-store");
    co_return res;
  }
  json event_types = json::array();
  for (auto type : relay::kSubscribedEventTypes) event_types.push_back(type);
  json body = {{"customer_id", r.customer_id},
               {"source", "ews"},
               {"capability", r.capability},
               {"listener_url", r.listener_url},
               {"status_frequency_minutes", r.status_frequency_minutes},
               {"event_types", event_types},
               {"folder", "inbox"},
               {"folder_id", request.folder_id ? json(*request.folder_id) : json(nullptr)},
               {"device", r.device},
               {"environment", r.environment},
               {"change", result_label(r.change)},
               {"notes", notes}};
  auto res = json_response(req, created ? bhttp::status::created : bhttp::status::ok, body.dump());
  // The capability is a secret: no cache keeps it.
  res.set(beast_http::field::cache_control, "no-store");
  co_return res;
}

boost::asio::awaitable<Response> RegistrationEndpoint::move(const Request& req,
                                                            const RequestContext& ctx) {
  if (auto refused = body_refusal(req)) co_return refuse(req, ctx, *refused, "");
  auto parsed = parse_move_body(req.body());
  if (auto* refused = std::get_if<relay::RegistrationRefusal>(&parsed)) {
    co_return refuse(req, ctx, *refused, "");
  }
  relay::MoveRequest& request = std::get<relay::MoveRequest>(parsed);
  request.capability = presented_capability(req);
  const relay::Caller caller = caller_of(req, ctx);
  auto outcome = co_await service_.move(request, caller);
  if (auto* refused = std::get_if<relay::RegistrationRefusal>(&outcome)) {
    co_return refuse(req, ctx, *refused, "");
  }
  const relay::Moved& r = std::get<relay::Moved>(outcome);
  const char* change = r.moved ? "moved" : "unchanged";
  requests_.Add({{"result", change}}).Increment();
  log::info("registration.moved", {{"customer", r.customer_id},
                                   {"change", change},
                                   {"device", r.device},
                                   {"environment", r.environment},
                                   {"peer", caller.address}});
  auto res = json_response(req, bhttp::status::ok,
                           json{{"customer_id", r.customer_id},
                                {"device", r.device},
                                {"environment", r.environment},
                                {"change", change}}
                               .dump());
  res.set(beast_http::field::cache_control, "no-store");
  co_return res;
}

boost::asio::awaitable<Response> RegistrationEndpoint::remove(const Request& req,
                                                              const RequestContext& ctx) {
  if (ctx.path_rest != kSelf) {
    relay::RegistrationRefusal gone;
    gone.kind = relay::RefusalKind::gone;
    gone.code = "registration_ids_gone";
    gone.message =
        "registrations are no longer deleted by id: DELETE /v1/registrations/self with the "
        "registration's capability as 'Authorization: Bearer <capability>'";
    co_return refuse(req, ctx, gone, "");
  }
  if (auto refused = body_refusal(req)) co_return refuse(req, ctx, *refused, "");
  const relay::Caller caller = caller_of(req, ctx);
  // A named request: GCC 12 destroys a braced temporary inside co_await twice.
  const relay::UnregisterRequest request{presented_capability(req)};
  auto outcome = co_await service_.unregister(request, caller);
  if (auto* refused = std::get_if<relay::RegistrationRefusal>(&outcome)) {
    co_return refuse(req, ctx, *refused, "");
  }
  const relay::Unregistered& r = std::get<relay::Unregistered>(outcome);
  requests_.Add({{"result", "deleted"}}).Increment();
  log::info("registration.deleted", {{"customer", r.customer_id}, {"peer", caller.address}});
  auto res = json_response(req, bhttp::status::ok,
                           json{{"customer_id", r.customer_id}, {"state", "deleted"}}.dump());
  res.set(beast_http::field::cache_control, "no-store");
  co_return res;
}

}  // namespace mp::http
