// Graph registrations' reads and writes; two prepared statements of fixed text and one update.
#include "store/graph_store.hpp"

#include <boost/asio/use_awaitable.hpp>

#include "store/sql_util.hpp"

namespace mp::store {
namespace {

namespace asio = boost::asio;
using sql::blob;

// The row and what the badge mark needs to know (its device's and customer's states).
constexpr std::string_view kSelect =
    "SELECT r.id, c.customer_id, c.state = 'active', d.state = 'active', r.client_state_hash, "
    "COALESCE(r.graph_tenant, ''), COALESCE(r.subscription_id, ''), r.graph_baseline, "
    "r.graph_items, r.unread_count FROM registrations r JOIN customers c ON c.id = r.customer_id "
    "JOIN devices d ON d.id = r.device_id WHERE r.secret_hash = ? AND r.state = 'active' AND "
    "r.source = 'graph' AND c.state <> 'deleted'";

GraphRegistration from_row(const Row& row) {
  GraphRegistration g;
  g.id = row.i64(0);
  g.customer_public_id = row.text(1);
  g.customer_active = row.i64(2) != 0;
  g.device_active = row.i64(3) != 0;
  const std::string& hash = row.text(4);
  g.client_state_hash.assign(hash.begin(), hash.end());
  g.tenant = row.text(5);
  g.subscription_id = row.text(6);
  g.baseline = static_cast<std::uint32_t>(row.i64(7));
  g.items = row.text(8);
  g.unread_count = static_cast<std::uint32_t>(row.i64(9));
  return g;
}

Result<std::optional<GraphRegistration>> select_graph(Connection& conn, const Bytes& secret_hash,
                                                      bool lock) {
  auto stmt = conn.prepare(lock ? std::string(kSelect) + " FOR UPDATE" : std::string(kSelect));
  if (!stmt) return std::move(stmt).error();
  const Value params[] = {blob(secret_hash)};
  auto rows = (*stmt)->query(params);
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<GraphRegistration>{};
  return std::optional{from_row(rows->front())};
}

// One statement: the count, the unread set, the binding, the expiry, last heard, a wake and,
// when `mark`, the pending badge (as the EWS record statement sets it: a badge already waiting
// keeps its due time and age).
constexpr std::string_view kUpdate =
    "UPDATE registrations SET subscription_id = NULLIF(?, ''), graph_baseline = ?, "
    "graph_items = ?, unread_count = ?, graph_expires_at = COALESCE(FROM_UNIXTIME(?), "
    "graph_expires_at), last_heard_at = IF(?, UTC_TIMESTAMP(6), last_heard_at), "
    "wake_reason = COALESCE(NULLIF(?, ''), wake_reason), "
    "badge_version = badge_version + ?, badge_owner = IF(?, ?, badge_owner), "
    "badge_queued_at = IF(?, IFNULL(badge_queued_at, UTC_TIMESTAMP(6)), badge_queued_at), "
    "badge_due_at = IF(?, IFNULL(badge_due_at, UTC_TIMESTAMP(6)), badge_due_at) WHERE id = ?";

}  // namespace

Result<std::optional<GraphRegistration>> find_graph_registration(Connection& conn,
                                                                 const Bytes& secret_hash) {
  return select_graph(conn, secret_hash, false);
}

Result<std::optional<GraphRecorded>> record_graph(Connection& conn, const Bytes& secret_hash,
                                                  const GraphDecide& decide,
                                                  const std::string& owner) {
  return sql::in_transaction_retried<std::optional<GraphRecorded>>(
      conn, [&]() -> Result<std::optional<GraphRecorded>> {
        auto found = select_graph(conn, secret_hash, true);
        if (!found) return std::move(found).error();
        if (!*found) return std::optional<GraphRecorded>{};
        GraphRecorded out;
        out.before = std::move(**found);
        out.update = decide(out.before);
        if (!out.update.write) return std::optional{std::move(out)};
        out.marked = (out.update.count_moved || !out.update.wake_reason.empty()) &&
                     out.before.customer_active && out.before.device_active;
        auto stmt = conn.prepare(kUpdate);
        if (!stmt) return std::move(stmt).error();
        const std::int64_t mark = out.marked ? 1 : 0;
        const GraphUpdate& u = out.update;
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
                                Value{out.before.id}};
        if (auto n = (*stmt)->execute(params); !n) return std::move(n).error();
        return std::optional{std::move(out)};
      });
}

asio::awaitable<Result<std::optional<GraphRegistration>>> MariadbGraphStore::find(
    const Bytes& secret_hash) {
  const DatabasePool::Job<std::optional<GraphRegistration>> job = [secret_hash](Connection& conn) {
    return find_graph_registration(conn, secret_hash);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::optional<GraphRecorded>>> MariadbGraphStore::record(
    const Bytes& secret_hash, const GraphDecide& decide) {
  // The job holds copies: it may outlive this frame after a forced stop.
  const DatabasePool::Job<std::optional<GraphRecorded>> job = [secret_hash, decide,
                                                               owner = owner_](Connection& conn) {
    return record_graph(conn, secret_hash, decide, owner);
  };
  auto recorded = co_await pool_.async_run(job, asio::use_awaitable);
  if (recorded && *recorded && (*recorded)->marked && on_marked_) on_marked_();
  co_return recorded;
}

}  // namespace mp::store
