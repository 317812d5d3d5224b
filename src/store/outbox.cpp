// SQL behind outbox.hpp.
#include "store/outbox.hpp"

#include <algorithm>
#include <map>

#include "store/sql_util.hpp"

namespace mp::store {
namespace {

using sql::for_each_id_chunk;

// The due rows' query: kDueSelect, the owner, kDueWhere, any paused-customer filter, kDueOrder
// and the limit.
constexpr std::string_view kDueSelect =
    "SELECT o.id, o.customer_id, o.device_id, o.mailbox_id, o.badge, o.attempts, "
    "o.expires_at < UTC_TIMESTAMP(6), TIMESTAMPDIFF(MICROSECOND, o.created_at, "
    "UTC_TIMESTAMP(6)), d.token_hex, d.environment, d.state, c.customer_id, c.state "
    "FROM outbox o JOIN devices d ON d.id = o.device_id JOIN customers c ON c.id = "
    "o.customer_id WHERE o.owner = ";
constexpr std::string_view kDueWhere =
    " AND o.state = 'queued' AND o.next_attempt_at <= UTC_TIMESTAMP(6)";
constexpr std::string_view kDueOrder = " ORDER BY o.next_attempt_at, o.id LIMIT ";

// The due rows of `owner`, without the customers in `paused`: one prepared statement per
// id-list shape (paused ids padded with 0, which no customer has); past the largest shape, the
// text protocol with the ids as literals.
Result<std::vector<Row>> query_due(Connection& conn, const std::string& owner, std::size_t limit,
                                   const std::vector<std::int64_t>& paused) {
  const auto rows = static_cast<std::int64_t>(std::max<std::size_t>(1, limit));
  std::string sql(kDueSelect);
  if (paused.size() > sql::kMaxIdListShape) {
    sql += conn.quote(owner);
    sql += kDueWhere;
    sql += " AND o.customer_id NOT IN (";
    for (std::size_t i = 0; i < paused.size(); ++i) {
      if (i) sql += ',';
      sql += std::to_string(paused[i]);
    }
    sql += ")";
    sql += kDueOrder;
    sql += std::to_string(rows);
    return conn.query(std::string_view(sql));
  }
  sql += "?";
  sql += kDueWhere;
  std::vector<Value> params{Value{owner}};
  if (!paused.empty()) {
    const std::size_t shape = sql::id_list_shape(paused.size());
    for (std::size_t i = 0; i < shape; ++i) {
      params.emplace_back(i < paused.size() ? paused[i] : std::int64_t{0});
    }
    sql += " AND o.customer_id NOT IN (";
    sql += sql::id_placeholders(shape);
    sql += ")";
  }
  sql += kDueOrder;
  sql += "?";
  params.emplace_back(rows);
  return conn.query(sql, params);
}

}  // namespace

Result<std::vector<OutboxRow>> read_due_outbox(Connection& conn, const std::string& owner,
                                               std::size_t limit,
                                               const std::vector<std::int64_t>& paused) {
  auto rows = query_due(conn, owner, limit, paused);
  if (!rows) return std::move(rows).error();
  std::vector<OutboxRow> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    OutboxRow o;
    o.id = r.i64(0);
    o.customer_id = r.i64(1);
    o.device_id = r.i64(2);
    o.mailbox_id = r.i64(3);
    o.badge = r.i64(4);
    o.attempts = static_cast<int>(r.i64(5));
    o.expired = r.i64(6) != 0;
    o.age_us = r.i64(7);
    o.token_hex = r.text(8);
    o.environment = r.text(9);
    o.device_state = r.text(10);
    o.customer_public_id = r.text(11);
    o.customer_state = r.text(12);
    out.push_back(std::move(o));
  }
  return out;
}

