// Graph registrations' reads and writes; prepared statements of fixed text.
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
// secret hash first, to find each request's row in a batch. The customer and the device are read
// by subqueries, not joins: a locking read locks every row it joins, and a customer's row is
// shared by all its registrations, so joined it would make every batch wait for the one before.
// A deleted customer's registration reads a NULL customer id (and is no Graph registration).
constexpr std::string_view kColumns =
    "SELECT r.secret_hash, r.id, (SELECT c.customer_id FROM customers c WHERE c.id = "
    "r.customer_id AND c.state <> 'deleted'), (SELECT c.state = 'active' FROM customers c WHERE "
    "c.id = r.customer_id), (SELECT d.state = 'active' FROM devices d WHERE d.id = r.device_id), "
    "r.client_state_hash, COALESCE(r.graph_tenant, ''), COALESCE(r.subscription_id, ''), "
    "r.graph_baseline, r.graph_items, r.unread_count, r.last_heard_at IS NOT NULL FROM "
    "registrations r WHERE ";
constexpr std::string_view kActiveGraph = " AND r.state = 'active' AND r.source = 'graph'";

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
        for (const auto& row : *rows) {
          if (!row.is_null(2)) out.emplace(row.text(0), from_row(row));
        }
        return {};
      });
  if (!st) return std::move(st).error();
  return out;
}

std::string key_of(const Bytes& hash) {
  return std::string(hash.begin(), hash.end());
}

// Widths of the columns the rows' write fills (migrations 0001, 0010): a longer value is refused
// before the statement, as the column would refuse it (JSON_TABLE would cut it silently).
constexpr std::size_t kMaxSubscriptionId = 512;
constexpr std::size_t kMaxGraphItems = 5120;

// The count, the unread set, the binding, the expiry, last heard, a wake and, where `mark`, the
// pending badge (as the EWS record statement sets it: a badge already waiting keeps its due time
// and age), for many rows in one statement: each row's values are one element of a JSON array
// (integers, and text as hex so that nothing needs escaping), joined to its row by id. The text
// is fixed, so one prepared statement serves every batch size. Parameters: the array, the owner.
const std::string& write_rows_sql() {
  static const std::string sql =
      "UPDATE JSON_TABLE(?, '$[*]' COLUMNS(id BIGINT PATH '$[0]', "
      "sub VARCHAR(1024) CHARACTER SET ascii PATH '$[1]', baseline INT UNSIGNED PATH '$[2]', "
      "items VARCHAR(10240) CHARACTER SET ascii PATH '$[3]', unread INT UNSIGNED PATH '$[4]', "
      "expires BIGINT PATH '$[5]', heard TINYINT PATH '$[6]', "
      "wake VARCHAR(128) CHARACTER SET ascii PATH '$[7]', mark TINYINT PATH '$[8]')) v "
      "STRAIGHT_JOIN registrations r ON r.id = v.id SET "
      "r.subscription_id = NULLIF(UNHEX(v.sub), ''), r.graph_baseline = v.baseline, "
      "r.graph_items = UNHEX(v.items), r.unread_count = v.unread, "
      "r.graph_expires_at = COALESCE(FROM_UNIXTIME(v.expires), r.graph_expires_at), "
      "r.last_heard_at = IF(v.heard, UTC_TIMESTAMP(6), r.last_heard_at), "
      "r.wake_reason = COALESCE(NULLIF(UNHEX(v.wake), ''), r.wake_reason), " +
      mark_pending_sql("v.mark", "?");
  return sql;
}

void append_hex(std::string& out, std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  out += '"';
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += kDigits[b >> 4];
    out += kDigits[b & 0x0F];
  }
  out += '"';
}

// One row's element of the write's JSON array.
void append_row(std::string& doc, const GraphRowWrite& w) {
  const GraphUpdate& u = w.update;
  doc += doc.size() > 1 ? ",[" : "[";
  doc += std::to_string(w.id);
  doc += ',';
  append_hex(doc, u.subscription_id);
  doc += ',';
  doc += std::to_string(u.baseline);
  doc += ',';
  append_hex(doc, u.items);
  doc += ',';
  doc += std::to_string(u.unread_count);
  doc += ',';
  doc += u.expires_at ? std::to_string(*u.expires_at) : "null";
  doc += u.heard ? ",1," : ",0,";
  append_hex(doc, u.wake_reason);
  doc += w.mark ? ",1]" : ",0]";
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
  // One write of every registration's row; the mark when its count moved over the batch, or a
  // wake.
  std::vector<GraphRowWrite> writes;
  std::map<std::string, bool> marked;
  for (auto& [key, w] : rows_now) {
    if (!w.write) continue;
    const bool mark =
        (w.now.unread_count != w.original.unread_count || !w.merged.wake_reason.empty()) &&
        w.original.customer_active && w.original.device_active;
    w.merged.count_moved = w.now.unread_count != w.original.unread_count;
    writes.push_back({w.original.id, std::move(w.merged), mark});
    marked[key] = mark;
  }
  if (auto st = write_graph_rows(conn, writes, owner); !st) return std::move(st).error();
  for (std::size_t i = 0; i < requests.size(); ++i) {
    if (!out[i]) continue;
    const auto m = marked.find(key_of(requests[i].secret_hash));
    out[i]->marked = m != marked.end() && m->second;
  }
  return out;
}

}  // namespace

Status write_graph_rows(Connection& conn, std::span<const GraphRowWrite> rows,
                        const std::string& owner) {
  if (rows.empty()) return {};
  auto stmt = conn.prepare(write_rows_sql());
  if (!stmt) return std::move(stmt).error();
  std::string doc;
  for (std::size_t begin = 0; begin < rows.size(); begin += kGraphWriteChunk) {
    const std::size_t end = std::min(rows.size(), begin + kGraphWriteChunk);
    doc = "[";
    for (std::size_t i = begin; i < end; ++i) {
      const GraphUpdate& u = rows[i].update;
      if (u.subscription_id.size() > kMaxSubscriptionId) {
        return make_error(Errc::invalid_argument, "a Graph subscription id is over " +
                                                      std::to_string(kMaxSubscriptionId) +
                                                      " bytes; registration " +
                                                      std::to_string(rows[i].id) + " not written");
      }
      if (u.items.size() > kMaxGraphItems) {
        return make_error(Errc::internal, "a Graph unread set is over " +
                                              std::to_string(kMaxGraphItems) +
                                              " bytes; registration " + std::to_string(rows[i].id) +
                                              " not written");
      }
      append_row(doc, rows[i]);
    }
    doc += ']';
    const Value params[] = {Value{std::move(doc)}, Value{owner}};
    if (auto n = (*stmt)->execute(params); !n) return std::move(n).error();
  }
  return {};
}

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
