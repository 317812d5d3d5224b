// The registration use case: checks here, the rows in store/registrations (one transaction per
// call, with its audit row), the secrets from keys/region_secret.
#include "relay/registration_service.hpp"

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>

#include "apns/device_token.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"

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

Outcome<CheckedRegistration> check_registration(const RegisterRequest& r) {
  if (r.mailbox.size() > kMaxRawMailboxChars) {
    return invalid("mailbox", "invalid_mailbox",
                   "the mailbox address is longer than " +
                       std::to_string(keys::kMaxMailboxAddressChars) + " characters");
  }
  if (auto mailbox = keys::normalize_mailbox_address(r.mailbox); !mailbox) {
    return invalid("mailbox", "invalid_mailbox", mailbox.error().message);
  }
  CheckedRegistration out;
  const auto token = [](std::string_view field,
                        std::string_view raw) -> std::variant<std::string, RegistrationRefusal> {
    const std::string code = "invalid_" + std::string(field);
    if (raw.size() > kMaxRawTokenChars) {
      return invalid(std::string(field), code,
                     std::string(field) + " is " + std::to_string(raw.size()) +
                         " characters long; APNs tokens are at most " +
                         std::to_string(apns::kMaxDeviceTokenHexChars) + " hex digits");
    }
    auto hex = apns::normalize_device_token(raw);
    if (!hex)
      return invalid(
          std::string(field), code,
          field == "device_token" ? hex.error().message : "previous " + hex.error().message);
    // Apple's tokens are 32 bytes (and documented as possibly longer, never shorter): a shorter
    // one is truncated or not a token, and APNs would answer BadDeviceToken for it.
    if (hex->size() < kMinDeviceTokenHexChars) {
      return invalid(std::string(field), code,
                     std::string(field) + " is " + std::to_string(hex->size() / 2) +
                         " bytes long; APNs device tokens are 32 bytes (64 hex digits) or "
                         "longer: the app sent a truncated value or something else");
    }
    return std::move(*hex);
  };
  auto hex = token("device_token", r.device_token);
  if (auto* refused = std::get_if<RegistrationRefusal>(&hex)) return std::move(*refused);
  out.token_hex = std::move(std::get<std::string>(hex));
  out.token_was_base64 = plain_token_text(r.device_token) != out.token_hex;

  if (r.environment != "production" && r.environment != "development") {
    return invalid("environment", "invalid_environment",
                   r.environment.empty()
                       ? "environment is missing: 'production' for App Store and TestFlight "
                         "builds, 'development' for builds signed for development"
                       : "environment must be 'production' (App Store and TestFlight builds) or "
                         "'development' (builds signed for development)");
  }
  out.environment = r.environment;

  if (r.previous_device_token) {
    auto previous = token("previous_device_token", *r.previous_device_token);
    if (auto* refused = std::get_if<RegistrationRefusal>(&previous)) return std::move(*refused);
    out.previous_token_hex = std::move(std::get<std::string>(previous));
  }
  return out;
}

std::string listener_url(std::string_view host, std::uint16_t port, std::string_view secret) {
  std::string url = "https://" + std::string(host);
  if (port != 443) url += ":" + std::to_string(port);
  url += "/ews/v1/notify/";
  url += secret;
  return url;
}

RegistrationService::RegistrationService(RegistrationOptions options, store::DatabasePool& pool,
                                         const keys::RegionSecret* secret, RegistrationCache* cache)
    : options_(std::move(options)),
      pool_(pool),
      secret_(secret),
      cache_(cache),
      limiter_(options_.per_customer_per_minute, options_.rate_limited_customers) {}

