// Graph registrations (issue 20): what the Graph listener reads and writes. A registration with
// source 'graph' keeps its unread count as graph::UnreadSet's bytes and baseline beside the
// count the dispatcher sends (unread_count); a notification that moves it marks the same row
// pending, exactly as an EWS callback does (migration 0009), so one notification is one row
// write and a device's badge is the sum over its EWS and Graph registrations.
#pragma once

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/database_pool.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

// An active Graph registration as a notification finds it (customer not deleted).
struct GraphRegistration {
  std::int64_t id = 0;
  std::string customer_public_id;  // "use1-…", for logs
  bool customer_active = false;
  bool device_active = false;
  Bytes client_state_hash;      // 32 bytes: SHA-256 of the app's clientState
  std::string tenant;           // "" when the app stated none
  std::string subscription_id;  // "" until the first notification binds it
  std::uint32_t baseline = 0;   // graph_baseline
  std::string items;            // graph_items (graph::UnreadSet bytes)
  std::uint32_t unread_count = 0;
  bool heard = false;  // last_heard_at is set: Graph reached the registration at least once
};

// What a notification changes on the row; `write` false: nothing (every item was dropped).
struct GraphUpdate {
  bool write = false;
  std::string subscription_id;  // "" unbinds (a removed subscription)
  std::uint32_t baseline = 0;
  std::string items;
  std::uint32_t unread_count = 0;
  bool count_moved = false;                // marks a pending badge (device and customer active)
  std::optional<std::int64_t> expires_at;  // Unix seconds; none keeps the stored one
  bool heard = true;  // Graph called: last_heard_at is now (an app's resync is not)
  // A lifecycle event asks to wake the app ('reauthorize', 'resubscribe', 'resync'; "" none):
  // the row is marked pending with it, and the dispatcher sends a background push.
  std::string wake_reason;
};

using GraphDecide = std::function<GraphUpdate(const GraphRegistration&)>;

struct GraphRecorded {
  GraphRegistration before;
  GraphUpdate update;
  bool marked = false;  // a pending badge (and any wake) was marked
};

// The active Graph registration with this secret hash, or nullopt. No lock, no write.
Result<std::optional<GraphRegistration>> find_graph_registration(Connection& conn,
                                                                 const Bytes& secret_hash);

// Graph validated these registrations' URLs: the ones active, of source 'graph' and never heard
// get last_heard_at now, so that a subscription confirmed by Graph is not ended as unconfirmed
// (expire_unconfirmed_registrations) while its mailbox gets no mail. Returns how many changed.
Result<std::uint64_t> confirm_graph_registrations(Connection& conn,
                                                  const std::vector<std::int64_t>& ids);

// One transaction, re-run on a deadlock or a Galera conflict: the registration's row locked by
// its secret hash, `decide` on what it holds, and the update written in one statement (with its
// pending badge owned by `owner` when the count moved). nullopt: no active Graph registration
// has the hash (nothing written).
Result<std::optional<GraphRecorded>> record_graph(Connection& conn, const Bytes& secret_hash,
                                                  const GraphDecide& decide,
                                                  const std::string& owner);

// Several notifications (of one or many registrations) in one transaction, re-run on a deadlock:
// their rows locked by secret hash in one read (at most kMaxIdListShape a statement), each
// decision taken in order on its registration's row as the ones before it left it, one write of
// all their rows (write_graph_rows), one commit. The result for each request is what record_graph
// would have said, except `marked`, which is the registration's (its final count moved, or a wake).
struct GraphRequest {
  Bytes secret_hash;
  GraphDecide decide;
};
Result<std::vector<std::optional<GraphRecorded>>> record_graph_batch(
    Connection& conn, const std::vector<GraphRequest>& requests, const std::string& owner);

// One registration's row as a batch's decisions leave it: what record_graph_batch writes.
struct GraphRowWrite {
  std::int64_t id = 0;
  GraphUpdate update;  // every value but `write` and `count_moved`
  bool mark = false;   // marks its badge pending (owned by the writer), with any wake
};

// Rows per statement of write_graph_rows: a statement stays under ~1.3 MB at the largest unread
// sets (and far under max_allowed_packet).
inline constexpr std::size_t kGraphWriteChunk = 128;

// Writes the rows (distinct ids) with one statement per kGraphWriteChunk of them, of one fixed
// text whatever their number. An id without a row is passed over (nothing is written for it);
// an id given twice is written once, with its first entry. Run it on rows the transaction
// locked: it checks neither state nor source.
Status write_graph_rows(Connection& conn, std::span<const GraphRowWrite> rows,
                        const std::string& owner);

// What the Graph use case needs of the database (a fake in its unit tests).
class GraphStore {
 public:
  virtual ~GraphStore() = default;
  virtual boost::asio::awaitable<Result<std::optional<GraphRegistration>>> find(
      const Bytes& secret_hash) = 0;
  virtual boost::asio::awaitable<Result<std::optional<GraphRecorded>>> record(
      const Bytes& secret_hash, const GraphDecide& decide) = 0;
  virtual boost::asio::awaitable<Result<std::uint64_t>> confirm(
      const std::vector<std::int64_t>& ids) = 0;
};

// GraphStore on MariaDB. A validation is one job on the pool. Notifications are group-committed
// as the EWS listener's callbacks are: those that arrive while a batch is in its transaction go
// together in the next one (at most `batch_max`, `parallel` batches at once), so a commit and its
// fsync serve many notifications under load. `on_marked` runs after a commit that marked a
// pending badge (the daemon wakes the dispatcher).
class MariadbGraphStore final : public GraphStore {
 public:
  // A notification that waited `max_wait` for its batch fails with Errc::busy, unwritten: Graph
  // delays an endpoint whose answers take over 3 s, so an answer that could not come in time is a
  // quick 503 that Graph retries, not a late 202.
  MariadbGraphStore(DatabasePool& pool, std::string owner, std::size_t batch_max = 256,
                    std::size_t parallel = 2,
                    std::chrono::milliseconds max_wait = std::chrono::milliseconds(2000))
      : pool_(pool),
        owner_(std::move(owner)),
        batch_max_(std::max<std::size_t>(1, batch_max)),
        parallel_(std::max<std::size_t>(1, parallel)),
        max_wait_(max_wait) {}
  // Waits for the batches in flight (their completions run on the database threads).
  ~MariadbGraphStore() override;
  void set_marked_observer(std::function<void()> on_marked) { on_marked_ = std::move(on_marked); }

  boost::asio::awaitable<Result<std::optional<GraphRegistration>>> find(
      const Bytes& secret_hash) override;
  boost::asio::awaitable<Result<std::optional<GraphRecorded>>> record(
      const Bytes& secret_hash, const GraphDecide& decide) override;
  boost::asio::awaitable<Result<std::uint64_t>> confirm(
      const std::vector<std::int64_t>& ids) override;

 private:
  using Done = std::function<void(Result<std::optional<GraphRecorded>>)>;
  struct Pending {
    GraphRequest request;
    Done done;
    std::chrono::steady_clock::time_point queued;
  };
  void enqueue(Pending p);
  void start_batch_locked(std::unique_lock<std::mutex>& lock);

  DatabasePool& pool_;
  std::string owner_;
  std::size_t batch_max_;
  std::size_t parallel_;
  std::chrono::milliseconds max_wait_;
  std::function<void()> on_marked_;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::deque<Pending> waiting_;
  std::size_t running_ = 0;
};

}  // namespace mp::store
