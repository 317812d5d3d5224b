// Registrations: what the registration API (DESIGN.md flow 3) writes and reads, the raw insert
// and soft delete tests and tools use, and the silent-subscription report.
#pragma once

#include <chrono>
#include <cstdint>
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

// ---------------------------------------------------------------- capabilities
//
// A registration's listener secret is its capability: whoever holds it may refresh, move and
// end that registration, and nobody else may. The store sees only SHA-384 hashes.

struct CapabilityRegistration {
  std::int64_t customer_id = 0;  // customers.id
  Bytes mailbox_hmac;            // 32 bytes: RegionSecret::mailbox_hmac of the address
  std::string token_hex;         // normalised
  std::string environment;       // "production" | "development"
  int status_frequency_minutes = 30;
  // The Inbox's FolderId as the app stated it (store::count_folder_id form): only that folder's
  // UnreadCount sets the badge. None: any folder's count is taken, as Exchange reports it.
  std::optional<std::string> folder_id;
  // Graph registrations (source "graph"): the SHA-256 of the app's clientState, the tenant and
  // user ids it stated, and the unread count it sees now (the baseline of the unread set). They
  // are written when the registration is created or replaced, and on a refresh all but `unread`
  // (PUT /v1/registrations/self/unread resyncs the count).
  std::string source = "ews";  // "ews" | "graph"
  Bytes client_state_hash;     // graph only
  std::optional<std::string> graph_tenant;
  std::optional<std::string> graph_user;
  std::optional<std::uint32_t> unread;
  std::optional<Bytes> presented_hash;  // SHA-384 of the capability the app presented, if any
  Bytes new_hash;                       // SHA-384 of a newly issued capability, used if needed
  std::uint32_t max_per_device = 0;     // active registrations per device token; 0: no quota
  std::uint64_t max_per_customer = 0;   // active registrations per customer; 0: no quota
  // Only a refresh (the presented capability is the pair's) may go through: the customer is over
  // its call limit, which refreshes are exempt from. Anything else: `limited`, nothing written.
  bool refresh_only = false;
};

enum class CapabilityChange {
  created,    // a new registration (or one registered again after its delete): new_hash is it
  unchanged,  // the presented capability is this device and mailbox's active registration
  replaced,   // an active registration of this device and mailbox, presented without (or with a
              // wrong) capability: it ends (its URL answers Unsubscribe), new_hash replaces it
  // Nothing written:
  device_invalid,       // APNs answered BadDeviceToken for the token in this environment
  device_unregistered,  // APNs reported it unregistered at a time not before this request
  quota_device,         // the token has max_per_device active registrations already
  quota_customer,       // the customer has max_per_customer active registrations already
  limited,              // refresh_only, and this was no refresh
};
const char* capability_change_name(CapabilityChange change) noexcept;

struct CapabilityResult {
  CapabilityChange change = CapabilityChange::created;
  std::int64_t registration_id = 0;  // internal; never shown to callers
  std::int64_t mailbox_id = 0;
  std::int64_t device_id = 0;
  bool device_reactivated = false;
  std::vector<Bytes> retired_secret_hashes;  // caches must drop them
  std::string device_note;                   // device_invalid / device_unregistered
};

// One transaction (re-run on deadlock), audited: finds or creates mailbox and device, then the
// registration of that pair, as CapabilityChange says.
Result<CapabilityResult> register_with_capability(Connection& conn, const CapabilityRegistration& r,
                                                  const Actor& actor);

struct CapabilityMove {
  Bytes presented_hash;
  std::string token_hex;    // the device's new token
  std::string environment;  // its environment
};
enum class MoveChange { moved, unchanged, not_found, device_invalid, device_unregistered };
struct MoveResult {
  MoveChange change = MoveChange::not_found;
  std::int64_t customer_id = 0;
  std::string customer_public_id;            // "use1-…", for logs
  std::vector<Bytes> retired_secret_hashes;  // a registration the new token had for the mailbox
  std::string device_note;
};
// Moves the active registration whose capability was presented to another device token (iOS gave
// the app a new one), keeping its URL and Exchange subscription. A registration the new token
// already had for the same mailbox ends (the presented one wins). not_found: no active
// registration has that capability (a wrong one gets the same answer).
Result<MoveResult> move_with_capability(Connection& conn, const CapabilityMove& m,
                                        const Actor& actor);

// Ends the active registration whose capability was presented (the listener then answers
// Unsubscribe). nullopt: none has it.
struct Ended {
  std::int64_t customer_id = 0;
  std::string customer_public_id;  // "use1-…", for logs
  Bytes secret_hash;
};
Result<std::optional<Ended>> unregister_with_capability(Connection& conn, const Bytes& presented,
                                                        const Actor& actor);

// ---------------------------------------------------------------- unconfirmed registrations

// Ends (state 'deleted') at most `limit` active registrations that Exchange has never called:
// not heard from `grace` after the first heartbeat was due (created + 2 x StatusFrequency). The
// registration key is in every copy of the app, so anyone can create registrations; those that
// no Exchange subscription confirms must not hold a customer's or a device's quota for ever. An
// app whose registration ended this way gets a new one at its next refresh (`created`). Served
// by ix_registrations_silent_after; returns how many ended.
Result<std::uint64_t> expire_unconfirmed_registrations(Connection& conn, std::chrono::hours grace,
                                                       std::size_t limit);

// ---------------------------------------------------------------- Graph subscriptions

struct GraphSubscription {
  std::int64_t registration_id = 0;
  std::string customer_id;  // public Customer ID
  std::string device;       // redacted token
  std::string environment;
  std::string expires_at;     // ISO 8601 UTC as the newest notification stated it; "" unknown
  std::string last_heard_at;  // the last notification, "" never
  std::string wake_pending;   // a wake waiting to be sent ("" none)
  std::string wake_sent_at;   // "" never
};
struct GraphSubscriptionCounts {
  std::int64_t active = 0;          // active Graph registrations
  std::int64_t expired = 0;         // their subscription's stated expiry has passed
  std::int64_t expiring_1d = 0;     // within a day
  std::int64_t never_notified = 0;  // no notification yet: expiry unknown
};
// The counts (one pass over the active registrations) and the `limit` Graph subscriptions that
// expire soonest (unknown expiries first), on ix_registrations_graph_expiry.
Result<GraphSubscriptionCounts> count_graph_subscriptions(Connection& conn);
Result<std::vector<GraphSubscription>> list_graph_subscriptions(Connection& conn,
                                                                std::size_t limit);

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
