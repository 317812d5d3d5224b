// The registration use case: checks here, the rows in store/registrations (one transaction per
// call, with its audit row), the secrets from keys/region_secret.
#include "relay/registration_service.hpp"

#include <algorithm>

#include "apns/device_token.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/text.hpp"
#include "store/registration_counts.hpp"

namespace mp::relay {
namespace asio = boost::asio;

namespace {

// Longer values are refused before any other work (the body itself is at most 16 KiB).
constexpr std::size_t kMaxCustomerIdChars = 64;
constexpr std::size_t kMaxKeyChars = 256;
constexpr std::size_t kMaxRawMailboxChars = 1024;
constexpr std::size_t kMaxRawTokenChars = 1024;

RegistrationRefusal invalid(std::string field, std::string code, std::string message) {
  RegistrationRefusal r;
  r.kind = RefusalKind::invalid;
  r.field = std::move(field);
  r.code = std::move(code);
  r.message = std::move(message);
  return r;
}

RegistrationRefusal refusal(RefusalKind kind, std::string code, std::string message,
                            std::chrono::seconds retry_after = std::chrono::seconds(0)) {
  RegistrationRefusal r;
  r.kind = kind;
  r.code = std::move(code);
  r.message = std::move(message);
  r.retry_after = retry_after;
  return r;
}

const RegistrationRefusal& unauthorized() {
  // One answer for an unknown Customer ID and a wrong key: no oracle for either.
  static const RegistrationRefusal r =
      refusal(RefusalKind::unauthorized, "invalid_credentials",
              "the Customer ID and registration key do not match a customer of this region: "
              "check both in the app's configuration (the key is shown once, at onboarding)");
  return r;
}

RegistrationRefusal customer_refused(const std::string& state) {
  return refusal(RefusalKind::forbidden, "customer_" + state,
                 "this customer is " + state +
                     " in this region: registrations are refused until its administrator "
                     "enables it in the portal");
}

RegistrationRefusal database_refusal(const Error& e) {
  if (e.code == Errc::unavailable || e.code == Errc::busy) {
    return refusal(RefusalKind::unavailable, "unavailable",
                   "the region's database is unavailable: nothing was changed; try again later",
                   std::chrono::seconds(30));
  }
  // The message may quote values the database held (a duplicate key's value): the log line
  // gets the part before the first quote only.
  const std::string& m = e.message;
  log::error("registration.database_failed",
             {{"error", m.substr(0, m.find('\''))}, {"code", errc_name(e.code)}});
  return refusal(RefusalKind::internal, "internal",
                 "the request failed inside the relay: nothing was changed; the operators have "
                 "the details");
}

bool is_customer_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

std::string cache_key(const Bytes& hash) {
  return std::string(hash.begin(), hash.end());
}

// Apple's tokens are 32 bytes; shorter ones are refused.
constexpr std::size_t kMinDeviceTokenHexChars = 64;

// The token as the app sent it, without what normalize_device_token ignores, lowercased:
// equal to the normalised token exactly when it was sent as hex.
std::string plain_token_text(std::string_view raw) {
  std::string out;
  for (char c : raw) {
    if (c == '<' || c == '>' || c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  return out;
}

}  // namespace

std::optional<RegistrationRefusal> check_customer_id(std::string_view id,
                                                     const RegistrationOptions& options) {
  const std::size_t dash = id.find('-');
  if (id.empty() || id.size() > kMaxCustomerIdChars || dash == 0 ||
      dash == std::string_view::npos || !std::all_of(id.begin(), id.end(), is_customer_id_char)) {
    return invalid("customer_id", "invalid_customer_id",
                   id.empty() ? "customer_id is missing: give the Customer ID from onboarding"
                              : "customer_id is malformed: a Customer ID is the region prefix, "
                                "'-' and 20 lowercase letters and digits, e.g. '" +
                                    options.customer_id_prefix + "-…'");
  }
  const std::string prefix(id.substr(0, dash));
  if (prefix == options.customer_id_prefix) return std::nullopt;
  RegistrationRefusal r;
  r.kind = RefusalKind::wrong_region;
  const auto other = options.other_regions.find(prefix);
  if (other != options.other_regions.end()) {
    r.code = "wrong_region";
    r.region_host = other->second;
    r.message = "this Customer ID belongs to the region with prefix '" + prefix + "', not to " +
                options.region + ": register at https://" + other->second + "/v1/registrations";
  } else {
    r.code = "unknown_region";
    r.message = "unknown region prefix '" + prefix + "' in the Customer ID; this is " +
                options.region + " (prefix '" + options.customer_id_prefix +
                "'): check the Customer ID";
  }
  return r;
}

Outcome<CheckedDevice> check_device(std::string_view device_token, std::string_view environment) {
  CheckedDevice out;
  if (device_token.size() > kMaxRawTokenChars) {
    return invalid("device_token", "invalid_device_token",
                   "device_token is " + std::to_string(device_token.size()) +
                       " characters long; APNs tokens are at most " +
                       std::to_string(apns::kMaxDeviceTokenHexChars) + " hex digits");
  }
  auto hex = apns::normalize_device_token(device_token);
  if (!hex) return invalid("device_token", "invalid_device_token", hex.error().message);
  // Apple's tokens are 32 bytes (and documented as possibly longer, never shorter): a shorter
  // one is truncated or not a token, and APNs would answer BadDeviceToken for it.
  if (hex->size() < kMinDeviceTokenHexChars) {
    return invalid("device_token", "invalid_device_token",
                   "device_token is " + std::to_string(hex->size() / 2) +
                       " bytes long; APNs device tokens are 32 bytes (64 hex digits) or longer: "
                       "the app sent a truncated value or something else");
  }
  out.token_hex = std::move(*hex);
  out.token_was_base64 = plain_token_text(device_token) != out.token_hex;

  if (environment != "production" && environment != "development") {
    return invalid("environment", "invalid_environment",
                   environment.empty()
                       ? "environment is missing: 'production' for App Store and TestFlight "
                         "builds, 'development' for builds signed for development"
                       : "environment must be 'production' (App Store and TestFlight builds) or "
                         "'development' (builds signed for development)");
  }
  out.environment = std::string(environment);
  return out;
}

namespace {

// An id Graph issues (a tenant's or a user's GUID): 1-64 visible ASCII characters.
bool is_graph_id(std::string_view s) {
  return !s.empty() && s.size() <= 64 && is_visible_ascii(s);
}

}  // namespace

std::optional<RegistrationRefusal> check_source_fields(const RegisterRequest& r) {
  if (r.source.empty() || r.source == "ews") {
    for (const auto& [name, given] :
         {std::pair<const char*, bool>{"client_state", r.client_state.has_value()},
          {"tenant_id", r.tenant_id.has_value()},
          {"user_id", r.user_id.has_value()},
          {"unread", r.unread.has_value()}}) {
      if (given) {
        return invalid(name, "invalid_" + std::string(name),
                       std::string(name) + " is for Graph registrations (\"source\": \"graph\")");
      }
    }
    return std::nullopt;
  }
  if (r.source != "graph") {
    return invalid("source", "invalid_source",
                   "source must be 'ews' (Exchange Web Services push) or 'graph' (Microsoft Graph "
                   "change notifications)");
  }
  if (r.folder_id) {
    return invalid("folder_id", "invalid_folder_id",
                   "folder_id is for EWS registrations: a Graph subscription names its folder in "
                   "its resource");
  }
  if (!r.client_state || r.client_state->size() < kMinClientStateChars ||
      r.client_state->size() > kMaxClientStateChars || !is_printable_ascii(*r.client_state)) {
    return invalid("client_state", "invalid_client_state",
                   "client_state must be the clientState of the app's Graph subscription: " +
                       std::to_string(kMinClientStateChars) + " to " +
                       std::to_string(kMaxClientStateChars) +
                       " printable ASCII characters, random for each registration");
  }
  if (r.tenant_id && !is_graph_id(*r.tenant_id)) {
    return invalid("tenant_id", "invalid_tenant_id",
                   "tenant_id must be the tenant's id as Graph gives it (1 to 64 characters)");
  }
  if (r.user_id && !is_graph_id(*r.user_id)) {
    return invalid("user_id", "invalid_user_id",
                   "user_id must be the user's id as Graph gives it (1 to 64 characters)");
  }
  if (r.unread && (*r.unread < 0 || *r.unread > kMaxStatedUnread)) {
    return invalid(
        "unread", "invalid_unread",
        "unread must be the Inbox's unread count, 0 to " + std::to_string(kMaxStatedUnread));
  }
  return std::nullopt;
}

Outcome<CheckedDevice> check_registration(const RegisterRequest& r) {
  if (r.mailbox.size() > kMaxRawMailboxChars) {
    return invalid("mailbox", "invalid_mailbox",
                   "the mailbox address is longer than " +
                       std::to_string(keys::kMaxMailboxAddressChars) + " characters");
  }
  if (auto mailbox = keys::normalize_mailbox_address(r.mailbox); !mailbox) {
    return invalid("mailbox", "invalid_mailbox", mailbox.error().message);
  }
  auto device = check_device(r.device_token, r.environment);
  if (std::holds_alternative<RegistrationRefusal>(device)) return device;
  if (r.folder_id &&
      (r.folder_id->empty() || store::count_folder_id(*r.folder_id) != *r.folder_id)) {
    return invalid("folder_id", "invalid_folder_id",
                   "folder_id must be the Inbox's FolderId as Exchange gave it: printable ASCII "
                   "without spaces, 1 to " +
                       std::to_string(store::kMaxFolderIdChars) + " characters");
  }
  if (auto refused = check_source_fields(r)) return std::move(*refused);
  return device;
}

CapabilityForm capability_form(const keys::RegionSecret& secret, std::string_view capability) {
  if (capability.size() == keys::kCapabilityChars) {
    return secret.issued(capability) ? CapabilityForm::issued : CapabilityForm::refused;
  }
  const bool base64url = std::all_of(capability.begin(), capability.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
  return capability.size() == keys::kLegacyCallbackSecretChars && base64url
             ? CapabilityForm::legacy
             : CapabilityForm::refused;
}

std::string listener_url(std::string_view host, std::uint16_t port, std::string_view path,
                         std::string_view secret) {
  std::string url = "https://" + std::string(host);
  if (port != 443) url += ":" + std::to_string(port);
  url += path;
  url += secret;
  return url;
}

std::string listener_url(std::string_view host, std::uint16_t port, std::string_view secret) {
  return listener_url(host, port, "/ews/v1/notify/", secret);
}

RegistrationService::RegistrationService(RegistrationOptions options,
                                         store::RegistrationStore& store,
                                         const keys::RegionSecret* secret, RegistrationCache* cache)
    : options_(std::move(options)),
      store_(store),
      secret_(secret),
      cache_(cache),
      limiter_(options_.per_customer_per_minute, options_.rate_limited_customers),
      address_refusals_(options_.refusals_per_address_per_minute, options_.rate_limited_addresses) {
}

namespace {

RegistrationRefusal not_configured() {
  return refusal(RefusalKind::unavailable, "not_configured",
                 "this region cannot take registrations: its region secret is not configured "
                 "(registration.secret_file); tell the relay operators",
                 std::chrono::seconds(3600));
}

// One answer for a missing, made-up, ended and wrong capability: no oracle for any of them.
const RegistrationRefusal& no_such_registration() {
  static const RegistrationRefusal r = refusal(
      RefusalKind::not_found, "not_found",
      "no active registration has this capability: send the capability the registration "
      "answered with as 'Authorization: Bearer <capability>'; a registration that ended needs a "
      "new POST /v1/registrations");
  return r;
}

}  // namespace

// What refusals of the caller count under: its limit key, or its address without one.
static const std::string& limit_key_of(const Caller& caller) {
  return caller.limit_key.empty() ? caller.address : caller.limit_key;
}

std::optional<RegistrationRefusal> RegistrationService::address_blocked(const Caller& caller) {
  if (auto wait =
          address_refusals_.blocked(limit_key_of(caller), TokenBucketLimiter::Clock::now())) {
    return refusal(RefusalKind::rate_limited, "rate_limited",
                   "too many refused credentials from this address (at most " +
                       std::to_string(options_.refusals_per_address_per_minute) +
                       " a minute): try again in " + std::to_string(wait->count()) + " seconds",
                   *wait);
  }
  return std::nullopt;
}

void RegistrationService::count_refused_credentials(const Caller& caller) {
  (void)address_refusals_.take(limit_key_of(caller), TokenBucketLimiter::Clock::now());
}

std::optional<RegistrationRefusal> RegistrationService::precheck(std::string_view customer_id,
                                                                 std::string_view key,
                                                                 const Caller& caller,
                                                                 bool refresh) {
  if (secret_ == nullptr) return not_configured();
  if (auto wrong = check_customer_id(customer_id, options_)) return wrong;
  if (key.empty()) {
    return invalid("registration_key", "invalid_registration_key",
                   "registration_key is missing: give the customer's registration key");
  }
  if (auto blocked = address_blocked(caller)) return blocked;
  if (key.size() > kMaxKeyChars) {
    count_refused_credentials(caller);
    return unauthorized();
  }
  // Spent only by calls that authenticate (below, on the database thread), so guessing keys
  // cannot use up a customer's calls; a customer over its limit is refused before the database,
  // except a refresh (admit says why).
  if (refresh) return std::nullopt;
  if (auto wait = limiter_.blocked(std::string(customer_id), TokenBucketLimiter::Clock::now())) {
    return refusal(RefusalKind::rate_limited, "rate_limited",
                   "too many registration calls for this customer (at most " +
                       std::to_string(options_.per_customer_per_minute) +
                       " a minute): try again in " + std::to_string(wait->count()) + " seconds",
                   *wait);
  }
  return std::nullopt;
}

Outcome<Bytes> RegistrationService::capability_precheck(std::string_view capability,
                                                        const Caller& caller) {
  if (secret_ == nullptr) return not_configured();
  if (auto blocked = address_blocked(caller)) return std::move(*blocked);
  // URLs from before capabilities are no handle either (see register_device).
  if (capability_form(*secret_, capability) != CapabilityForm::issued) {
    count_refused_credentials(caller);
    return no_such_registration();
  }
  return sha384(capability);
}

namespace {

RegistrationRefusal device_refusal(bool invalid_token, const std::string& environment,
                                   const std::string& note) {
  if (invalid_token) {
    return refusal(RefusalKind::device_refused, "device_invalid",
                   "APNs refused this token in the " + environment + " environment (" + note +
                       "): a build signed for development needs environment 'development', an "
                       "App Store or TestFlight build 'production'");
  }
  return refusal(RefusalKind::device_refused, "device_unregistered",
                 "APNs reported this token unregistered at " + note +
                     ", after this request: get a new token from iOS and register it");
}

}  // namespace

std::optional<RegistrationRefusal> RegistrationService::admission_refusal(
    const store::RegistrationCustomer& customer, const store::AdmissionResult& a) const {
  if (a.outcome != store::AdmissionOutcome::refused) return std::nullopt;
  if (customer.state != "active") return customer_refused(customer.state);
  return refusal(RefusalKind::rate_limited, "rate_limited",
                 "too many registration calls for this customer (at most " +
                     std::to_string(options_.per_customer_per_minute) +
                     " a minute): try again in " + std::to_string(a.retry_after.count()) +
                     " seconds",
                 a.retry_after);
}

std::optional<RegistrationRefusal> RegistrationService::change_refusal(
    const store::CapabilityResult& result, const std::string& environment,
    std::chrono::seconds retry_after) const {
  switch (result.change) {
    case store::CapabilityChange::device_invalid:
    case store::CapabilityChange::device_unregistered:
      return device_refusal(result.change == store::CapabilityChange::device_invalid, environment,
                            result.device_note);
    case store::CapabilityChange::quota_device:
      return refusal(RefusalKind::forbidden, "quota_device",
                     "this device token has " + std::to_string(options_.max_per_device) +
                         " active registrations already (registration.max_per_device): "
                         "delete one the app no longer shows (DELETE /v1/registrations/self "
                         "with its capability) before registering another mailbox");
    case store::CapabilityChange::quota_customer:
      return refusal(RefusalKind::forbidden, "quota_customer",
                     "this customer has " + std::to_string(options_.max_per_customer) +
                         " active registrations already (registration.max_per_customer): "
                         "its administrator asks the relay operators for a larger quota");
    case store::CapabilityChange::limited:
      return refusal(RefusalKind::rate_limited, "rate_limited",
                     "too many registration calls for this customer (at most " +
                         std::to_string(options_.per_customer_per_minute) +
                         " a minute), and the capability presented is not this registration's: "
                         "try again in " +
                         std::to_string(retry_after.count()) + " seconds",
                     retry_after);
    case store::CapabilityChange::created:
    case store::CapabilityChange::unchanged:
    case store::CapabilityChange::replaced:
      break;
  }
  return std::nullopt;
}

asio::awaitable<Outcome<Registered>> RegistrationService::register_device(
    const RegisterRequest& request, const Caller& caller) {
  // Only an issued capability is a handle. A URL from before capabilities (anyone who knew the
  // address and the token could get it back then) is treated as none: the registration gets a
  // capability and its old URL ends.
  const bool presented = secret_ != nullptr && request.capability &&
                         capability_form(*secret_, *request.capability) == CapabilityForm::issued;
  if (auto refused = precheck(request.customer_id, request.registration_key, caller, presented)) {
    co_return std::move(*refused);
  }
  auto checked = check_registration(request);
  if (auto* refused = std::get_if<RegistrationRefusal>(&checked)) co_return std::move(*refused);
  const CheckedDevice& c = std::get<CheckedDevice>(checked);
  auto mailbox_hmac = secret_->mailbox_hmac(request.mailbox);
  if (!mailbox_hmac) {
    co_return invalid("mailbox", "invalid_mailbox", mailbox_hmac.error().message);
  }

  // A capability of the wrong form cannot be any registration's: treated as none.
  const std::string fresh = secret_->issue_capability();
  store::CapabilityRegistration row;
  row.mailbox_hmac = std::move(*mailbox_hmac);
  row.token_hex = c.token_hex;
  row.environment = c.environment;
  row.status_frequency_minutes = static_cast<int>(options_.status_frequency_minutes);
  row.folder_id = request.folder_id;
  const bool graph = request.source == "graph";
  if (graph) {
    row.source = "graph";
    row.client_state_hash = sha256(*request.client_state);
    row.graph_tenant = request.tenant_id;
    row.graph_user = request.user_id;
    if (request.unread) row.unread = static_cast<std::uint32_t>(*request.unread);
    // Graph sends no heartbeat: a Graph registration is silent after twice the longest
    // subscription without a notification (see docs/graph.md).
    row.status_frequency_minutes = static_cast<int>(kGraphMaxExpirationMinutes);
  }
  if (presented) row.presented_hash = sha384(*request.capability);
  row.new_hash = sha384(fresh);
  row.max_per_device = options_.max_per_device;
  row.max_per_customer = options_.max_per_customer;
  const store::Actor actor{"registration-api", caller.address};
  // On the store's thread, once the key found the customer. Only authenticated calls spend the
  // customer's calls, so guessing keys cannot use them up. A refresh (an issued capability
  // presented) is never refused for the customer's limit: the key is in every copy of the app,
  // so anyone can spend the customer's calls, and an app that holds its capability must keep its
  // registration whatever others do. The presented capability may still not be this pair's: the
  // store lets only a real refresh through (refresh_only), anything else is `limited`.
  const store::RegistrationStore::Admit admit =
      [this, refresh = presented,
       customer_id = request.customer_id](const store::RegistrationCustomer& customer) {
        store::AdmissionResult a;
        if (customer.state != "active") return a;
        a.outcome = store::AdmissionOutcome::admitted;
        if (auto wait = limiter_.take(customer_id, TokenBucketLimiter::Clock::now())) {
          a.outcome =
              refresh ? store::AdmissionOutcome::refresh_only : store::AdmissionOutcome::refused;
          a.retry_after = *wait;
        }
        return a;
      };
  const Bytes key_hash = sha384(request.registration_key);
  auto done = co_await store_.admit_and_register(request.customer_id, key_hash, admit, row, actor);
  if (!done) co_return database_refusal(done.error());
  if (!done->customer) {
    count_refused_credentials(caller);
    co_return unauthorized();
  }
  if (auto refused = admission_refusal(*done->customer, done->admission)) {
    co_return std::move(*refused);
  }
  const store::CapabilityResult& result = *done->written;
  if (auto refused = change_refusal(result, c.environment, done->admission.retry_after)) {
    co_return std::move(*refused);
  }
  // URLs that just died are answered Unsubscribe at once by this instance's listener.
  if (cache_ != nullptr) {
    for (const auto& hash : result.retired_secret_hashes) cache_->put_absent(cache_key(hash));
  }
  Registered out;
  out.change = result.change;
  out.customer_id = done->customer->customer_id;
  out.registration_id = result.registration_id;
  out.capability =
      result.change == store::CapabilityChange::unchanged ? *request.capability : fresh;
  const std::uint16_t port =
      options_.listener_port != 0 ? options_.listener_port : caller.local_port;
  if (graph) {
    out.source = "graph";
    out.listener_url =
        listener_url(options_.listener_host, port, "/graph/v1/notify/", out.capability);
    out.lifecycle_url =
        listener_url(options_.listener_host, port, "/graph/v1/lifecycle/", out.capability);
    out.status_frequency_minutes = kGraphMaxExpirationMinutes;
  } else {
    out.source = "ews";
    out.listener_url = listener_url(options_.listener_host, port, out.capability);
    out.status_frequency_minutes = options_.status_frequency_minutes;
  }
  out.device = apns::display_token(c.token_hex);
  out.environment = c.environment;
  out.token_was_base64 = c.token_was_base64;
  co_return out;
}

asio::awaitable<Outcome<Moved>> RegistrationService::move(const MoveRequest& request,
                                                          const Caller& caller) {
  auto hash = capability_precheck(request.capability, caller);
  if (auto* refused = std::get_if<RegistrationRefusal>(&hash)) co_return std::move(*refused);
  auto checked = check_device(request.device_token, request.environment);
  if (auto* refused = std::get_if<RegistrationRefusal>(&checked)) co_return std::move(*refused);
  const CheckedDevice& c = std::get<CheckedDevice>(checked);
  const store::Actor actor{"registration-api", caller.address};
  const store::CapabilityMove m{std::get<Bytes>(hash), c.token_hex, c.environment};
  auto done = co_await store_.move_with_capability(m, actor);
  if (!done) co_return database_refusal(done.error());
  switch (done->change) {
    case store::MoveChange::not_found:
      count_refused_credentials(caller);
      co_return no_such_registration();
    case store::MoveChange::device_invalid:
    case store::MoveChange::device_unregistered:
      co_return device_refusal(done->change == store::MoveChange::device_invalid, c.environment,
                               done->device_note);
    case store::MoveChange::moved:
    case store::MoveChange::unchanged:
      break;
  }
  if (cache_ != nullptr) {
    for (const auto& retired : done->retired_secret_hashes) cache_->put_absent(cache_key(retired));
  }
  Moved out;
  out.moved = done->change == store::MoveChange::moved;
  out.customer_id = done->customer_public_id;
  out.device = apns::display_token(c.token_hex);
  out.environment = c.environment;
  out.token_was_base64 = c.token_was_base64;
  co_return out;
}

asio::awaitable<Outcome<Unregistered>> RegistrationService::unregister(
    const UnregisterRequest& request, const Caller& caller) {
  auto hash = capability_precheck(request.capability, caller);
  if (auto* refused = std::get_if<RegistrationRefusal>(&hash)) co_return std::move(*refused);
  const store::Actor actor{"registration-api", caller.address};
  const Bytes& presented = std::get<Bytes>(hash);
  auto done = co_await store_.unregister_with_capability(presented, actor);
  if (!done) co_return database_refusal(done.error());
  if (!*done) {
    count_refused_credentials(caller);
    co_return no_such_registration();
  }
  // This instance's listener answers Unsubscribe from now on; the others re-check the
  // registration in the database on their next write (their cache entries also expire).
  if (cache_ != nullptr) cache_->put_absent(cache_key((*done)->secret_hash));
  co_return Unregistered{(*done)->customer_public_id};
}

}  // namespace mp::relay
