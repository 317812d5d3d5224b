// Graph registrations' reads and writes; two prepared statements of fixed text and one update.
#include "store/graph_store.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <map>

#include "store/outbox.hpp"
#include "store/sql_util.hpp"

namespace mp::store {
namespace {

namespace asio = boost::asio;
using sql::blob;

// The row and what the badge mark needs to know (its device's and customer's states); the
// secret hash first, to find each request's row in a batch.
constexpr std::string_view kColumns =
    "SELECT r.secret_hash, r.id, c.customer_id, c.state = 'active', d.state = 'active', "
    "r.client_state_hash, COALESCE(r.graph_tenant, ''), COALESCE(r.subscription_id, ''), "
    "r.graph_baseline, r.graph_items, r.unread_count, r.last_heard_at IS NOT NULL FROM "
    "registrations r JOIN customers c ON "
    "c.id = r.customer_id JOIN devices d ON d.id = r.device_id WHERE ";
constexpr std::string_view kActiveGraph =
    " AND r.state = 'active' AND r.source = 'graph' AND c.state <> 'deleted'";

GraphRegistration from_row(const Row& row) {
  GraphRegistration g;
  g.id = row.i64(1);
  g.customer_public_id = row.text(2);
  g.customer_active = row.i64(3) != 0;
  g.device_active = row.i64(4) != 0;
  const std::string& hash = row.text(5);
  g.client_state_hash.assign(hash.begin(), hash.end());
  g.tenant = row.text(6);
  g.subscription_id = row.text(7);
  g.baseline = static_cast<std::uint32_t>(row.i64(8));
  g.items = row.text(9);
  g.unread_count = static_cast<std::uint32_t>(row.i64(10));
  g.heard = row.i64(11) != 0;
  return g;
}

// The active Graph registrations with these secret hashes (locked when `lock`), by hash.
Result<std::map<std::string, GraphRegistration>> select_graph(Connection& conn,
                                                              const std::vector<Bytes>& hashes,
                                                              bool lock) {
  std::map<std::string, GraphRegistration> out;
  std::vector<Value> keys;
  keys.reserve(hashes.size());
  for (const auto& h : hashes) keys.push_back(blob(h));
  auto st = sql::for_each_id_chunk(
      keys, [&](std::string_view placeholders, std::span<const Value> chunk) -> Status {
        std::string sql = std::string(kColumns) + "r.secret_hash IN (" + std::string(placeholders) +
                          ")" + std::string(kActiveGraph);
        if (lock) sql += " FOR UPDATE";
        auto stmt = conn.prepare(sql);
        if (!stmt) return std::move(stmt).error();
        auto rows = (*stmt)->query(chunk);
        if (!rows) return std::move(rows).error();
        for (const auto& row : *rows) out.emplace(row.text(0), from_row(row));
        return {};
      });
  if (!st) return std::move(st).error();
  return out;
}

std::string key_of(const Bytes& hash) {
  return std::string(hash.begin(), hash.end());
}

// One statement: the count, the unread set, the binding, the expiry, last heard, a wake and,
// when `mark`, the pending badge (as the EWS record statement sets it: a badge already waiting
// keeps its due time and age).
const std::string& update_sql() {
  static const std::string sql =
      "UPDATE registrations SET subscription_id = NULLIF(?, ''), graph_baseline = ?, "
      "graph_items = ?, unread_count = ?, graph_expires_at = COALESCE(FROM_UNIXTIME(?), "
      "graph_expires_at), last_heard_at = IF(?, UTC_TIMESTAMP(6), last_heard_at), "
      "wake_reason = COALESCE(NULLIF(?, ''), wake_reason), " +
      mark_pending_sql("?", "?") + " WHERE id = ?";
  return sql;
}

Status write_update(Connection& conn, std::int64_t id, const GraphUpdate& u, bool marked,
                    const std::string& owner) {
  auto stmt = conn.prepare(update_sql());
  if (!stmt) return std::move(stmt).error();
  const std::int64_t mark = marked ? 1 : 0;
  const Value params[] = {Value{u.subscription_id},
                          Value{std::int64_t{u.baseline}},
                          Value{Blob{u.items}},
                          Value{std::int64_t{u.unread_count}},
                          u.expires_at ? Value{*u.expires_at} : Value{Null{}},
                          Value{std::int64_t{u.heard}},
                          Value{u.wake_reason},
                          Value{mark},
                          Value{mark},
                          Value{owner},
                          Value{mark},
                          Value{mark},
                          Value{id}};
  if (auto n = (*stmt)->execute(params); !n) return std::move(n).error();
  return {};
}

// A registration's row as the batch's decisions leave it, and what to write for it.
struct Written {
  GraphRegistration original;
  GraphRegistration now;
  GraphUpdate merged;  // the last decision's values, the union of its flags
  bool write = false;
};

// One attempt of the batch (inside its transaction).
Result<std::vector<std::optional<GraphRecorded>>> batch_once(
    Connection& conn, const std::vector<GraphRequest>& requests, const std::string& owner) {
  std::vector<Bytes> hashes;
  hashes.reserve(requests.size());
  for (const auto& r : requests) hashes.push_back(r.secret_hash);
  auto rows = select_graph(conn, hashes, true);
  if (!rows) return std::move(rows).error();
  std::map<std::string, Written> rows_now;
  for (auto& [key, row] : *rows) rows_now.emplace(key, Written{row, row, {}, false});

  std::vector<std::optional<GraphRecorded>> out(requests.size());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto it = rows_now.find(key_of(requests[i].secret_hash));
    if (it == rows_now.end()) continue;  // no active Graph registration: nullopt
    Written& w = it->second;
    GraphRecorded rec;
    rec.before = w.now;
    rec.update = requests[i].decide(w.now);
    if (rec.update.write) {
      const GraphUpdate& u = rec.update;
      w.now.subscription_id = u.subscription_id;
      w.now.baseline = u.baseline;
      w.now.items = u.items;
      w.now.unread_count = u.unread_count;
      GraphUpdate merged = u;
      if (w.write) {
        merged.heard = merged.heard || w.merged.heard;
        if (merged.wake_reason.empty()) merged.wake_reason = w.merged.wake_reason;
        if (w.merged.expires_at &&
            (!merged.expires_at || *w.merged.expires_at > *merged.expires_at))
          merged.expires_at = w.merged.expires_at;
      }
      w.merged = std::move(merged);
      w.write = true;
    }
    out[i] = std::move(rec);
  }
  // One UPDATE per registration; the mark when its count moved over the batch, or a wake.
  std::map<std::string, bool> marked;
  for (auto& [key, w] : rows_now) {
    if (!w.write) continue;
    const bool mark =
        (w.now.unread_count != w.original.unread_count || !w.merged.wake_reason.empty()) &&
        w.original.customer_active && w.original.device_active;
    w.merged.count_moved = w.now.unread_count != w.original.unread_count;
    if (auto st = write_update(conn, w.original.id, w.merged, mark, owner); !st) {
      return std::move(st).error();
    }
    marked[key] = mark;
  }
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!out[i]) continue;
    const auto m = marked.find(key_of(requests[i].secret_hash));
    out[i]->marked = m != marked.end() && m->second;
  }
  return out;
}

}  // namespace