namespace {

Status apply_once(Connection& conn, const DispatchWrites& outcome) {
  if (auto st = conn.begin(); !st) return st;
  auto run = [&]() -> Status {
    auto remove = [&](std::string_view placeholders, std::span<const Value> ids) -> Status {
      auto n =
          conn.execute("DELETE FROM outbox WHERE id IN (" + std::string(placeholders) + ")", ids);
      if (!n) return std::move(n).error();
      return {};
    };
    if (auto st = for_each_id_chunk(outcome.remove, remove); !st) return st;
    for (const auto& r : outcome.retry) {
      auto n = conn.execute(
          "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = UTC_TIMESTAMP(6) + "
          "INTERVAL ? MICROSECOND, last_error = LEFT(?, 255) WHERE id = ? AND state = 'queued'",
          {Value{static_cast<std::int64_t>(r.delay.count()) * 1000}, Value{r.error}, Value{r.id}});
      if (!n) return std::move(n).error();
    }
    std::map<std::string, std::vector<std::int64_t>> dead;
    for (const auto& d : outcome.dead) dead[d.reason].push_back(d.id);
    for (const auto& group : dead) {
      const std::string& reason = group.first;  // not a structured binding: clang 14 lambdas
      std::vector<Value> params;
      auto st = for_each_id_chunk(
          group.second, [&](std::string_view placeholders, std::span<const Value> ids) -> Status {
            params.assign(1, Value{reason});
            params.insert(params.end(), ids.begin(), ids.end());
            auto n = conn.execute(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = LEFT(?, "
                "255) "
                "WHERE id IN (" +
                    std::string(placeholders) + ")",
                params);
            if (!n) return std::move(n).error();
            return {};
          });
      if (!st) return st;
    }
    for (const auto& d : outcome.devices) {
      Result<std::uint64_t> n = std::uint64_t{0};
      if (d.unregistered) {
        // Apple's timestamp, or now: the app registering again after it makes the device active.
        const Value at =
            d.unregistered_at ? Value{sql_datetime(*d.unregistered_at)} : Value{Null{}};
        n = conn.execute(
            "UPDATE devices SET state = 'unregistered', unregistered_at = "
            "COALESCE(?, UTC_TIMESTAMP(6)), invalid_reason = LEFT(?, 64) WHERE id = ? AND state = "
            "'active'",
            {at, Value{d.reason}, Value{d.device_id}});
      } else {
        n = conn.execute(
            "UPDATE devices SET state = 'invalid', invalid_reason = LEFT(?, 64) WHERE id = ? AND "
            "state = 'active'",
            {Value{d.reason}, Value{d.device_id}});
      }
      if (!n) return std::move(n).error();
    }
    return conn.commit();
  };
  Status st = run();
  if (!st && !conn.broken()) (void)conn.rollback();
  return st;
}

}  // namespace

Status apply_dispatch_writes(Connection& conn, const DispatchWrites& outcome) {
  if (outcome.empty()) return {};
  for (int attempt = 1;; ++attempt) {
    Status st = apply_once(conn, outcome);
    // Deadlocks and Galera certification conflicts roll back the whole round: run it again.
    if (st || st.error().code != Errc::busy || attempt >= 3) return st;
  }
}

Result<std::uint64_t> take_over_outbox(Connection& conn, const std::string& owner,
                                       std::chrono::seconds lease, std::size_t limit) {
  // The owners of queued rows (a loose scan of the (owner, state, …) index), then which of them
  // are gone: heartbeat older than the lease, stopped, or never seen at all (a live instance
  // writes its heartbeat before it accepts its first callback). Each gone owner's rows move in
  // one UPDATE on that index, so it locks those rows only and never the inserts of live
  // instances.
  auto owners = conn.query(
      "SELECT DISTINCT owner FROM outbox WHERE state = 'queued' AND owner <> ?", {Value{owner}});
  if (!owners) return std::move(owners).error();
  std::uint64_t moved = 0;
  for (const auto& row : *owners) {
    if (moved >= limit) break;
    const std::string other = row.text(0);
    auto alive = conn.query(
        "SELECT COUNT(*) FROM instances WHERE instance_id = ? AND stopped_at IS NULL AND "
        "heartbeat_at >= UTC_TIMESTAMP(6) - INTERVAL ? SECOND",
        {Value{other}, Value{static_cast<std::int64_t>(lease.count())}});
    if (!alive) return std::move(alive).error();
    if (!alive->empty() && (*alive)[0].i64(0) > 0) continue;
    auto n =
        conn.execute("UPDATE outbox SET owner = ? WHERE owner = ? AND state = 'queued' LIMIT ?",
                     {Value{owner}, Value{other}, Value{static_cast<std::int64_t>(limit - moved)}});
    if (!n) return std::move(n).error();
    moved += *n;
  }
  return moved;
}

Result<std::uint64_t> purge_dead_letters(Connection& conn, std::chrono::hours older_than,
                                         std::size_t limit) {
  return conn.execute(
      "DELETE FROM outbox WHERE state = 'dead' AND created_at < UTC_TIMESTAMP(6) - INTERVAL ? "
      "HOUR LIMIT ?",
      {Value{static_cast<std::int64_t>(older_than.count())},
       Value{static_cast<std::int64_t>(std::max<std::size_t>(1, limit))}});
}

Result<OutboxStats> outbox_stats(Connection& conn) {
  auto rows = conn.query(
      "SELECT (SELECT COUNT(*) FROM outbox WHERE state = 'queued'), "
      "(SELECT COUNT(*) FROM outbox WHERE state = 'dead'), "
      "COALESCE(TIMESTAMPDIFF(SECOND, (SELECT MIN(created_at) FROM outbox WHERE state = "
      "'queued'), UTC_TIMESTAMP(6)), 0)");
  if (!rows) return std::move(rows).error();
  OutboxStats s;
  if (!rows->empty()) {
    s.queued = (*rows)[0].i64(0);
    s.dead = (*rows)[0].i64(1);
    s.oldest_queued_seconds = std::max<std::int64_t>(0, (*rows)[0].i64(2));
  }
  return s;
}

Status set_customer_paused(Connection& conn, std::int64_t customer_id,
                           const std::optional<std::string>& reason) {
  auto n = conn.execute("UPDATE customers SET paused_reason = LEFT(?, 255) WHERE id = ?",
                        {reason ? Value{*reason} : Value{Null{}}, Value{customer_id}});
  if (!n) return std::move(n).error();
  return {};
}

}  // namespace mp::store
