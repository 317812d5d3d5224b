// What the EWS listener reads and writes: registrations by secret hash, the durable record of
// each callback that binds or moves a count (binding, the registration's unread count and its
// pending badge), and the last-heard times, written in bulk.
#pragma once

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/registration_counts.hpp"

namespace mp::store {

struct RegistrationRecord {
  std::int64_t id = 0;
  std::int64_t customer_id = 0;
  std::int64_t mailbox_id = 0;
  std::string customer_public_id;              // "use1-…", for logs
  std::optional<std::string> subscription_id;  // bound EWS subscription (none before the first)
  std::vector<std::string> superseded;         // earlier subscription ids, newest first
  std::string caller_cidrs;                    // customer's allow-list for callers; "" = any
  int status_frequency_minutes = 30;
};

// Badges beyond this are meaningless; it also keeps the arithmetic far from overflow.
inline constexpr std::int64_t kMaxUnreadCount = 1000000;

struct CallbackWrite {
  std::int64_t registration_id = 0;
  std::int64_t mailbox_id = 0;
  std::string subscription_id;                  // the callback's; bound after the write
  bool bind = false;                            // first sight of an id, or the app resubscribed
  std::optional<std::string> expected_current;  // with bind: the binding replaced (none = first)
  // What may move the registration's unread count, in order (registration_counts.hpp); empty:
  // nothing. The registration's badge is marked pending when they notify (store/outbox.hpp).
  std::vector<CountEvent> count_events;
};

// An active registration with the SHA-384 of its callback secret (the cache's preload).
struct ActiveRegistration {
  std::string secret_hash;    // the raw 48 bytes
  RegistrationRecord record;  // without superseded ids
};

// A page of active registrations: `next_after` continues after it; `done` when it was the last.
struct ActiveRegistrationPage {
  std::vector<ActiveRegistration> registrations;
  std::int64_t next_after = 0;
  bool done = true;
};

// A heartbeat heard: a callback on the registration's bound subscription that moves no count.
// Nothing about it needs to be durable before the answer (losing a few seconds of last-heard
// times on a crash is harmless: they only tell silent subscriptions), so the listener keeps them
// in memory and writes them in bulk (EwsCallbackService::flush_heard).
struct Heard {
  std::int64_t registration_id = 0;
  std::string subscription_id;  // the one it came from: written only while still bound to it
  std::int64_t heard_at = 0;    // UTC, seconds since the epoch
};

enum class WriteOutcome {
  recorded,  // committed
  stale,     // the registration changed since it was read (deleted, rebound elsewhere): re-read
  failed,    // the database refused this write alone (its neighbours in the batch went through)
};

// What the columns hold: longer or non-ASCII values are refused before they reach a batch.
inline constexpr std::size_t kMaxSubscriptionIdLength = 512;
inline constexpr std::size_t kMaxWatermarkLength = 1024;
// Subscription ids a registration was bound to before, kept newest first (older ones deleted).
inline constexpr std::size_t kMaxSupersededSubscriptions = 32;

class CallbackStore {
 public:
  virtual ~CallbackStore() = default;
  // An active registration of a customer that is not deleted, or nullopt.
  // Arguments are references: callers co_await at once and keep them alive meanwhile.
  virtual boost::asio::awaitable<Result<std::optional<RegistrationRecord>>> find_registration(
      const Bytes& secret_hash) = 0;
  // Active registrations of customers that are not deleted with an id above `after_id`, by id,
  // from at most `limit` registrations read: a page of the listener cache's preload.
  virtual boost::asio::awaitable<Result<ActiveRegistrationPage>> active_registrations(
      std::int64_t after_id, std::size_t limit) = 0;
  // Durable when it completes with `recorded`; Errc::unavailable when the database is not there.
  virtual boost::asio::awaitable<Result<WriteOutcome>> record(const CallbackWrite& write) = 0;
  // Moves last_heard_at (never backwards) of each registration still active and bound to the
  // subscription it was heard from, in short statements of their own (no long transaction, no
  // lock held between them). Returns the registration ids that were not: ended or rebound since
  // they were cached. On an error, some statements may have been applied: writing the same
  // entries again is harmless.
  virtual boost::asio::awaitable<Result<std::vector<std::int64_t>>> record_heard(
      const std::vector<Heard>& heard) = 0;
};

}  // namespace mp::store