std::optional<RegistrationRefusal> RegistrationService::precheck(std::string_view customer_id,
                                                                 std::string_view key) {
  if (secret_ == nullptr) {
    return refusal(RefusalKind::unavailable, "not_configured",
                   "this region cannot take registrations: its region secret is not configured "
                   "(registration.secret_file); tell the relay operators",
                   std::chrono::seconds(3600));
  }
  if (auto wrong = check_customer_id(customer_id, options_)) return wrong;
  if (key.empty()) {
    return invalid("registration_key", "invalid_registration_key",
                   "registration_key is missing: give the customer's registration key");
  }
  if (key.size() > kMaxKeyChars) return unauthorized();
  // Spent only by calls that authenticate (below, on the database thread), so guessing keys
  // cannot use up a customer's calls; a customer over its limit is refused before the database.
  if (auto wait = limiter_.blocked(std::string(customer_id), TokenBucketLimiter::Clock::now())) {
    return refusal(RefusalKind::rate_limited, "rate_limited",
                   "too many registration calls for this customer (at most " +
                       std::to_string(options_.per_customer_per_minute) +
                       " a minute): try again in " + std::to_string(wait->count()) + " seconds",
                   *wait);
  }
  return std::nullopt;
}

namespace {

// Whether the caller may go on: its customer, or why not.
struct Admission {
  enum class Gate { passed, unknown_customer, customer_not_active, rate_limited };
  Gate gate = Gate::passed;
  store::RegistrationCustomer customer;
  std::chrono::seconds retry_after{0};
};

// Authenticates the caller and spends one of its customer's calls, on the database thread.
Result<Admission> admit(store::Connection& c, TokenBucketLimiter& limiter,
                        const std::string& customer_id, const Bytes& key_hash) {
  auto found = store::find_customer_by_registration_key(c, customer_id, key_hash);
  if (!found) return std::move(found).error();
  Admission a;
  if (!*found) {
    a.gate = Admission::Gate::unknown_customer;
    return a;
  }
  a.customer = std::move(**found);
  if (a.customer.state != "active") {
    a.gate = Admission::Gate::customer_not_active;
  } else if (auto wait = limiter.take(customer_id, TokenBucketLimiter::Clock::now())) {
    a.gate = Admission::Gate::rate_limited;
    a.retry_after = *wait;
  }
  return a;
}

std::optional<RegistrationRefusal> admission_refusal(const Admission& a, std::uint32_t per_minute) {
  switch (a.gate) {
    case Admission::Gate::passed:
      return std::nullopt;
    case Admission::Gate::unknown_customer:
      return unauthorized();
    case Admission::Gate::customer_not_active:
      return customer_refused(a.customer.state);
    case Admission::Gate::rate_limited:
      return refusal(RefusalKind::rate_limited, "rate_limited",
                     "too many registration calls for this customer (at most " +
                         std::to_string(per_minute) + " a minute): try again in " +
                         std::to_string(a.retry_after.count()) + " seconds",
                     a.retry_after);
  }
  return std::nullopt;
}

// A database job's answer: the admission, and the store's answer when admitted.
template <class T>
struct Admitted {
  Admission admission;
  std::optional<T> value;
};

}  // namespace

