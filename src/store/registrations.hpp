// Registrations as operators and (until the registration API exists) tests create and inspect
// them: insert with mailbox and device, soft delete, and silent subscriptions.
#pragma once

#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
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
