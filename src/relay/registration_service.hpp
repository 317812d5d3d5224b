// The "register" use case (DESIGN.md flow 3): an app registers a mailbox and its device token
// with its customer's Customer ID and registration key, and gets the listener URL to subscribe
// with at Exchange; it may move the registration to a new token, and delete it.
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
#include "store/database_pool.hpp"
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
};

// Why a request was refused; the HTTP layer maps `kind` to a status.
enum class RefusalKind {
  invalid,         // 400: a field is missing or malformed (`field` names it)
  unauthorized,    // 401: unknown Customer ID or wrong registration key (one answer for both)
  forbidden,       // 403: the customer is disabled or deleted
  not_found,       // 404: no such active registration of this customer
  device_refused,  // 409: APNs said the token is invalid in this environment, or unregistered
  wrong_region,    // 421: the Customer ID belongs to another region (or to none known)
  rate_limited,    // 429: too many calls for this customer; retry_after says when
  unavailable,     // 503: the database cannot be reached now, or no region secret configured
  internal,        // 500: a bug or an unexpected database error
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
  std::optional<std::string> previous_device_token;
};

struct UnregisterRequest {
  std::string customer_id;
  std::string registration_key;
  std::int64_t registration_id = 0;
};

// Who is calling: for the audit log, and the port the request arrived on (see listener_port).
struct Caller {
  std::string address;
  std::uint16_t local_port = 0;
};

// What the app needs to subscribe at Exchange.
struct Registered {
  store::RegistrationChange change = store::RegistrationChange::created;
  std::string customer_id;
  std::int64_t registration_id = 0;
  std::string listener_url;  // holds the callback secret: only in the reply, never in a log
  std::uint32_t status_frequency_minutes = 30;
  std::string device;  // apns::display_token of the normalised token
  std::string environment;
  bool token_was_base64 = false;  // the token arrived as base64 and was turned into hex
};

struct Unregistered {
  std::string customer_id;
  std::int64_t registration_id = 0;
};

// EWS event types the app subscribes to (StatusEvent comes without asking): ModifiedEvent on
// the Inbox carries UnreadCount, the truth for the badge; NewMailEvent moves it in between.
inline constexpr std::string_view kSubscribedEventTypes[] = {"NewMailEvent", "ModifiedEvent"};

template <class T>
using Outcome = std::variant<T, RegistrationRefusal>;

// ---- the pure parts, tested without a database

// A registration request's fields checked and normalised (all but the mailbox, whose HMAC
// needs the region secret).
struct CheckedRegistration {
  std::string token_hex;
  bool token_was_base64 = false;
  std::optional<std::string> previous_token_hex;
  std::string environment;
};
// Field by field, in the order the API documents them; the first problem is the answer.
Outcome<CheckedRegistration> check_registration(const RegisterRequest& r);
// A Customer ID of another region (its prefix is not ours) is refused naming that region's
// registration host from `other_regions`, or as an unknown prefix; malformed ones are invalid.
std::optional<RegistrationRefusal> check_customer_id(std::string_view customer_id,
                                                     const RegistrationOptions& options);
// "https://{host}[:port]/ews/v1/notify/{secret}", the port left out when it is 443.
std::string listener_url(std::string_view host, std::uint16_t port, std::string_view secret);

class RegistrationService {
 public:
  // `secret` may be null: the region has no registration.secret_file and every call is refused
  // with `unavailable` (the operators' fix is in the message). `cache` is the listener's, so
  // that a delete on this instance is answered Unsubscribe at once (may be null).
  RegistrationService(RegistrationOptions options, store::DatabasePool& pool,
                      const keys::RegionSecret* secret, RegistrationCache* cache);

  boost::asio::awaitable<Outcome<Registered>> register_device(const RegisterRequest& request,
                                                              const Caller& caller);
  boost::asio::awaitable<Outcome<Unregistered>> unregister(const UnregisterRequest& request,
                                                           const Caller& caller);

  const RegistrationOptions& options() const noexcept { return options_; }

 private:
  // The refusals every call starts with: region secret, Customer ID, key present, rate limit.
  std::optional<RegistrationRefusal> precheck(std::string_view customer_id, std::string_view key);

  RegistrationOptions options_;
  store::DatabasePool& pool_;
  const keys::RegionSecret* secret_;
  RegistrationCache* cache_;
  TokenBucketLimiter limiter_;
};

}  // namespace mp::relay
