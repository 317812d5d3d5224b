// The outbox: notifications committed with the callback that caused them, waiting for APNs.
//
// Ownership instead of locking reads: a row belongs to the instance that wrote it (`owner`), and
// only its owner reads and sends it, so dispatchers never compete for rows with
// `SELECT … FOR UPDATE` (a hot spot on one node, a certification conflict on a Galera cluster).
// An instance whose heartbeat is older than the lease (or that stopped) loses its rows to the
// first live instance that takes them over with one conditional UPDATE. Rows are deleted by the
// list of ids that were read, never by a range.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

struct OutboxRow {
  std::int64_t id = 0;
  std::int64_t customer_id = 0;  // row id of the customer
  std::int64_t device_id = 0;
  std::int64_t mailbox_id = 0;
  std::int64_t badge = 0;
  int attempts = 0;
  bool expired = false;            // past expires_at when read
  std::int64_t age_us = 0;         // since the callback committed it, when read
  std::string token_hex;           // the device's token
  std::string environment;         // "production" | "development"
  std::string device_state;        // "active" | "unregistered" | "invalid"
  std::string customer_public_id;  // "use1-…"
  std::string customer_state;      // "active" | "disabled" | "deleted"
};

// Due rows of `owner` (queued, next attempt reached), oldest first, at most `limit`; rows of the
// customers in `paused` (row ids) are left where they are.
Result<std::vector<OutboxRow>> read_due_outbox(Connection& conn, const std::string& owner,
                                               std::size_t limit,
                                               const std::vector<std::int64_t>& paused);

// What one dispatch round decided, applied in one transaction.
struct OutboxRetry {
  std::int64_t id = 0;
  std::chrono::milliseconds delay{0};
  std::string error;  // short reason, no token
};
struct OutboxDead {
  std::int64_t id = 0;
  std::string reason;  // "Expired", "TooManyAttempts", "NoCredentialForEnvironment", …
};
struct DeviceChange {
  std::int64_t device_id = 0;
  bool unregistered = false;  // 410: unregistered (at `unregistered_at`); else invalid
  std::optional<std::chrono::system_clock::time_point> unregistered_at;
  std::string reason;  // invalid_reason
};
struct DispatchWrites {
  std::vector<std::int64_t> remove;  // delivered, superseded by a newer badge, or dropped
  std::vector<OutboxRetry> retry;
  std::vector<OutboxDead> dead;
  std::vector<DeviceChange> devices;
  bool empty() const { return remove.empty() && retry.empty() && dead.empty() && devices.empty(); }
};
Status apply_dispatch_writes(Connection& conn, const DispatchWrites& outcome);

// Moves queued rows of instances whose heartbeat is older than `lease`, or that stopped, or that
// never registered, to `owner`; at most `limit` rows per call. Returns how many moved.
Result<std::uint64_t> take_over_outbox(Connection& conn, const std::string& owner,
                                       std::chrono::seconds lease, std::size_t limit);

// Dead letters are kept for operators (`mailpushctl`) for a while, then removed; at most `limit`
// per call. Returns how many went.
Result<std::uint64_t> purge_dead_letters(Connection& conn, std::chrono::hours older_than,
                                         std::size_t limit);

struct OutboxStats {
  std::int64_t queued = 0;
  std::int64_t dead = 0;
  std::int64_t oldest_queued_seconds = 0;  // 0 when none is queued
};
Result<OutboxStats> outbox_stats(Connection& conn);

// Pauses (reason) or resumes (nullopt) a customer's queue for operators to see.
Status set_customer_paused(Connection& conn, std::int64_t customer_id,
                           const std::optional<std::string>& reason);

}  // namespace mp::store
