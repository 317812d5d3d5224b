// The "register" use case (DESIGN.md flow 3; docs/registration-api.md): an app registers a
// mailbox and its device token with its customer's Customer ID and registration key, and gets a
// capability: the secret of the listener URL it subscribes with at Exchange, and the bearer token
// that alone may refresh, move (to a new device token) and end that registration. The
// registration key is in every copy of the app, so it proves the app, not the person: nothing
// about an existing registration is shown or changed for it.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/token_bucket.hpp"
#include "keys/region_secret.hpp"
#include "relay/registration_cache.hpp"
#include "store/registration_store.hpp"
#include "store/registrations.hpp"

namespace mp::relay {

struct RegistrationOptions {
  std::string region;              // e.g. "eu-west-1", for messages
  std::string customer_id_prefix;  // this region's, e.g. "euw1"
  std::string listener_host;       // listener.public_host: the host of the listener URL
  // The listener URL's port (left out when 443). 0 (tests, listener.port 0): the port the
  // request arrived on, which is the listener's, since the API is served there.
  std::uint16_t listener_port = 443;
  std::uint32_t status_frequency_minutes = 30;
  std::uint32_t per_customer_per_minute = 600;
  std::map<std::string, std::string> other_regions;  // Customer ID prefix -> registration host
  std::size_t rate_limited_customers = 100000;       // token buckets kept at most
  std::uint32_t max_per_device = 16;                 // active registrations per device token
  std::uint32_t max_per_customer = 1000000;          // active registrations per customer
  // Refused credentials (wrong key, unknown capability) per caller address a minute, then 429.
  std::uint32_t refusals_per_address_per_minute = 60;
  std::size_t rate_limited_addresses = 100000;  // token buckets kept at most
};

// Why a request was refused; the HTTP layer maps `kind` to a status.
enum class RefusalKind {
  invalid,         // 400: a field is missing or malformed (`field` names it)
  unauthorized,    // 401: unknown Customer ID or wrong registration key (one answer for both)
  forbidden,       // 403: the customer is disabled or deleted, or a registration quota is full
  not_found,       // 404: no active registration has the capability presented (or none was)
  device_refused,  // 409: APNs said the token is invalid in this environment, or unregistered
  wrong_region,    // 421: the Customer ID belongs to another region (or to none known)
  rate_limited,    // 429: too many calls for this customer; retry_after says when
  unavailable,     // 503: the database cannot be reached now, or no region secret configured
  internal,        // 500: a bug or an unexpected database error
  gone,            // 410: a form of the API that is no longer served (registration ids)
  // Refused by the HTTP layer before the service sees the request:
  too_large,    // 413: the body is over its limit
  unsupported,  // 415: the body is not JSON
};

struct RegistrationRefusal {
  RefusalKind kind = RefusalKind::internal;
  std::string code;     // stable, for programs: "invalid_device_token", "wrong_region", ...
  std::string message;  // for a person; never a key, an address or a full token
  std::string field;    // invalid: the request field at fault
  std::chrono::seconds retry_after{0};  // rate_limited, unavailable
  std::string region_host;              // wrong_region: where to register instead (if known)
};

struct RegisterRequest {
  std::string customer_id;
  std::string registration_key;
  std::string mailbox;       // SMTP address; only its HMAC is stored
  std::string device_token;  // hex, or base64 (normalised to hex)
  std::string environment;   // "production" | "development"
  // The FolderId the app subscribes to at Exchange (its Inbox's): only that folder's events
  // count for the badge. None: every folder the subscription reports.
  std::optional<std::string> folder_id;
  // "ews" (the default when empty) or "graph" (Exchange Online through Microsoft Graph).
  std::string source;
  // Graph only: the clientState the app puts in its subscription (16-128 printable characters;
  // only its SHA-256 is stored), the tenant and user ids, and the unread count it sees now.
  std::optional<std::string> client_state;
  std::optional<std::string> tenant_id;
  std::optional<std::string> user_id;
  std::optional<std::int64_t> unread;
  // From `Authorization: Bearer`: the capability the app holds for this mailbox on this device,
  // if any. Presented and right: the registration is refreshed and keeps its URL. Missing or
  // wrong: a new capability, and the registration it replaces ends.
  std::optional<std::string> capability;
};

// PATCH /v1/registrations/self: iOS gave the app a new device token.
struct MoveRequest {
  std::string capability;
  std::string device_token;
  std::string environment;
};

// DELETE /v1/registrations/self.
struct UnregisterRequest {
  std::string capability;
};

// Who is calling: for the audit log, and the port the request arrived on (see listener_port).
struct Caller {
  std::string address;  // the client (behind trusted proxies), for the audit log
  std::uint16_t local_port = 0;
  std::string limit_key;  // what per-address limits count it under (an IPv6 /64); "": address
};

// What the app needs to subscribe at Exchange. registration_id is for the log line only: no
// answer shows it.
struct Registered {
  store::CapabilityChange change = store::CapabilityChange::created;
  std::string customer_id;
  std::int64_t registration_id = 0;
  std::string capability;     // only in the reply, never in a log
  std::string listener_url;   // holds the capability (EWS: the one URL; Graph: notifications)
  std::string source;         // "ews" | "graph"
  std::string lifecycle_url;  // Graph: the lifecycle notification URL
  std::uint32_t status_frequency_minutes = 30;
  std::string device;  // apns::display_token of the normalised token
  std::string environment;
  bool token_was_base64 = false;  // the token arrived as base64 and was turned into hex
};

struct Moved {
  bool moved = false;  // false: the registration was on that token already
  std::string customer_id;
  std::string device;  // apns::display_token of the new token
  std::string environment;
  bool token_was_base64 = false;
};

struct Unregistered {
  std::string customer_id;
};

// EWS event types the app subscribes to (StatusEvent comes without asking): ModifiedEvent on
// the Inbox carries UnreadCount, the truth for the badge; NewMailEvent moves it in between.
inline constexpr std::string_view kSubscribedEventTypes[] = {"NewMailEvent", "ModifiedEvent"};

// What a Graph registration's app subscribes to (graph-samples/README.md): messages entering
// and leaving the Inbox's unread filter, for at most Graph's longest message subscription.
inline constexpr std::string_view kGraphResource =
    "me/mailFolders('inbox')/messages?$filter=isRead eq false";
inline constexpr std::string_view kGraphChangeTypes = "created,deleted";
inline constexpr std::uint32_t kGraphMaxExpirationMinutes = 10080;
inline constexpr std::size_t kMinClientStateChars = 16;
inline constexpr std::size_t kMaxClientStateChars = 128;
inline constexpr std::int64_t kMaxStatedUnread = 1000000;

template <class T>
using Outcome = std::variant<T, RegistrationRefusal>;

// ---- the pure parts, tested without a database

// A device token and environment checked and normalised.
struct CheckedDevice {
  std::string token_hex;
  bool token_was_base64 = false;
  std::string environment;
};
// Field by field, in the order the API documents them; the first problem is the answer.
Outcome<CheckedDevice> check_device(std::string_view device_token, std::string_view environment);
// The same, after the mailbox (whose HMAC needs the region secret; its form is checked here).
Outcome<CheckedDevice> check_registration(const RegisterRequest& r);
// The source and its fields: Graph's client_state, tenant_id, user_id and unread (refused on an
// EWS registration), EWS's folder_id (refused on a Graph one).
std::optional<RegistrationRefusal> check_source_fields(const RegisterRequest& r);

// What a presented capability may be, decided without the database.
enum class CapabilityForm {
  issued,   // 44 characters with this region secret's tag: look it up
  legacy,   // 43 characters of base64url: a URL issued before capabilities; look it up
  refused,  // anything else, a made-up one included: no registration has it
};
CapabilityForm capability_form(const keys::RegionSecret& secret, std::string_view capability);
// A Customer ID of another region (its prefix is not ours) is refused naming that region's
// registration host from `other_regions`, or as an unknown prefix; malformed ones are invalid.
std::optional<RegistrationRefusal> check_customer_id(std::string_view customer_id,
                                                     const RegistrationOptions& options);
// "https://{host}[:port]/ews/v1/notify/{secret}", the port left out when it is 443.
std::string listener_url(std::string_view host, std::uint16_t port, std::string_view secret);
// The same host and port with another path before the secret ("/graph/v1/notify/").
std::string listener_url(std::string_view host, std::uint16_t port, std::string_view path,
                         std::string_view secret);

class RegistrationService {
 public:
  // `secret` may be null: the region has no registration.secret_file and every call is refused
  // with `unavailable` (the operators' fix is in the message). `cache` is the listener's, so
  // that a delete on this instance is answered Unsubscribe at once (may be null). `store`
  // outlives the service.
  RegistrationService(RegistrationOptions options, store::RegistrationStore& store,
                      const keys::RegionSecret* secret, RegistrationCache* cache);

