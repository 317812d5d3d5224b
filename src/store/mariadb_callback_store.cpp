// Registration lookups and batched callback records on MariaDB.
#include "store/mariadb_callback_store.hpp"

#include <algorithm>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "common/log.hpp"
#include "store/outbox.hpp"
#include "store/sql_util.hpp"

namespace mp::store {
namespace asio = boost::asio;

namespace {

constexpr int kDeadlockRetries = 3;

// Batch statements are prepared per row count; padding to a power of two keeps the number of
// distinct statements per connection small. Padding rows use id 0, which never exists.
std::size_t padded(std::size_t n) {
  std::size_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

void append_id_list(std::string& sql, std::size_t rows) {
  sql += "id IN (?";
  for (std::size_t i = 1; i < rows; ++i) sql += ",?";
  sql += ")";
}

// The careful path's check and last-heard write: one statement per round of distinct
// registrations, by primary key. Parameters: the ids, then (id, subscription id) per row. A row
// matches only while its registration is active and still bound to the callback's subscription
// id; with CLIENT_FOUND_ROWS the affected count is the number of rows matched.
const std::string& touch_registrations_sql(std::size_t rows) {
  thread_local std::map<std::size_t, std::string> cache;
  auto [it, fresh] = cache.try_emplace(rows);
  if (!fresh) return it->second;
  std::string& sql = it->second;
  sql = "UPDATE registrations SET last_heard_at = UTC_TIMESTAMP(6) WHERE state = 'active' AND ";
  append_id_list(sql, rows);
  sql += " AND subscription_id = ";
  sql::append_case_id(sql, rows, "?", "NULL");
  return sql;
}

struct RegistrationGroup {
  std::int64_t registration_id;
  std::string subscription_id;
  std::vector<std::size_t> writes;  // indexes into the batch
};

// The writes that are not stale, one group per (registration, subscription id), in registration
// id order: rows are locked in that order by every batch, so concurrent batches cannot deadlock.
std::vector<RegistrationGroup> group_by_registration(const std::vector<CallbackWrite>& writes,
                                                     const std::vector<WriteOutcome>& outcome) {
  std::vector<RegistrationGroup> groups;
  std::map<std::pair<std::int64_t, std::string_view>, std::size_t> index;
  for (std::size_t i = 0; i < writes.size(); ++i) {
    if (outcome[i] == WriteOutcome::stale) continue;
    const auto key =
        std::make_pair(writes[i].registration_id, std::string_view(writes[i].subscription_id));
    auto [it, fresh] = index.try_emplace(key, groups.size());
    if (fresh) groups.push_back({key.first, writes[i].subscription_id, {}});
    groups[it->second].writes.push_back(i);
  }
  std::sort(groups.begin(), groups.end(),
            [](const auto& a, const auto& b) { return a.registration_id < b.registration_id; });
  return groups;
}

// The count events of the writes that are not stale, per registration in arrival order.
std::map<std::int64_t, std::vector<CountEvent>> count_events_of(
    const std::vector<CallbackWrite>& writes, const std::vector<WriteOutcome>& outcome) {
  std::map<std::int64_t, std::vector<CountEvent>> events;
  for (std::size_t i = 0; i < writes.size(); ++i) {
    if (outcome[i] == WriteOutcome::stale || writes[i].count_events.empty()) continue;
    auto& list = events[writes[i].registration_id];
    list.insert(list.end(), writes[i].count_events.begin(), writes[i].count_events.end());
  }
  return events;
}

// A number for count_batch that no earlier batch used (random: instances write concurrently).
// Even: the batch marks a row `batch` when its device should hear of it, `batch + 1` when not.
std::uint64_t new_count_batch() {
  const Bytes b = random_bytes(8);
  std::uint64_t v = 0;
  for (const auto byte : b) v = (v << 8) | byte;
  return (v >> 2) << 1;  // BIGINT UNSIGNED holds it either way; kept positive for readability
}

// What one record statement writes: the rows `ids` (last heard now), the counts moved by
// `events`; `where` is the rest of its WHERE clause (after "id IN (…)").
struct RecordSql {
  const std::vector<std::int64_t>& ids;
  const std::map<std::int64_t, std::vector<CountEvent>>& events;
  std::uint64_t batch;
  const OutboxTarget* outbox;
};

// "UPDATE registrations SET last_heard_at = now, count_batch = …, badge_… = …, unread_count = …,
// recent_items = … WHERE id IN (…)<where>": one write of each registration row, and nothing
// else. (Last heard rides along: kept in the listener's memory instead, it would cost a write of
// its own at the next bulk flush, since a registration hears about one event in minutes.)
// count_batch is `batch` on a row whose device should hear of it, `batch + 1` on the other rows
// written (the marks below read it). With `outbox`, a row whose device should hear of it (its count
// moved, its device and customer active) is marked pending for this instance: its badge version
// moves on, and the due time and first-queued time are set unless a badge already waits (a retry
// keeps its backoff). MariaDB assigns left to right, so the marks read the new count_batch and the
// counts read the items remembered before this batch. Values are literals (ids are integers,
// strings quoted by the client library): the text differs per batch, so it goes over the text
// protocol, never prepared.
std::string record_sql(Connection& conn, const RecordSql& r, std::string_view where) {
  const auto quote = [&conn](std::string_view s) { return conn.quote(s); };
  const std::string b = std::to_string(r.batch);
  const std::string unmarked = std::to_string(r.batch + 1);
  std::string notifies, counts, recents, ids;
  for (const auto& [id, list] : r.events) {
    const CountSql sql = count_sql(list, quote);
    const std::string when = " WHEN " + std::to_string(id) + " THEN ";
    notifies += when + "(" + sql.notify + ")";
    counts += when + sql.count;
    recents += when + sql.recent;
  }
  for (const auto id : r.ids) ids += (ids.empty() ? "" : ",") + std::to_string(id);

  std::string sql = "UPDATE registrations SET last_heard_at = UTC_TIMESTAMP(6), count_batch = ";
  if (notifies.empty()) {
    sql += unmarked;
  } else {
    std::string notify = "CASE id" + notifies + " ELSE 0 END";
    if (r.outbox) {
      notify +=
          " AND EXISTS (SELECT 1 FROM devices d WHERE d.id = registrations.device_id AND "
          "d.state = 'active') AND EXISTS (SELECT 1 FROM customers c WHERE c.id = "
          "registrations.customer_id AND c.state = 'active')";
    }
    sql += "IF(" + notify + ", " + b + ", " + unmarked + ")";
    if (r.outbox) {
      sql += ", " + mark_pending_sql("count_batch = " + b, conn.quote(r.outbox->owner));
    }
    sql += ", unread_count = CASE id" + counts + " ELSE unread_count END, recent_items = CASE id" +
           recents + " ELSE recent_items END";
  }
  sql += " WHERE id IN (" + ids + ")";
  sql += where;
  return sql;
}

// Binds first-seen and resubscribed ids, conditionally on the binding read earlier.
Status apply_bindings(Connection& conn, const std::vector<CallbackWrite>& writes,
                      std::vector<WriteOutcome>& outcome) {
  for (std::size_t i = 0; i < writes.size(); ++i) {
    const auto& w = writes[i];
    if (!w.bind) continue;
    const Value expected = w.expected_current ? Value{*w.expected_current} : Value{Null{}};
    // Never binds an id that was superseded before, whatever the caller's copy of the list says.
    auto updated = conn.execute(
        "UPDATE registrations SET subscription_id = ? "
        "WHERE id = ? AND state = 'active' AND subscription_id <=> ? AND NOT EXISTS ("
        "SELECT 1 FROM superseded_subscriptions s WHERE s.registration_id = registrations.id "
        "AND s.subscription_id = ?)",
        {Value{w.subscription_id}, Value{w.registration_id}, expected, Value{w.subscription_id}});
    if (!updated) return std::move(updated).error();
    if (*updated == 0) {
      // Bound already (an earlier write of this batch, or another instance): fine if to this id.
      // A locking read sees the latest commit, not the transaction's first snapshot.
      auto now = conn.query(
          "SELECT subscription_id FROM registrations WHERE id = ? AND state = 'active' FOR UPDATE",
          {Value{w.registration_id}});
      if (!now) return std::move(now).error();
      if (now->empty() || (*now)[0].text(0) != w.subscription_id) outcome[i] = WriteOutcome::stale;
      continue;
    }
    if (w.expected_current) {
      auto kept = conn.execute(
          "INSERT IGNORE INTO superseded_subscriptions (registration_id, subscription_id) VALUES "
          "(?, ?)",
          {Value{w.registration_id}, Value{*w.expected_current}});
      if (!kept) return std::move(kept).error();
      // Only the newest kMaxSupersededSubscriptions are kept: an app that resubscribes without
      // end cannot grow the table. Older ids get Unsubscribe no more, but Exchange has long
      // dropped a subscription that many resubscriptions ago (it expires when unanswered).
      auto trimmed = conn.execute(
          "DELETE FROM superseded_subscriptions WHERE registration_id = ? AND superseded_at < "
          "(SELECT t.superseded_at FROM (SELECT superseded_at FROM superseded_subscriptions "
          "WHERE registration_id = ? ORDER BY superseded_at DESC LIMIT 1 OFFSET " +
              std::to_string(kMaxSupersededSubscriptions - 1) + ") t)",
          {Value{w.registration_id}, Value{w.registration_id}});
      if (!trimmed) return std::move(trimmed).error();
    }
  }
  return {};
}

// Runs the touch statement for groups with distinct registration ids; returns how many matched.
Result<std::uint64_t> touch_round(Connection& conn,
                                  const std::vector<const RegistrationGroup*>& round,
                                  std::vector<Value>& params) {
  const std::size_t rows = padded(round.size());
  const auto id = [&](std::size_t i) {
    return Value{i < round.size() ? round[i]->registration_id : std::int64_t{0}};
  };
  params.clear();
  params.reserve(rows * 3);
  for (std::size_t i = 0; i < rows; ++i) params.push_back(id(i));
  for (std::size_t i = 0; i < rows; ++i) {
    params.push_back(id(i));
    params.push_back(Value{i < round.size() ? round[i]->subscription_id : std::string()});
  }
  return conn.execute(touch_registrations_sql(rows), params);
}

// Which registrations are still active and bound to the callback's id, and their last heard: one
// statement per batch (a second one only when the batch holds callbacks of two subscription ids
// for one registration). Writes of the others become stale.
Status touch_registrations(Connection& conn, const std::vector<CallbackWrite>& writes,
                           std::vector<WriteOutcome>& outcome) {
  const std::vector<RegistrationGroup> groups = group_by_registration(writes, outcome);
  if (groups.empty()) return {};

  // Rounds of distinct registration ids: CASE id holds one subscription id per registration.
  std::vector<std::vector<const RegistrationGroup*>> rounds;
  std::map<std::int64_t, std::size_t> seen;
  for (const auto& g : groups) {
    const std::size_t r = seen[g.registration_id]++;
    if (r == rounds.size()) rounds.emplace_back();
    rounds[r].push_back(&g);
  }
  std::vector<Value> params;
  std::uint64_t matched = 0;
  for (const auto& round : rounds) {
    auto n = touch_round(conn, round, params);
    if (!n) return std::move(n).error();
    matched += *n;
  }
  if (matched == groups.size()) return {};

  // Some registration changed since it was read: find which, and let the caller re-decide.
  std::string ids;
  for (const auto& g : groups) ids += (ids.empty() ? "" : ",") + std::to_string(g.registration_id);
  auto current = conn.query(
      "SELECT id, subscription_id FROM registrations WHERE state = 'active' AND id IN (" + ids +
      ") FOR UPDATE");
  if (!current) return std::move(current).error();
  std::map<std::int64_t, std::string> bound;
  for (const auto& r : *current) bound[r.i64(0)] = r.text(1);
  for (const auto& g : groups) {
    auto it = bound.find(g.registration_id);
    if (it != bound.end() && it->second == g.subscription_id) continue;
    for (std::size_t i : g.writes) outcome[i] = WriteOutcome::stale;
  }
  return {};
}

// Unread counts and pending badges: each registration's events in arrival order, one statement
// for the batch (the careful path: touch_registrations checked and locked the rows before).
Status update_counts(Connection& conn, const std::vector<CallbackWrite>& writes,
                     const std::vector<WriteOutcome>& outcome, const OutboxTarget* outbox) {
  const auto events = count_events_of(writes, outcome);
  if (events.empty()) return {};
  std::vector<std::int64_t> ids;
  for (const auto& e : events) ids.push_back(e.first);
  auto updated = conn.execute_text(record_sql(conn, {ids, events, new_count_batch(), outbox}, ""));
  if (!updated) return std::move(updated).error();
  return {};
}

// The common batch (no binding, one subscription id per registration) as one statement and its
// own transaction: each registration row is written once, counts, pending badge and last heard
// together, and only while the registration is still
// active and bound to the callback's id. When fewer rows match than were sent, the others are
// stale (deleted or rebound since they were read), and the listener reads them again. Returns
// nullopt when the batch does not qualify: the careful path, statement by statement in one
// transaction, takes it.
std::optional<Result<std::vector<WriteOutcome>>> write_in_one_statement(
    Connection& conn, const std::vector<CallbackWrite>& writes, const OutboxTarget* outbox) {
  std::vector<WriteOutcome> outcome(writes.size(), WriteOutcome::recorded);
  if (std::any_of(writes.begin(), writes.end(), [](const auto& w) { return w.bind; }))
    return std::nullopt;
  const auto groups = group_by_registration(writes, outcome);
  for (std::size_t i = 1; i < groups.size(); ++i) {
    if (groups[i].registration_id == groups[i - 1].registration_id) return std::nullopt;
  }
  if (groups.empty()) return outcome;
  const auto events = count_events_of(writes, outcome);
  std::vector<std::int64_t> ids;
  std::string bound = " AND state = 'active' AND subscription_id = CASE id";
  for (const auto& g : groups) {
    ids.push_back(g.registration_id);
    bound +=
        " WHEN " + std::to_string(g.registration_id) + " THEN " + conn.quote(g.subscription_id);
  }
  bound += " ELSE NULL END";
  const std::uint64_t batch = new_count_batch();
  auto matched = conn.execute_text(record_sql(conn, {ids, events, batch, outbox}, bound));
  if (!matched) return Result<std::vector<WriteOutcome>>(std::move(matched).error());
  if (*matched == groups.size()) return outcome;

  // A registration was deleted or rebound since it was read (rare): which ones. The same
  // condition again: a row that failed it cannot pass it later (an id once replaced is never
  // bound again, a deleted registration comes back unbound), and a row that passed and fails now
  // ended since, so the listener's second look at it records nothing twice.
  std::string list;
  for (const auto id : ids) list += (list.empty() ? "" : ",") + std::to_string(id);
  auto written = conn.query("SELECT id FROM registrations WHERE id IN (" + list + ")" + bound);
  if (!written) return Result<std::vector<WriteOutcome>>(std::move(written).error());
  std::set<std::int64_t> done;
  for (const auto& r : *written) done.insert(r.i64(0));
  for (const auto& g : groups) {
    if (done.count(g.registration_id)) continue;
    for (std::size_t i : g.writes) outcome[i] = WriteOutcome::stale;
  }
  return outcome;
}

Result<std::vector<WriteOutcome>> write_once(Connection& conn,
                                             const std::vector<CallbackWrite>& writes,
                                             const OutboxTarget* outbox) {
  if (auto done = write_in_one_statement(conn, writes, outbox)) return std::move(*done);
  std::vector<WriteOutcome> outcome(writes.size(), WriteOutcome::recorded);
  if (auto st = conn.begin(); !st) return std::move(st).error();
  Status st = apply_bindings(conn, writes, outcome);
  if (st) st = touch_registrations(conn, writes, outcome);
  if (st) st = update_counts(conn, writes, outcome, outbox);
  if (st) st = conn.commit();
  if (!st) {
    if (!conn.broken()) (void)conn.rollback();
    return std::move(st).error();
  }
  return outcome;
}

}  // namespace

namespace {
Result<std::vector<WriteOutcome>> write_with_retries(Connection& conn,
                                                     const std::vector<CallbackWrite>& writes,
                                                     const OutboxTarget* outbox) {
  for (int attempt = 1;; ++attempt) {
    auto result = write_once(conn, writes, outbox);
    // Deadlocks and Galera certification conflicts roll the whole transaction back: run it again.
    if (result || result.error().code != Errc::busy || attempt >= kDeadlockRetries) return result;
    log::info("ews.batch_retry", {{"attempt", attempt}, {"error", result.error().message}});
  }
}
}  // namespace

Result<std::vector<WriteOutcome>> write_callback_batch(Connection& conn,
                                                       const std::vector<CallbackWrite>& writes,
                                                       const OutboxTarget* outbox) {
  auto result = write_with_retries(conn, writes, outbox);
  if (result || writes.size() == 1 || result.error().code == Errc::unavailable) return result;
  // One write the database refuses must not fail its neighbours: write them one by one.
  log::warn("ews.batch_split", {{"writes", writes.size()}, {"error", result.error().message}});
  std::vector<WriteOutcome> outcome;
  outcome.reserve(writes.size());
  for (const auto& w : writes) {
    auto one = write_with_retries(conn, {w}, outbox);
    if (!one && one.error().code == Errc::unavailable) return std::move(one).error();
    outcome.push_back(one ? (*one)[0] : WriteOutcome::failed);
  }
  return outcome;
}

namespace {

// Heard entries per statement: CASE id is evaluated per row and grows with the list, so lists
// stay short; each is padded to a shape of sql_util.hpp by repeating its last entry.
constexpr std::size_t kHeardChunk = 64;

// Parameters: (id, time) per row, then the ids, then (id, subscription id) per row. A row
// matches only while its registration is active and bound to the subscription it was heard
// from; last_heard_at never moves backwards (a callback recorded meanwhile may be newer).
const std::string& heard_sql(std::size_t shape) {
  thread_local std::map<std::size_t, std::string> cache;
  auto [it, fresh] = cache.try_emplace(shape);
  if (!fresh) return it->second;
  std::string& sql = it->second;
  sql =
      "UPDATE registrations SET last_heard_at = GREATEST(IFNULL(last_heard_at, "
      "TIMESTAMP'1970-01-01 00:00:00'), CAST(";
  sql::append_case_id(sql, shape, "?", "NULL");
  sql += " AS DATETIME)) WHERE state = 'active' AND id IN (";
  sql += sql::id_placeholders(shape);
  sql += ") AND subscription_id = ";
  sql::append_case_id(sql, shape, "?", "NULL");
  return sql;
}

// One chunk (distinct ids, at most kHeardChunk); appends the ids that did not match to `gone`.
Status write_heard_chunk(Connection& conn, std::span<const Heard* const> chunk,
                         std::vector<std::int64_t>& gone) {
  const std::size_t shape = sql::id_list_shape(chunk.size());
  const auto at = [&](std::size_t i) -> const Heard& {
    return *chunk[std::min(i, chunk.size() - 1)];
  };
  std::vector<Value> params;
  params.reserve(shape * 5);
  for (std::size_t i = 0; i < shape; ++i) {
    params.emplace_back(at(i).registration_id);
    params.emplace_back(
        sql_datetime(std::chrono::system_clock::time_point(std::chrono::seconds(at(i).heard_at))));
  }
  for (std::size_t i = 0; i < shape; ++i) params.emplace_back(at(i).registration_id);
  for (std::size_t i = 0; i < shape; ++i) {
    params.emplace_back(at(i).registration_id);
    params.emplace_back(at(i).subscription_id);
  }
  auto matched = conn.execute(heard_sql(shape), params);
  if (!matched) return std::move(matched).error();
  if (*matched == chunk.size()) return {};
  // Some registration ended or was rebound since it was cached: find which (rare).
  std::vector<Value> ids;
  ids.reserve(shape);
  for (std::size_t i = 0; i < shape; ++i) ids.emplace_back(at(i).registration_id);
  auto current = conn.query(
      "SELECT id, subscription_id FROM registrations WHERE state = 'active' "
      "AND id IN (" +
          std::string(sql::id_placeholders(shape)) + ")",
      ids);
  if (!current) return std::move(current).error();
  std::map<std::int64_t, std::string> bound;
  for (const auto& r : *current) bound[r.i64(0)] = r.is_null(1) ? std::string() : r.text(1);
  for (const Heard* h : chunk) {
    auto it = bound.find(h->registration_id);
    if (it == bound.end() || it->second != h->subscription_id) gone.push_back(h->registration_id);
  }
  return {};
}

}  // namespace

Result<std::vector<std::int64_t>> write_heard(Connection& conn, const std::vector<Heard>& heard) {
  // By id, the newest entry of a registration only: rows are locked in id order, as by the
  // callback batches, so the two cannot deadlock. Sorted by pointer: the entries (up to the
  // ledger's bound) are not copied again.
  std::vector<const Heard*> order;
  order.reserve(heard.size());
  for (const auto& h : heard) order.push_back(&h);
  std::sort(order.begin(), order.end(), [](const Heard* a, const Heard* b) {
    return a->registration_id != b->registration_id ? a->registration_id < b->registration_id
                                                    : a->heard_at > b->heard_at;
  });
  order.erase(std::unique(order.begin(), order.end(),
                          [](const Heard* a, const Heard* b) {
                            return a->registration_id == b->registration_id;
                          }),
              order.end());
  std::vector<std::int64_t> gone;
  for (std::size_t begin = 0; begin < order.size(); begin += kHeardChunk) {
    const std::size_t n = std::min(kHeardChunk, order.size() - begin);
    const std::span<const Heard* const> chunk(order.data() + begin, n);
    Status st;
    for (int attempt = 1;; ++attempt) {
      st = write_heard_chunk(conn, chunk, gone);
      // A deadlock or a Galera conflict rolled the statement back: run it again.
      if (st || st.error().code != Errc::busy || attempt >= kDeadlockRetries) break;
    }
    if (!st) return std::move(st).error();
  }
  return gone;
}

namespace {

// The columns registration_of reads, in order (r: registrations, c: customers).
constexpr std::string_view kRegistrationColumns =
    "r.id, r.customer_id, r.mailbox_id, c.customer_id, r.subscription_id, "
    "COALESCE(c.caller_cidrs, ''), r.status_frequency_minutes";

RegistrationRecord registration_of(const Row& r) {
  RegistrationRecord rec;
  rec.id = r.i64(0);
  rec.customer_id = r.i64(1);
  rec.mailbox_id = r.i64(2);
  rec.customer_public_id = r.text(3);
  if (!r.is_null(4)) rec.subscription_id = r.text(4);
  rec.caller_cidrs = r.text(5);
  rec.status_frequency_minutes = static_cast<int>(r.i64(6));
  return rec;
}

}  // namespace

Result<std::optional<RegistrationRecord>> find_registration_by_secret(Connection& conn,
                                                                      const Bytes& secret_hash) {
  // EWS registrations only: a Graph registration's secret on the EWS URL is unknown there.
  // One round trip: the superseded ids come along, newest first, space-separated (subscription ids
  // are printable ASCII without spaces: the listener refuses others before they are written).
  auto rows = conn.query(
      "SELECT " + std::string(kRegistrationColumns) +
          ", (SELECT GROUP_CONCAT(s.subscription_id ORDER BY s.superseded_at DESC SEPARATOR ' ' "
          "LIMIT 256) FROM superseded_subscriptions s WHERE s.registration_id = r.id) "
          "FROM registrations r JOIN customers c ON c.id = r.customer_id "
          "WHERE r.secret_hash = ? AND r.state = 'active' AND r.source = 'ews' AND "
          "c.state <> 'deleted'",
      {Value{Blob{std::string(secret_hash.begin(), secret_hash.end())}}});
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<RegistrationRecord>{};
  const Row& r = rows->front();
  RegistrationRecord rec = registration_of(r);
  if (!r.is_null(7)) {
    const std::string old = r.text(7);
    for (std::size_t at = 0; at < old.size();) {
      const std::size_t end = std::min(old.find(' ', at), old.size());
      if (end > at) rec.superseded.push_back(old.substr(at, end - at));
      at = end + 1;
    }
  }
  return std::optional<RegistrationRecord>{std::move(rec)};
}

Result<ActiveRegistrationPage> active_registrations_after(Connection& conn, std::int64_t after_id,
                                                          std::size_t limit) {
  // Two plain queries rather than a join: the page is a range of the primary key read in order
  // (joined with a tiny customers table, MariaDB would use a join buffer and then sort the whole
  // rest of the table for every page), and the page's customers are a handful of point reads.
  auto rows = conn.query(
      "SELECT id, customer_id, mailbox_id, subscription_id, status_frequency_minutes, secret_hash "
      "FROM registrations WHERE id > ? AND state = 'active' AND source = 'ews' ORDER BY id "
      "LIMIT ?",
      {Value{after_id}, Value{static_cast<std::int64_t>(limit)}});
  if (!rows) return std::move(rows).error();
  ActiveRegistrationPage page;
  if (rows->empty()) return page;
  page.next_after = rows->back().i64(0);
  page.done = rows->size() < limit;
  std::set<std::int64_t> customer_ids;
  for (const auto& r : *rows) customer_ids.insert(r.i64(1));
  std::string in;
  for (const auto id : customer_ids) in += (in.empty() ? "" : ",") + std::to_string(id);
  auto customers = conn.query(
      "SELECT id, customer_id, COALESCE(caller_cidrs, '') FROM customers WHERE state <> "
      "'deleted' AND id IN (" +
      in + ")");
  if (!customers) return std::move(customers).error();
  std::map<std::int64_t, const Row*> by_id;
  for (const auto& c : *customers) by_id[c.i64(0)] = &c;
  auto& out = page.registrations;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    const auto c = by_id.find(r.i64(1));
    if (c == by_id.end()) continue;  // a deleted customer's
    ActiveRegistration a;
    a.secret_hash = r.text(5);
    a.record.id = r.i64(0);
    a.record.customer_id = r.i64(1);
    a.record.mailbox_id = r.i64(2);
    if (!r.is_null(3)) a.record.subscription_id = r.text(3);
    a.record.status_frequency_minutes = static_cast<int>(r.i64(4));
    a.record.customer_public_id = c->second->text(1);
    a.record.caller_cidrs = c->second->text(2);
    out.push_back(std::move(a));
  }
  return page;
}

MariadbCallbackStore::MariadbCallbackStore(DatabasePool& pool, std::size_t batch_max,
                                           std::size_t parallel_batches)
    : pool_(pool),
      batch_max_(std::max<std::size_t>(1, batch_max)),
      parallel_batches_(std::max<std::size_t>(1, parallel_batches)) {}

MariadbCallbackStore::~MariadbCallbackStore() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [this] { return running_ == 0; });
}

