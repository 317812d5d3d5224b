// The outbox: badges committed with the callback that caused them, waiting for APNs.
//
// A pending badge is a mark on the registration row the callback wrote anyway (its count moved):
// `badge_owner`, `badge_due_at`, `badge_version` (migrations/0009). One durable row write per
// event, however many events a device gets before it is sent: the dispatcher reads the due marks,
// sends each device its current badge (the sum over its active registrations, read with the
// marks), and clears the marks it read by id and version, so an event committed in between
// leaves its mark and is sent in the next round. The `outbox` table keeps the dead letters.
//
// Ownership instead of locking reads: a mark belongs to the instance that wrote it (`owner`), and
// only its owner reads and sends it, so dispatchers never compete for rows with
// `SELECT … FOR UPDATE` (a hot spot on one node, a certification conflict on a Galera cluster).
// An instance whose heartbeat is older than the lease (or that stopped) loses its marks to the
// first live instance that takes them over with one conditional UPDATE.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

// A pending badge as read: the registration that holds the mark and its device's badge.
struct OutboxRow {
  std::int64_t id = 0;           // the registration
  std::int64_t version = 0;      // of the mark, when read
  std::int64_t customer_id = 0;  // row id of the customer
  std::int64_t device_id = 0;
  std::int64_t mailbox_id = 0;
  std::int64_t badge = 0;  // the device's: the sum over its active registrations, when read
  int attempts = 0;
  bool expired = false;            // waited longer than the dispatcher's TTL (it decides)
  std::int64_t age_us = 0;         // since the first event that is still waiting, when read
  std::string token_hex;           // the device's token
  std::string environment;         // "production" | "development"
  std::string device_state;        // "active" | "unregistered" | "invalid"
  std::string customer_public_id;  // "use1-…"
  std::string customer_state;      // "active" | "disabled" | "deleted"
  // A background push is pending for the app ('reauthorize', 'resubscribe', 'resync', 'renew';
  // "" none), and whether the registration may get one now (none sent in kWakeInterval).
  std::string wake_reason;
  bool wake_allowed = false;
};

// At most one wake (background push) per registration in this long.
inline constexpr std::chrono::seconds kWakeInterval{300};

// The SET assignments that mark a registration's badge pending where `when` (an SQL condition)
// holds: its version moves, `owner` (an SQL expression) sends it, and a badge that does not wait
// yet waits from now; one already waiting keeps its due time and its age (a badge in backoff stays
// in backoff). The EWS callbacks' and the Graph notifications' records share it.
std::string mark_pending_sql(std::string_view when, std::string_view owner);

// The badge a device shows now, as an SQL subquery over `device_id` (a column): the unread counts
// of its active registrations, capped.
std::string device_badge_sql(std::string_view device_id);

// Due marks of `owner` (next attempt reached), soonest first, at most `limit`; marks of the
// customers in `paused` (row ids) are left where they are.
Result<std::vector<OutboxRow>> read_due_outbox(Connection& conn, const std::string& owner,
                                               std::size_t limit,
                                               const std::vector<std::int64_t>& paused);

// A mark as read: cleared only if its version did not move since.
struct PendingMark {
  std::int64_t id = 0;  // the registration
  std::int64_t version = 0;
  bool operator==(const PendingMark&) const = default;
};

// What one dispatch round decided, applied in one transaction.
struct OutboxRetry {
  std::int64_t id = 0;
  std::chrono::milliseconds delay{0};
  std::string error;  // short reason, no token
};
struct OutboxDead {  // kept in the outbox table; the mark is cleared as sent
  PendingMark mark;
  std::string reason;  // "Expired", "TooManyAttempts", "NoCredentialForEnvironment", …
};
struct DeviceChange {
  std::int64_t device_id = 0;
  bool unregistered = false;  // 410: unregistered (at `unregistered_at`); else invalid
  std::optional<std::chrono::system_clock::time_point> unregistered_at;
  std::string reason;  // invalid_reason
};
// A pending wake that is done with: sent (its time is the registration's wake_sent_at) or
// dropped (the limit, a device or customer gone). Its reason is cleared unless the mark's version
// moved (another wake or event came since: it stays for the next round).
struct WakeDone {
  PendingMark mark;
  bool sent = false;
};
struct DispatchWrites {
  std::vector<PendingMark> remove;  // delivered, covered by the device's badge sent, or dropped
  std::vector<OutboxRetry> retry;
  std::vector<OutboxDead> dead;
  std::vector<DeviceChange> devices;
  std::vector<WakeDone> wakes;
  bool empty() const {
    return remove.empty() && retry.empty() && dead.empty() && devices.empty() && wakes.empty();
  }
};
Status apply_dispatch_writes(Connection& conn, const DispatchWrites& outcome);

// Marks pending, owned by `owner` (a mark already pending keeps its owner), the registrations
// whose app should be woken by a background push: a wake that waits without a mark (its send
// failed after the badge went), a Graph subscription within a day of its expiry ('renew', once
// per expiry), an EWS subscription gone silent in the last day after it was heard
// ('resubscribe', once per silence). At most `limit` of each kind; returns how many were marked.
Result<std::uint64_t> mark_due_wakes(Connection& conn, const std::string& owner, std::size_t limit);

// Moves the pending marks of instances whose heartbeat is older than `lease`, or that stopped, or
// that never registered, to `owner`; at most `limit` per call. Returns how many moved.
Result<std::uint64_t> take_over_outbox(Connection& conn, const std::string& owner,
                                       std::chrono::seconds lease, std::size_t limit);

// Dead letters are kept for operators (`mailpushctl`) for a while, then removed; at most `limit`
// per call. Returns how many went.
Result<std::uint64_t> purge_dead_letters(Connection& conn, std::chrono::hours older_than,
                                         std::size_t limit);

struct OutboxStats {
  std::int64_t queued = 0;  // pending marks (a device with two waiting accounts counts two)
  std::int64_t dead = 0;
  std::int64_t oldest_queued_seconds = 0;  // 0 when none is queued
};
Result<OutboxStats> outbox_stats(Connection& conn);

// Pauses (reason) or resumes (nullopt) a customer's queue for operators to see.
Status set_customer_paused(Connection& conn, std::int64_t customer_id,
                           const std::optional<std::string>& reason);

}  // namespace mp::store
