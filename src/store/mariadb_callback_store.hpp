// CallbackStore on MariaDB: point lookups by secret hash, and group commit of callback records
// (many callbacks per transaction, a handful of statements per batch whatever its size).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "common/rate_meter.hpp"
#include "store/callback_store.hpp"
#include "store/database_pool.hpp"

namespace mp::store {

struct BatchStats {
  std::uint64_t batches = 0;
  std::uint64_t writes = 0;
  std::uint64_t stale = 0;
  std::uint64_t failed_batches = 0;
  std::size_t largest_batch = 0;
  std::size_t waiting = 0;
};

// Who sends the badges a callback marks pending: the registration row's mark, written with its
// count, is owned by this instance (see store/outbox.hpp).
struct OutboxTarget {
  std::string owner;  // this instance's id
};

class MariadbCallbackStore final : public CallbackStore {
 public:
  // `batch_max` writes per transaction; `parallel_batches` transactions at once (each holds one
  // connection of the pool while it runs).
  MariadbCallbackStore(DatabasePool& pool, std::size_t batch_max, std::size_t parallel_batches);
  // Waits for batches still running; stop the pool first so that they end quickly.
  ~MariadbCallbackStore() override;

  boost::asio::awaitable<Result<std::optional<RegistrationRecord>>> find_registration(
      const Bytes& secret_hash) override;
  boost::asio::awaitable<Result<ActiveRegistrationPage>> active_registrations(
      std::int64_t after_id, std::size_t limit) override;
  boost::asio::awaitable<Result<WriteOutcome>> record(const CallbackWrite& write) override;
  boost::asio::awaitable<Result<std::vector<std::int64_t>>> record_heard(
      const std::vector<Heard>& heard) override;
  BatchStats stats() const;
  // Called on the database thread after every batch with its size and its time from the start
  // of the transaction to its end (for metrics). Set before the first record().
  using BatchObserver = std::function<void(std::size_t writes, double seconds, bool ok)>;
  void set_batch_observer(BatchObserver observer) { observer_ = std::move(observer); }
  // At a low rate (under 2,000 writes a second) a batch waits `window` on its database thread
  // for more writes to share its commit: every callback would otherwise pay a whole commit.
  // Above it batches fill by themselves and none waits. Set before the first record().
  void set_batch_window(std::chrono::microseconds window) { window_ = window; }
  // Queues notifications for every changed mailbox from now on. Set before the first record().
  void set_outbox(OutboxTarget target) { outbox_ = std::move(target); }
  // Secret lookups run on `pool` (its own connections and queue) instead of the writers' pool,
  // so a flood of made-up secrets never delays the writes of real callbacks. Set before use.
  void set_lookup_pool(DatabasePool* pool) { lookup_pool_ = pool; }

 private:
  using Done = std::function<void(Result<WriteOutcome>)>;
  struct Pending {
    CallbackWrite write;
    Done done;
  };
  void enqueue(Pending p);
  void start_batch_locked(std::unique_lock<std::mutex>& lock);
  // Moves waiting writes into `batch` up to batch_max_ in all.
  void take_locked(std::vector<Pending>& batch);

  DatabasePool& pool_;
  DatabasePool* lookup_pool_ = nullptr;
  std::size_t batch_max_;
  std::size_t parallel_batches_;
  mutable std::mutex mutex_;
  std::condition_variable idle_;
  std::deque<Pending> waiting_;
  std::size_t running_ = 0;
  bool gathering_ = false;  // a batch waits out its window: new writes join it
  std::chrono::microseconds window_{0};
  // Below this many writes a second the batches wait out the window; above it they fill by
  // themselves (and a wait would leave the database idle while every client waits).
  static constexpr double kWindowBelowPerSecond = 2000;
  RateMeter writes_rate_;
  BatchStats stats_;
  BatchObserver observer_;
  std::optional<OutboxTarget> outbox_;
};

// One transaction for a batch of writes, in order; exposed for tests. Returns one outcome per
// write, or an error for the whole batch (nothing committed).
// With `outbox`, the batch also marks pending the badge of every registration whose count moved
// and whose device should hear of it (active device and customer).
Result<std::vector<WriteOutcome>> write_callback_batch(Connection& conn,
                                                       const std::vector<CallbackWrite>& writes,
                                                       const OutboxTarget* outbox = nullptr);

// Last-heard times in statements of at most 64 registrations each (CallbackStore::record_heard);
// exposed for tests. Returns the ids that were not active and bound to their subscription.
Result<std::vector<std::int64_t>> write_heard(Connection& conn, const std::vector<Heard>& heard);

Result<std::optional<RegistrationRecord>> find_registration_by_secret(Connection& conn,
                                                                      const Bytes& secret_hash);
Result<ActiveRegistrationPage> active_registrations_after(Connection& conn, std::int64_t after_id,
                                                          std::size_t limit);

}  // namespace mp::store