Result<std::optional<GraphRegistration>> find_graph_registration(Connection& conn,
                                                                 const Bytes& secret_hash) {
  auto rows = select_graph(conn, {secret_hash}, false);
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<GraphRegistration>{};
  return std::optional{std::move(rows->begin()->second)};
}

Result<std::vector<std::optional<GraphRecorded>>> record_graph_batch(
    Connection& conn, const std::vector<GraphRequest>& requests, const std::string& owner) {
  return sql::in_transaction_retried<std::vector<std::optional<GraphRecorded>>>(
      conn, [&] { return batch_once(conn, requests, owner); });
}

Result<std::optional<GraphRecorded>> record_graph(Connection& conn, const Bytes& secret_hash,
                                                  const GraphDecide& decide,
                                                  const std::string& owner) {
  auto done = record_graph_batch(conn, {GraphRequest{secret_hash, decide}}, owner);
  if (!done) return std::move(done).error();
  return std::move(done->front());
}

Result<std::uint64_t> confirm_graph_registrations(Connection& conn,
                                                  const std::vector<std::int64_t>& ids) {
  return sql::execute_in_id_chunks(conn,
                                   "UPDATE registrations SET last_heard_at = UTC_TIMESTAMP(6) "
                                   "WHERE source = 'graph' AND state = 'active' AND last_heard_at "
                                   "IS NULL AND id IN (",
                                   ids);
}