asio::awaitable<Result<std::optional<RegistrationRecord>>> MariadbCallbackStore::find_registration(
    const Bytes& secret_hash) {
  const DatabasePool::Job<std::optional<RegistrationRecord>> job =
      [hash = secret_hash](Connection& c) { return find_registration_by_secret(c, hash); };
  DatabasePool& pool = lookup_pool_ ? *lookup_pool_ : pool_;
  co_return co_await pool.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<ActiveRegistrationPage>> MariadbCallbackStore::active_registrations(
    std::int64_t after_id, std::size_t limit) {
  const DatabasePool::Job<ActiveRegistrationPage> job = [after_id, limit](Connection& c) {
    return active_registrations_after(c, after_id, limit);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<WriteOutcome>> MariadbCallbackStore::record(const CallbackWrite& write) {
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable),
                                          void(Result<WriteOutcome>)>(
      [this](auto handler, CallbackWrite w) {
        enqueue({std::move(w), completion_on_handler_executor<WriteOutcome>(std::move(handler))});
      },
      asio::use_awaitable, write);
}

asio::awaitable<Result<std::vector<std::int64_t>>> MariadbCallbackStore::record_heard(
    const std::vector<Heard>& heard) {
  // The job holds its own copy: it may outlive this frame when the process stops.
  const DatabasePool::Job<std::vector<std::int64_t>> job =
      [heard = std::make_shared<const std::vector<Heard>>(heard)](Connection& c) {
        return write_heard(c, *heard);
      };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

BatchStats MariadbCallbackStore::stats() const {
  std::lock_guard lock(mutex_);
  BatchStats s = stats_;
  s.waiting = waiting_.size();
  return s;
}

void MariadbCallbackStore::enqueue(Pending p) {
  std::unique_lock lock(mutex_);
  waiting_.push_back(std::move(p));
  writes_rate_.add(1);
  if (running_ < parallel_batches_ && !gathering_) start_batch_locked(lock);
}

void MariadbCallbackStore::take_locked(std::vector<Pending>& batch) {
  const std::size_t n = std::min(batch_max_ - std::min(batch_max_, batch.size()), waiting_.size());
  batch.reserve(batch.size() + n);
  for (std::size_t i = 0; i < n; ++i) {
    batch.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  stats_.largest_batch = std::max(stats_.largest_batch, batch.size());
}

// Group commit: while a batch is in its transaction, new writes wait and go together in the next
// one, so batches grow with load. At a low rate a new batch waits `window_` first, on the
// database thread, and takes along what came meanwhile. Under load it does not: batches fill by
// themselves, and the clients answered by one batch send the next at once, so a wait would only
// leave the database idle.
void MariadbCallbackStore::start_batch_locked(std::unique_lock<std::mutex>& lock) {
  if (waiting_.empty()) return;
  auto batch = std::make_shared<std::vector<Pending>>();
  take_locked(*batch);
  const bool gather = window_.count() > 0 && !gathering_ &&
                      writes_rate_.per_second() < kWindowBelowPerSecond &&
                      batch->size() < batch_max_;
  ++running_;
  gathering_ = gather;
  lock.unlock();

  // The batch's completion runs on the database thread itself: nothing waits on another
  // executor, so stopping the pool (then the io_context) leaves no completion in flight.
  auto started = std::make_shared<std::chrono::steady_clock::time_point>();
  pool_.run_then<std::vector<WriteOutcome>>(
      [this, batch, started, gather](Connection& conn) {
        if (gather) {
          std::this_thread::sleep_for(window_);
          std::unique_lock lock(mutex_);
          take_locked(*batch);
          gathering_ = false;
          // More than one batch came meanwhile: the rest start now, beside this one.
          if (running_ < parallel_batches_) start_batch_locked(lock);
        }
        *started = std::chrono::steady_clock::now();
        std::vector<CallbackWrite> writes;
        writes.reserve(batch->size());
        for (const auto& p : *batch) writes.push_back(p.write);
        return write_callback_batch(conn, writes, outbox_ ? &*outbox_ : nullptr);
      },
      [this, batch, started, gather](Result<std::vector<WriteOutcome>> result) {
        if (observer_) {
          const std::chrono::duration<double> took = std::chrono::steady_clock::now() - *started;
          observer_(batch->size(), took.count(), result.ok());
        }
        std::size_t stale = 0;
        for (std::size_t i = 0; i < batch->size(); ++i) {
          if (result) {
            if ((*result)[i] == WriteOutcome::stale) ++stale;
            (*batch)[i].done((*result)[i]);
          } else {
            (*batch)[i].done(result.error());
          }
        }
        if (!result)
          log::warn("ews.batch_failed",
                    {{"writes", batch->size()}, {"error", result.error().message}});
        std::unique_lock lock(mutex_);
        if (gather) gathering_ = false;  // the pool refused the job before its window
        ++stats_.batches;
        stats_.writes += batch->size();
        stats_.stale += stale;
        if (!result) ++stats_.failed_batches;
        --running_;
        if (!gathering_) {
          start_batch_locked(lock);  // else the batch waiting out its window takes them
        } else {
          lock.unlock();
        }
        idle_.notify_all();
      });
}

}  // namespace mp::store
