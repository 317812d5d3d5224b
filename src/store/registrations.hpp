// Registrations: what the registration API (DESIGN.md flow 3) writes and reads, the raw insert
// and soft delete tests and tools use, and the silent-subscription report.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/customers.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

struct NewRegistration {
  std::int64_t customer_id = 0;
  Bytes mailbox_hmac;       // 32 bytes: keyed HMAC of the normalised address
  std::string token_hex;    // normalised device token
  std::string environment;  // "production" | "development"
  Bytes secret_hash;        // 48 bytes: SHA-384 of the callback secret
  int status_frequency_minutes = 30;
};

// Creates the mailbox and device if they do not exist yet; returns the registration id.
Result<std::int64_t> insert_registration(Connection& conn, const NewRegistration& r);
// Marks it deleted (the listener then answers Unsubscribe); false if there was none active.
Result<bool> delete_registration(Connection& conn, std::int64_t registration_id);

// ---------------------------------------------------------------- the registration API

// The customer a registration request names, once its registration key matched.
struct RegistrationCustomer {
  std::int64_t id = 0;      // customers.id
  std::string customer_id;  // public Customer ID
  std::string state;        // active | disabled | deleted
};

// The customer with this public Customer ID whose `registration_key_hash` equals
// `registration_key_hash` (SHA-384 of the key, compared in constant time); nullopt when the
// Customer ID is unknown or the key differs, so a caller cannot tell which. A disabled or
// deleted customer is returned with its state: the caller refuses it.
Result<std::optional<RegistrationCustomer>> find_customer_by_registration_key(
    Connection& conn, std::string_view customer_id, const Bytes& registration_key_hash);

// SHA-384 of the callback secret of (registration id, generation), as
// keys::RegionSecret::callback_secret_hash computes it. The store never sees a secret.
using CallbackSecretHash =
    std::function<Bytes(std::int64_t registration_id, std::uint32_t generation)>;

struct DeviceRegistration {
  std::int64_t customer_id = 0;  // customers.id
  Bytes mailbox_hmac;            // 32 bytes: RegionSecret::mailbox_hmac of the address
  std::string token_hex;         // normalised (apns::normalize_device_token)
  std::string environment;       // "production" | "development"
  // The token this app had before, in the same environment: its registration for this mailbox
  // moves to `token_hex`, keeping id, secret and EWS binding.
  std::optional<std::string> previous_token_hex;
  int status_frequency_minutes = 30;
};

enum class RegistrationChange {
  created,      // a new registration (generation 0)
  unchanged,    // customer + mailbox + token + environment were registered: same id and URL
  reactivated,  // it had been deleted: same id, next generation, so a new URL
  token_moved,  // previous_token_hex's registration now belongs to token_hex: same id and URL
  // Nothing written; the device is refused:
  device_invalid,       // APNs answered BadDeviceToken for it in this environment
  device_unregistered,  // APNs reported it unregistered at a time not before this request
};
const char* registration_change_name(RegistrationChange change) noexcept;

struct RegistrationResult {
  RegistrationChange change = RegistrationChange::created;
  std::int64_t registration_id = 0;
  std::uint32_t generation = 0;  // of registration_id's callback secret
  std::int64_t mailbox_id = 0;
  std::int64_t device_id = 0;
  // A device that APNs had reported unregistered and that registered again after that time.
  bool device_reactivated = false;
  // Secret hashes that stopped being valid in this call (a registration re-keyed, or the
  // registration the new token already had replacing the moved one): caches must drop them.
  std::vector<Bytes> retired_secret_hashes;
  // For device_invalid / device_unregistered: APNs' reason or time, safe to show the app.
  std::string device_note;
};

// One transaction (re-run on deadlock): finds or creates the mailbox, the device and the
// registration, in that locking order, and writes an audit row (`actor`; the token only
// redacted, no address) when something changed. Idempotent: the same customer, mailbox, token
// and environment give the same id and generation. A deleted registration is reactivated with
// generation + 1; an `unregistered` device becomes active again when APNs' unregistered time
// is before now; an `invalid` one is refused. `secret_hash_of` gives the hash stored for
// (id, generation); an active registration whose stored hash differs (the region secret was
// replaced) is re-keyed to it.
Result<RegistrationResult> register_device(Connection& conn, const DeviceRegistration& r,
                                           const CallbackSecretHash& secret_hash_of,
                                           const Actor& actor);

// Soft-deletes an active registration of this customer (customers.id) with its audit row, so
// the listener answers Unsubscribe to it. Returns its secret hash (for the listener's cache),
// or nullopt when the customer has no such active registration.
Result<std::optional<Bytes>> unregister_registration(Connection& conn, std::int64_t customer_id,
                                                     std::int64_t registration_id,
                                                     const Actor& actor);

// ---------------------------------------------------------------- silent subscriptions

struct SilentSubscription {
  std::int64_t registration_id = 0;
  std::string customer_id;  // public Customer ID
  std::string device;       // redacted token
  std::string environment;
  std::string last_heard_at;  // ISO 8601 UTC, "" if never heard
  int status_frequency_minutes = 0;
  std::int64_t silent_seconds = 0;  // since the last callback (or the registration)
};

// Active registrations not heard from for more than 2 x StatusFrequency: Exchange has dropped
// the subscription (or cannot reach us), and the app must subscribe again.
Result<std::int64_t> count_silent_subscriptions(Connection& conn);
Result<std::vector<SilentSubscription>> list_silent_subscriptions(Connection& conn,
                                                                  std::size_t limit);

}  // namespace mp::store