asio::awaitable<Result<std::uint64_t>> MariadbGraphStore::confirm(
    const std::vector<std::int64_t>& ids) {
  const DatabasePool::Job<std::uint64_t> job = [ids](Connection& conn) {
    return confirm_graph_registrations(conn, ids);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::optional<GraphRegistration>>> MariadbGraphStore::find(
    const Bytes& secret_hash) {
  const DatabasePool::Job<std::optional<GraphRegistration>> job = [secret_hash](Connection& conn) {
    return find_graph_registration(conn, secret_hash);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

MariadbGraphStore::~MariadbGraphStore() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return running_ == 0; });
}

asio::awaitable<Result<std::optional<GraphRecorded>>> MariadbGraphStore::record(
    const Bytes& secret_hash, const GraphDecide& decide) {
  // A named request, not a temporary: GCC 12 destroys temporaries of a co_await expression twice.
  const GraphRequest request{secret_hash, decide};
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable),
                                          void(Result<std::optional<GraphRecorded>>)>(
      [this](auto handler, GraphRequest r) {
        enqueue({std::move(r),
                 completion_on_handler_executor<std::optional<GraphRecorded>>(std::move(handler)),
                 std::chrono::steady_clock::now()});
      },
      asio::use_awaitable, request);
}

void MariadbGraphStore::enqueue(Pending p) {
  std::unique_lock lock(mutex_);
  waiting_.push_back(std::move(p));
  if (running_ < parallel_) start_batch_locked(lock);
}

// Group commit: while a batch is in its transaction, new notifications wait and go together in
// the next one, so batches grow with load; a batch's completion starts the next.
void MariadbGraphStore::start_batch_locked(std::unique_lock<std::mutex>& lock) {
  // Those that waited too long are answered now, unwritten (503: Graph sends them again).
  std::vector<Pending> late;
  const auto now = std::chrono::steady_clock::now();
  while (!waiting_.empty() && now - waiting_.front().queued > max_wait_) {
    late.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  if (!late.empty()) {
    lock.unlock();
    for (auto& p : late) {
      p.done(make_error(Errc::busy, "the notification waited over " +
                                        std::to_string(max_wait_.count()) +
                                        " ms for the database; not recorded"));
    }
    lock.lock();
  }
  if (waiting_.empty()) return;
  auto batch = std::make_shared<std::vector<Pending>>();
  const std::size_t n = std::min(batch_max_, waiting_.size());
  batch->reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    batch->push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  ++running_;
  lock.unlock();
  // The completion runs on the database thread: it posts each result to its waiter's executor.
  pool_.run_then<std::vector<std::optional<GraphRecorded>>>(
      [this, batch](Connection& conn) {
        std::vector<GraphRequest> requests;
        requests.reserve(batch->size());
        for (const auto& p : *batch) requests.push_back(p.request);
        return record_graph_batch(conn, requests, owner_);
      },
      [this, batch](Result<std::vector<std::optional<GraphRecorded>>> result) {
        bool any_marked = false;
        for (std::size_t i = 0; i < batch->size(); ++i) {
          if (!result) {
            (*batch)[i].done(result.error());
            continue;
          }
          any_marked = any_marked || ((*result)[i] && (*result)[i]->marked);
          (*batch)[i].done(std::move((*result)[i]));
        }
        if (any_marked && on_marked_) on_marked_();
        std::unique_lock lock(mutex_);
        --running_;
        start_batch_locked(lock);
        if (lock.owns_lock()) lock.unlock();
        idle_.notify_all();
      });
}

}  // namespace mp::store