asio::awaitable<Outcome<Registered>> RegistrationService::register_device(
    const RegisterRequest& request, const Caller& caller) {
  if (auto refused = precheck(request.customer_id, request.registration_key)) {
    co_return std::move(*refused);
  }
  auto checked = check_registration(request);
  if (auto* refused = std::get_if<RegistrationRefusal>(&checked)) co_return std::move(*refused);
  const CheckedRegistration& c = std::get<CheckedRegistration>(checked);
  auto mailbox_hmac = secret_->mailbox_hmac(request.mailbox);
  if (!mailbox_hmac) {
    co_return invalid("mailbox", "invalid_mailbox", mailbox_hmac.error().message);
  }

  store::DeviceRegistration row;
  row.mailbox_hmac = std::move(*mailbox_hmac);
  row.token_hex = c.token_hex;
  row.environment = c.environment;
  row.previous_token_hex = c.previous_token_hex;
  row.status_frequency_minutes = static_cast<int>(options_.status_frequency_minutes);
  const keys::RegionSecret* secret = secret_;
  const store::CallbackSecretHash secret_hash_of = [secret](std::int64_t id, std::uint32_t gen) {
    return secret->callback_secret_hash(id, gen);
  };
  const store::Actor actor{"registration-api", caller.address};
  using Answer = Admitted<store::RegistrationResult>;
  const store::DatabasePool::Job<Answer> job =
      [this, row, secret_hash_of, actor, customer_id = request.customer_id,
       key_hash = sha384(request.registration_key)](store::Connection& conn) -> Result<Answer> {
    Answer answer;
    auto admission = admit(conn, limiter_, customer_id, key_hash);
    if (!admission) return std::move(admission).error();
    answer.admission = std::move(*admission);
    if (answer.admission.gate != Admission::Gate::passed) return answer;
    store::DeviceRegistration r = row;
    r.customer_id = answer.admission.customer.id;
    auto registered = store::register_device(conn, r, secret_hash_of, actor);
    if (!registered) return std::move(registered).error();
    answer.value = std::move(*registered);
    return answer;
  };
  auto done = co_await pool_.async_run(job, asio::use_awaitable);
  if (!done) co_return database_refusal(done.error());
  if (auto refused = admission_refusal(done->admission, options_.per_customer_per_minute)) {
    co_return std::move(*refused);
  }
  const store::RegistrationResult& result = *done->value;
  if (result.change == store::RegistrationChange::device_invalid) {
    co_return refusal(RefusalKind::device_refused, "device_invalid",
                      "APNs refused this token in the " + c.environment + " environment (" +
                          result.device_note +
                          "): a build signed for development needs environment "
                          "'development', an App Store or TestFlight build 'production'");
  }
  if (result.change == store::RegistrationChange::device_unregistered) {
    co_return refusal(RefusalKind::device_refused, "device_unregistered",
                      "APNs reported this token unregistered at " + result.device_note +
                          ", after this request: get a new token from iOS and register it");
  }
  if (cache_ != nullptr) {
    // URLs that just died are answered Unsubscribe at once by this instance's listener.
    for (const auto& hash : result.retired_secret_hashes) cache_->put_absent(cache_key(hash));
    if (result.change != store::RegistrationChange::unchanged) {
      cache_->erase(
          cache_key(secret_->callback_secret_hash(result.registration_id, result.generation)));
    }
  }
  Registered out;
  out.change = result.change;
  out.customer_id = done->admission.customer.customer_id;
  out.registration_id = result.registration_id;
  const std::uint16_t port =
      options_.listener_port != 0 ? options_.listener_port : caller.local_port;
  out.listener_url =
      listener_url(options_.listener_host, port,
                   secret_->callback_secret(result.registration_id, result.generation));
  out.status_frequency_minutes = options_.status_frequency_minutes;
  out.device = apns::display_token(c.token_hex);
  out.environment = c.environment;
  out.token_was_base64 = c.token_was_base64;
  co_return out;
}

asio::awaitable<Outcome<Unregistered>> RegistrationService::unregister(
    const UnregisterRequest& request, const Caller& caller) {
  if (auto refused = precheck(request.customer_id, request.registration_key)) {
    co_return std::move(*refused);
  }
  const store::Actor actor{"registration-api", caller.address};
  using Answer = Admitted<std::optional<Bytes>>;
  const store::DatabasePool::Job<Answer> job =
      [this, actor, customer_id = request.customer_id, id = request.registration_id,
       key_hash = sha384(request.registration_key)](store::Connection& conn) -> Result<Answer> {
    Answer answer;
    auto admission = admit(conn, limiter_, customer_id, key_hash);
    if (!admission) return std::move(admission).error();
    answer.admission = std::move(*admission);
    if (answer.admission.gate != Admission::Gate::passed) return answer;
    auto hash = store::unregister_registration(conn, answer.admission.customer.id, id, actor);
    if (!hash) return std::move(hash).error();
    answer.value = std::move(*hash);
    return answer;
  };
  auto done = co_await pool_.async_run(job, asio::use_awaitable);
  if (!done) co_return database_refusal(done.error());
  if (auto refused = admission_refusal(done->admission, options_.per_customer_per_minute)) {
    co_return std::move(*refused);
  }
  if (!*done->value) {
    co_return refusal(RefusalKind::not_found, "not_found",
                      "this customer has no active registration " +
                          std::to_string(request.registration_id) +
                          " (it was deleted already, or never was this customer's)");
  }
  // This instance's listener answers Unsubscribe from now on; the others re-check the
  // registration in the database on their next write (their cache entries also expire).
  if (cache_ != nullptr) cache_->put_absent(cache_key(**done->value));
  co_return Unregistered{done->admission.customer.customer_id, request.registration_id};
}

}  // namespace mp::relay
