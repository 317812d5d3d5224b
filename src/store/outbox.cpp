// SQL behind outbox.hpp.
#include "store/outbox.hpp"

#include <algorithm>
#include <map>

#include "store/callback_store.hpp"
#include "store/sql_util.hpp"

namespace mp::store {

std::string mark_pending_sql(std::string_view when, std::string_view owner) {
  const std::string w(when);
  return "badge_version = badge_version + (" + w + "), badge_owner = IF(" + w + ", " +
         std::string(owner) + ", badge_owner), badge_queued_at = IF(" + w +
         ", IFNULL(badge_queued_at, UTC_TIMESTAMP(6)), badge_queued_at), badge_due_at = IF(" + w +
         ", IFNULL(badge_due_at, UTC_TIMESTAMP(6)), badge_due_at)";
}

std::string device_badge_sql(std::string_view device_id) {
  return "(SELECT LEAST(COALESCE(SUM(r2.unread_count), 0), " + std::to_string(kMaxUnreadCount) +
         ") FROM registrations r2 WHERE r2.device_id = " + std::string(device_id) +
         " AND r2.state = 'active')";
}

namespace {

using sql::for_each_id_chunk;

// The due marks' query: kDueSelect, the owner, kDueWhere, any paused-customer filter, kDueOrder
// and the limit. The badge is the device's, read now: what the device should show. The plan is
// fixed: the owner's range of the badge index in due order, stopping at the limit, then each
// mark's device and customer by key. Left to itself the optimizer may start from the customers
// (a region's largest customer holds most registrations) and read every registration of theirs
// to sort the due ones: 6,800 rows per round in the fan-out benchmark instead of the ~140 due.
const std::string& due_select() {
  static const std::string sql =
      "SELECT STRAIGHT_JOIN r.id, r.badge_version, r.customer_id, r.device_id, r.mailbox_id, " +
      device_badge_sql("r.device_id") +
      ", r.badge_attempts, TIMESTAMPDIFF(MICROSECOND, r.badge_queued_at, UTC_TIMESTAMP(6)), "
      "d.token_hex, d.environment, d.state, c.customer_id, c.state, "
      "COALESCE(r.wake_reason, ''), r.wake_sent_at IS NULL OR r.wake_sent_at < "
      "UTC_TIMESTAMP(6) - INTERVAL " +
      std::to_string(kWakeInterval.count()) +
      " SECOND FROM registrations r FORCE "
      "INDEX (ix_registrations_badge_due) JOIN "
      "devices d ON d.id = r.device_id JOIN customers c ON c.id = r.customer_id WHERE "
      "r.badge_owner = ";
  return sql;
}
constexpr std::string_view kDueWhere = " AND r.badge_due_at <= UTC_TIMESTAMP(6)";
constexpr std::string_view kDueOrder = " ORDER BY r.badge_due_at LIMIT ";

// The due marks of `owner`, without the customers in `paused`: one prepared statement per
// id-list shape (paused ids padded with 0, which no customer has); past the largest shape, the
// text protocol with the ids as literals.
Result<std::vector<Row>> query_due(Connection& conn, const std::string& owner, std::size_t limit,
                                   const std::vector<std::int64_t>& paused) {
  const auto rows = static_cast<std::int64_t>(std::max<std::size_t>(1, limit));
  std::string sql = due_select();
  if (paused.size() > sql::kMaxIdListShape) {
    sql += conn.quote(owner);
    sql += kDueWhere;
    sql += " AND r.customer_id NOT IN (";
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
    sql += " AND r.customer_id NOT IN (";
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
    o.version = r.i64(1);
    o.customer_id = r.i64(2);
    o.device_id = r.i64(3);
    o.mailbox_id = r.i64(4);
    o.badge = r.i64(5);
    o.attempts = static_cast<int>(r.i64(6));
    o.age_us = std::max<std::int64_t>(0, r.is_null(7) ? 0 : r.i64(7));
    o.token_hex = r.text(8);
    o.environment = r.text(9);
    o.device_state = r.text(10);
    o.customer_public_id = r.text(11);
    o.customer_state = r.text(12);
    o.wake_reason = r.text(13);
    o.wake_allowed = r.i64(14) != 0;
    out.push_back(std::move(o));
  }
  return out;
}

namespace {

// Clears marks whose version is still the one read; a mark whose version moved (an event
// committed after the read) stays pending for the next round, as a new badge: no failed attempts
// and waiting from now. Parameters: (id, version) per row, then the ids; padded by repeating the
// last mark (clearing one twice is harmless).
const std::string& clear_marks_sql(std::size_t shape) {
  thread_local std::map<std::size_t, std::string> cache;
  auto [it, fresh] = cache.try_emplace(shape);
  if (!fresh) return it->second;
  std::string& sql = it->second;
  sql =
      "UPDATE registrations SET badge_attempts = 0, badge_error = NULL, badge_queued_at = "
      "IF(badge_version = ";
  sql::append_case_id(sql, shape, "?", "NULL");
  sql +=
      ", NULL, UTC_TIMESTAMP(6)), badge_owner = IF(badge_queued_at IS NULL, NULL, "
      "badge_owner), badge_due_at = IF(badge_queued_at IS NULL, NULL, badge_due_at) WHERE "
      "badge_owner IS NOT NULL AND id IN (";
  sql += sql::id_placeholders(shape);
  sql += ")";
  return sql;
}

Status clear_marks(Connection& conn, std::vector<PendingMark> marks) {
  // In id order: rows are locked in the order the callbacks' statements lock them.
  std::sort(marks.begin(), marks.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  std::vector<Value> params;
  for (std::size_t begin = 0; begin < marks.size(); begin += sql::kIdListShapes[3]) {
    const std::size_t n = std::min(sql::kIdListShapes[3], marks.size() - begin);
    const std::size_t shape = sql::id_list_shape(n);
    const auto at = [&](std::size_t i) -> const PendingMark& {
      return marks[begin + std::min(i, n - 1)];
    };
    params.clear();
    for (std::size_t i = 0; i < shape; ++i) {
      params.emplace_back(at(i).id);
      params.emplace_back(at(i).version);
    }
    for (std::size_t i = 0; i < shape; ++i) params.emplace_back(at(i).id);
    auto done = conn.execute(clear_marks_sql(shape), params);
    if (!done) return std::move(done).error();
  }
  return {};
}

Status apply_once(Connection& conn, const DispatchWrites& outcome) {
  if (auto st = conn.begin(); !st) return st;
  auto run = [&]() -> Status {
    // Dead letters first, from the marks as they were read (none when an event came since: the
    // newer badge gets its own chance).
    for (const auto& d : outcome.dead) {
      auto n = conn.execute(
          "INSERT INTO outbox (owner, customer_id, device_id, mailbox_id, badge, state, attempts, "
          "next_attempt_at, expires_at, last_error, created_at) SELECT COALESCE(r.badge_owner, "
          "''), r.customer_id, r.device_id, r.mailbox_id, " +
              device_badge_sql("r.device_id") +
              ", 'dead', LEAST(r.badge_attempts + 1, 65535), UTC_TIMESTAMP(6), "
              "UTC_TIMESTAMP(6), LEFT(?, 255), COALESCE(r.badge_queued_at, UTC_TIMESTAMP(6)) "
              "FROM registrations r WHERE r.id = ? AND r.badge_version = ? AND r.badge_owner IS "
              "NOT NULL",
          {Value{d.reason}, Value{d.mark.id}, Value{d.mark.version}});
      if (!n) return std::move(n).error();
    }
    std::vector<PendingMark> cleared = outcome.remove;
    for (const auto& d : outcome.dead) cleared.push_back(d.mark);
    if (auto st = clear_marks(conn, std::move(cleared)); !st) return st;
    for (const auto& w : outcome.wakes) {
      // Rare (lifecycle events, expiry, silence): one statement each.
      auto n = conn.execute(
          "UPDATE registrations SET wake_reason = IF(badge_version = ?, NULL, wake_reason), "
          "wake_sent_at = IF(?, UTC_TIMESTAMP(6), wake_sent_at) WHERE id = ?",
          {Value{w.mark.version}, Value{std::int64_t{w.sent}}, Value{w.mark.id}});
      if (!n) return std::move(n).error();
    }
    for (const auto& r : outcome.retry) {
      auto n = conn.execute(
          "UPDATE registrations SET badge_attempts = LEAST(badge_attempts + 1, 65535), "
          "badge_due_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, badge_error = LEFT(?, 255) "
          "WHERE id = ? AND badge_owner IS NOT NULL",
          {Value{static_cast<std::int64_t>(r.delay.count()) * 1000}, Value{r.error}, Value{r.id}});
      if (!n) return std::move(n).error();
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

Result<std::uint64_t> mark_due_wakes(Connection& conn, const std::string& owner,
                                     std::size_t limit) {
  constexpr std::string_view kMark =
      "UPDATE registrations SET badge_version = badge_version + 1, badge_owner = "
      "COALESCE(badge_owner, ?), badge_queued_at = COALESCE(badge_queued_at, UTC_TIMESTAMP(6)), "
      "badge_due_at = COALESCE(badge_due_at, UTC_TIMESTAMP(6))";
  // Each on its own index: ix_registrations_wake, ix_registrations_graph_expiry,
  // ix_registrations_silent_after; autocommit, a few rows a minute in a region's steady state.
  // Silences and expiries are looked for within a day of their moment only, so subscriptions
  // silent for weeks (woken once already) are not read every minute.
  const std::string kinds[] = {
      std::string(kMark) +
          " WHERE wake_reason IS NOT NULL AND badge_owner IS NULL AND state = 'active' LIMIT ?",
      std::string(kMark) +
          ", wake_reason = 'renew' WHERE graph_expires_at BETWEEN UTC_TIMESTAMP(6) AND "
          "UTC_TIMESTAMP(6) + INTERVAL 1 DAY AND source = 'graph' AND state = 'active' AND "
          "wake_reason IS NULL AND (wake_sent_at IS NULL OR wake_sent_at < graph_expires_at - "
          "INTERVAL 1 DAY) LIMIT ?",
      std::string(kMark) +
          ", wake_reason = 'resubscribe' WHERE state = 'active' AND silent_after BETWEEN "
          "UTC_TIMESTAMP(6) - INTERVAL 1 DAY AND UTC_TIMESTAMP(6) AND source = 'ews' AND "
          "last_heard_at IS NOT NULL AND wake_reason IS NULL AND (wake_sent_at IS NULL OR "
          "wake_sent_at < silent_after) LIMIT ?"};
  std::uint64_t marked = 0;
  for (const auto& sql : kinds) {
    auto n = conn.execute(sql, {Value{owner}, Value{static_cast<std::int64_t>(limit)}});
    if (!n) return std::move(n).error();
    marked += *n;
  }
  return marked;
}

Result<std::uint64_t> take_over_outbox(Connection& conn, const std::string& owner,
                                       std::chrono::seconds lease, std::size_t limit) {
  // The owners of pending marks (a loose scan of the (badge_owner, …) index), then which of them
  // are gone: heartbeat older than the lease, stopped, or never seen at all (a live instance
  // writes its heartbeat before it accepts its first callback). Each gone owner's marks move in
  // one UPDATE on that index, so it locks those rows only.
  auto owners = conn.query(
      "SELECT DISTINCT badge_owner FROM registrations WHERE badge_owner IS NOT NULL AND "
      "badge_owner <> ?",
      {Value{owner}});
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
        conn.execute("UPDATE registrations SET badge_owner = ? WHERE badge_owner = ? LIMIT ?",
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
  // Both pending figures from the (badge_owner, badge_due_at, badge_queued_at) index alone.
  auto rows = conn.query(
      "SELECT (SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL), "
      "(SELECT COUNT(*) FROM outbox WHERE state = 'dead'), "
      "COALESCE(TIMESTAMPDIFF(SECOND, (SELECT MIN(badge_queued_at) FROM registrations WHERE "
      "badge_owner IS NOT NULL), UTC_TIMESTAMP(6)), 0)");
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