  boost::asio::awaitable<Outcome<Registered>> register_device(const RegisterRequest& request,
                                                              const Caller& caller);
  boost::asio::awaitable<Outcome<Moved>> move(const MoveRequest& request, const Caller& caller);
  boost::asio::awaitable<Outcome<Unregistered>> unregister(const UnregisterRequest& request,
                                                           const Caller& caller);

  const RegistrationOptions& options() const noexcept { return options_; }

 private:
  // The refusals every call starts with: region secret, Customer ID, key present, rate limits.
  // `refresh`: an issued capability was presented; the customer's limit does not refuse it.
  std::optional<RegistrationRefusal> precheck(std::string_view customer_id, std::string_view key,
                                              const Caller& caller, bool refresh);
  // The refusals a call with a capability starts with (region secret, the caller's address
  // limit, the capability's form): the capability's SHA-384, or the refusal.
  Outcome<Bytes> capability_precheck(std::string_view capability, const Caller& caller);
  // The refusal for a registration the store did not make (device refused, a quota full, rate
  // limited); none when it was created, kept or replaced.
  std::optional<RegistrationRefusal> change_refusal(const store::CapabilityResult& result,
                                                    const std::string& environment,
                                                    std::chrono::seconds retry_after) const;
  // The caller's address is refused a while after too many refused credentials.
  std::optional<RegistrationRefusal> address_blocked(const Caller& caller);
  void count_refused_credentials(const Caller& caller);
  // The refusal for a customer its key found that the admission stopped, or none.
  std::optional<RegistrationRefusal> admission_refusal(const store::RegistrationCustomer& customer,
                                                       const store::AdmissionResult& a) const;

  RegistrationOptions options_;
  store::RegistrationStore& store_;
  const keys::RegionSecret* secret_;
  RegistrationCache* cache_;
  TokenBucketLimiter limiter_;
  TokenBucketLimiter address_refusals_;
};

}  // namespace mp::relay
