// What operators look at and repair with mailpushctl: one customer in detail, devices by token
// prefix, a mailbox's registrations, the outbox broken down, dead letters sent again, and the
// device-token faults support cases are made of. Read-mostly; the two writes (retry of dead
// letters, a customer's state) leave an audit row in the same transaction.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/customers.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

struct CustomerDetail {
  CustomerRow customer;
  std::string paused_reason;  // "" when not paused
  std::int64_t devices_active_production = 0;
  std::int64_t devices_active_development = 0;
  std::int64_t devices_unregistered = 0;
  std::int64_t devices_invalid = 0;
  std::int64_t mailboxes = 0;
  std::int64_t registrations_active = 0;
  std::int64_t registrations_silent = 0;
  std::string last_callback_at;  // ISO 8601 UTC of the newest callback heard, "" if none
  std::int64_t outbox_queued = 0;
  std::int64_t outbox_dead = 0;
};
Result<CustomerDetail> customer_detail(Connection& conn, const CustomerRow& customer);

// A device as operators see it. `token_hex` is the full token: callers show display_token().
struct DeviceRow {
  std::int64_t id = 0;
  std::string environment;
  std::string token_hex;
  std::string state;  // active | unregistered | invalid
  std::string invalid_reason;
  std::string unregistered_at;
  std::string created_at;
  std::string updated_at;
  std::int64_t registrations_active = 0;
  std::int64_t outbox_queued = 0;
  std::int64_t outbox_dead = 0;
  std::string last_dead_reason;
};
// The customer's devices whose token starts with `token_prefix` (lowercase hex, at least 4
// characters: a prefix alone never lists a whole customer), newest first, at most `limit`.
Result<std::vector<DeviceRow>> find_devices(Connection& conn, std::int64_t customer_row_id,
                                            std::string_view token_prefix, std::size_t limit);

struct MailboxRegistration {
  std::int64_t registration_id = 0;
  std::string customer_id;  // public
  std::int64_t mailbox_id = 0;
  std::int64_t unread_count = 0;  // this registration's: the device's badge is their sum
  bool folder_stated = false;     // the app stated its Inbox: only that folder's count is taken
  std::string device_environment;
  std::string device_token_hex;  // full: callers show display_token()
  std::string device_state;
  std::string state;   // active | deleted
  bool bound = false;  // Exchange's subscription id is known
  std::int64_t superseded_ids = 0;
  std::int64_t status_frequency_minutes = 0;
  std::string last_heard_at;
  bool silent = false;
  std::string created_at;
};
// Registrations of the mailbox whose address HMAC is `address_hmac` (keys::RegionSecret), in
// every customer of the region or only in `customer_row_id`; active first, newest first.
Result<std::vector<MailboxRegistration>> registrations_of_mailbox(
    Connection& conn, const Bytes& address_hmac, std::optional<std::int64_t> customer_row_id);

struct OutboxCustomerLine {
  std::string customer_id;
  std::int64_t queued = 0;
  std::int64_t dead = 0;
  std::int64_t oldest_queued_seconds = 0;
  std::string paused_reason;
};
struct OutboxOwnerLine {
  std::string owner;  // instance id
  std::int64_t queued = 0;
  bool alive = false;  // heartbeat within the lease and not stopped
};
struct OutboxReasonLine {
  std::string reason;  // last_error of dead letters
  std::int64_t dead = 0;
};
struct OutboxBreakdown {
  std::int64_t queued = 0;
  std::int64_t dead = 0;
  std::int64_t oldest_queued_seconds = 0;
  std::int64_t retrying = 0;  // queued rows that failed at least once
  std::vector<OutboxCustomerLine> customers;
  std::vector<OutboxOwnerLine> owners;
  std::vector<OutboxReasonLine> dead_reasons;
};
Result<OutboxBreakdown> outbox_breakdown(Connection& conn, std::chrono::seconds lease);

struct RetryDeadFilter {
  std::optional<std::int64_t> customer_row_id;
  std::optional<std::string> reason;  // exact last_error, e.g. "TooManyAttempts"
  std::size_t limit = 1000;
};
struct RetryDeadResult {
  std::uint64_t requeued = 0;
  std::uint64_t left_dead = 0;  // matched, but device or customer no longer active
};
// Sends matching dead letters again, in one transaction with its audit row: each one's device
// gets a pending badge (due now, no failed attempts, the device's badge when sent: a dead
// letter's is stale) owned by the instance that dead-lettered it, and the dead letter goes.
// Dead letters of devices or customers that are no longer active stay.
Result<RetryDeadResult> retry_dead_letters(Connection& conn, const RetryDeadFilter& filter,
                                           const Actor& actor);

// Active devices whose stored token APNs cannot take: what `mailpushctl doctor` reports.
struct BadTokenDevice {
  std::int64_t device_id = 0;
  std::string customer_id;  // public
  std::string environment;
  std::string token;  // as stored: callers classify and shorten it, never print it whole
};
// Of every customer, or only of the customer with row id `customer_row_id`.
Result<std::vector<BadTokenDevice>> devices_with_malformed_tokens(
    Connection& conn, std::size_t limit, std::optional<std::int64_t> customer_row_id = {});

// Active and silent subscriptions (registrations), of the region or of one customer.
struct SubscriptionCounts {
  std::int64_t active = 0;
  std::int64_t silent = 0;
};
Result<SubscriptionCounts> subscription_counts(Connection& conn,
                                               std::optional<std::int64_t> customer_row_id = {});

// Active devices registered for an environment the customer's active credential does not serve:
// their badges die with NoCredentialForEnvironment. Per customer and environment.
struct EnvironmentMismatch {
  std::string customer_id;
  std::string environment;              // of the devices
  std::string credential_environments;  // "development", "production", or "" (no credential)
  std::int64_t devices = 0;
};
Result<std::vector<EnvironmentMismatch>> environment_mismatches(Connection& conn);

// Devices APNs refused as BadDeviceToken/DeviceTokenNotForTopic, per customer and environment:
// the usual sign of development tokens registered as production (or the reverse).
struct RefusedTokens {
  std::string customer_id;
  std::string environment;
  std::string reason;
  std::int64_t devices = 0;
};
Result<std::vector<RefusedTokens>> refused_tokens(Connection& conn);

}  // namespace mp::store
