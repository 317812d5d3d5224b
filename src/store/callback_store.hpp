// What the EWS listener reads and writes: registrations by secret hash, and the durable record
// of each callback (binding, watermark, last heard, the mailbox's unread count).
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
  std::string watermark;                        // newest watermark; "" keeps the stored one
  // What may move the registration's unread count, in order (registration_counts.hpp); empty:
  // nothing. The registration's device is notified when there is any.
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
};

}  // namespace mp::store
