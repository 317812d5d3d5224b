// Customers, their APNs credentials, onboarding invites and the audit log, as the certificate
// portal, mailpushctl and the credential upkeep read and change them. Secrets arrive hashed
// (SHA-384) or sealed (keys module); nothing here sees a key, a password or a code in clear.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

// Who did something, for the audit log: "portal:customer-admin", "portal:region-admin",
// "portal:invite", "mailpushctl:<unix user>", "expiry-check".
struct Actor {
  std::string name;
  std::string source_address;  // caller address, "" for local tools
};

// One audit row; `detail` is a short JSON object with facts, never a secret.
Status write_audit(Connection& conn, const Actor& actor, std::string_view action,
                   std::optional<std::int64_t> customer_id, std::string_view detail);

struct AuditRow {
  std::int64_t id = 0;
  std::string at;  // ISO 8601 UTC
  std::string actor;
  std::string action;
  std::string customer;  // public Customer ID, "" if none
  std::string source_address;
  std::string detail;
};
Result<std::vector<AuditRow>> tail_audit(Connection& conn, std::size_t limit);

// ---------------------------------------------------------------- invites

// Stores the hash of a one-time onboarding code valid for `valid_for`; returns its id.
Result<std::int64_t> create_invite(Connection& conn, const Bytes& code_hash,
                                   std::chrono::seconds valid_for, const Actor& actor,
                                   std::string_view note);

// Whether a code can still be used (exists, unused, unexpired), without consuming it: a cheap
// check before the expensive certificate work. create_customer consumes it for real.
Result<bool> invite_usable(Connection& conn, const Bytes& code_hash);

// ---------------------------------------------------------------- customers and credentials

// What is stored of a validated push certificate: facts in clear, key material sealed.
struct NewCredential {
  std::string topic;
  bool development = false;
  bool production = false;
  std::string subject;
  std::string issuer;
  std::string serial_hex;
  Bytes fingerprint_sha256;  // 32 bytes
  std::string not_before;    // "YYYY-MM-DD HH:MM:SS" UTC
  std::string not_after;
  std::string kek_id;
  std::string wrapped_data_key;
  std::string sealed_material;
};

struct NewCustomer {
  std::string customer_id;  // public, region-prefixed
  std::string display_name;
  std::string app_id;
  Bytes registration_key_hash;            // 48 bytes
  Bytes admin_key_hash;                   // 48 bytes
  std::optional<Bytes> invite_code_hash;  // consumed in the same transaction when set
};

struct CreatedCustomer {
  std::int64_t id = 0;
  std::int64_t credential_id = 0;
};

// One transaction: consumes the invite (unused and unexpired, else Errc::not_found with a reason
// that does not say which of the two), inserts the customer and its active credential, and
// writes the audit row.
Result<CreatedCustomer> create_customer(Connection& conn, const NewCustomer& customer,
                                        const NewCredential& credential, const Actor& actor);

struct CustomerRow {
  std::int64_t id = 0;
  std::string customer_id;
  std::string display_name;
  std::string app_id;
  std::string state;  // active | disabled | deleted
  std::string created_at;
};
Result<std::optional<CustomerRow>> find_customer(Connection& conn, std::string_view customer_id);
Result<std::optional<CustomerRow>> find_customer_by_admin_key(Connection& conn,
                                                              const Bytes& admin_key_hash);
Result<std::vector<CustomerRow>> list_customers(Connection& conn);

struct CredentialRow {
  std::int64_t id = 0;
  std::int64_t customer_row_id = 0;
  std::string customer_id;  // public
  std::string topic;
  bool development = false;
  bool production = false;
  std::string state;  // pending | active | retired | failed | expired
  std::string fingerprint_hex;
  std::string serial_hex;
  std::string issuer;
  std::string not_before;  // ISO 8601 UTC
  std::string not_after;
  std::int64_t seconds_left = 0;  // until not_after (negative once expired)
  std::optional<int> expiry_warned_days;
  std::string activated_at;
  std::string last_success_at;
  std::string last_failure_at;
  std::string last_failure_reason;
  // Sealed material: only filled by the calls that say so.
  std::string kek_id;
  std::string wrapped_data_key;
  std::string sealed_material;
};

// A customer's credentials, newest first (no key material).
Result<std::vector<CredentialRow>> customer_credentials(Connection& conn,
                                                        std::int64_t customer_row_id);
// Every credential in these states across customers that are not deleted, soonest expiry first
// (no key material); `within` limits to those ending within that many seconds (expired included).
Result<std::vector<CredentialRow>> list_credentials(Connection& conn,
                                                    std::optional<std::int64_t> within_seconds);
// Active credentials of active customers with their sealed material: what instances send with.
Result<std::vector<CredentialRow>> active_credentials_sealed(Connection& conn);

// Renewal: inserts the credential as active and retires the customer's previously active ones
// in one transaction (their rows stay), with the audit row. Returns the new credential id.
Result<std::int64_t> replace_credential(Connection& conn, std::int64_t customer_row_id,
                                        const NewCredential& credential, const Actor& actor);

// active -> disabled -> active; any -> deleted (never back). Returns false if nothing changed.
Result<bool> set_customer_state(Connection& conn, std::int64_t customer_row_id,
                                std::string_view state, const Actor& actor);

// Expiry upkeep: records that the warning for `threshold_days` (30, 14, 7, 1; 0 = expired) was
// sent, only if no warning at or below it was recorded before. Returns true for the one caller
// (of all instances) that should send it.
Result<bool> claim_expiry_warning(Connection& conn, std::int64_t credential_id, int threshold_days);
// Marks an active credential whose not_after has passed as expired (its devices are kept).
Result<bool> mark_credential_expired(Connection& conn, std::int64_t credential_id);

// Key rotation: every credential's wrapped data key (sealed material untouched).
struct WrappedKey {
  std::int64_t credential_id = 0;
  std::string kek_id;
  std::string wrapped_data_key;
};
Result<std::vector<WrappedKey>> all_wrapped_keys(Connection& conn);
// Rewrites one row's wrapping only if it still holds `old_kek_id` (a concurrent rotation wins).
Result<bool> update_wrapped_key(Connection& conn, std::int64_t credential_id,
                                std::string_view old_kek_id, const WrappedKey& now);

}  // namespace mp::store
