// SQL behind admin.hpp.
#include "store/admin.hpp"

#include <algorithm>

#include "store/callback_store.hpp"
#include "store/sql_util.hpp"

namespace mp::store {
namespace {

using sql::blob;
using sql::in_transaction;
using sql::json_string;

constexpr std::string_view kIso = "'%Y-%m-%dT%H:%i:%sZ'";

std::string iso(std::string_view column) {
  return "COALESCE(DATE_FORMAT(" + std::string(column) + ", " + std::string(kIso) + "), '')";
}

}  // namespace

Result<CustomerDetail> customer_detail(Connection& conn, const CustomerRow& customer) {
  const Value id{customer.id};
  auto rows = conn.query(
      "SELECT COALESCE(c.paused_reason, ''), "
      "(SELECT COUNT(*) FROM devices d WHERE d.customer_id = c.id AND d.state = 'active' AND "
      "d.environment = 'production'), "
      "(SELECT COUNT(*) FROM devices d WHERE d.customer_id = c.id AND d.state = 'active' AND "
      "d.environment = 'development'), "
      "(SELECT COUNT(*) FROM devices d WHERE d.customer_id = c.id AND d.state = 'unregistered'), "
      "(SELECT COUNT(*) FROM devices d WHERE d.customer_id = c.id AND d.state = 'invalid'), "
      "(SELECT COUNT(*) FROM mailboxes m WHERE m.customer_id = c.id), "
      "(SELECT COUNT(*) FROM registrations r WHERE r.customer_id = c.id AND r.state = 'active'), "
      "(SELECT COUNT(*) FROM registrations r WHERE r.customer_id = c.id AND " +
          std::string(sql::kSilentCondition) + "), " +
          iso("(SELECT MAX(r.last_heard_at) FROM registrations r WHERE r.customer_id = c.id)") +
          ", "
          "(SELECT COUNT(*) FROM registrations r WHERE r.customer_id = c.id AND r.badge_owner IS "
          "NOT NULL), "
          "(SELECT COUNT(*) FROM outbox o WHERE o.customer_id = c.id AND o.state = 'dead') "
          "FROM customers c WHERE c.id = ?",
      {id});
  if (!rows) return std::move(rows).error();
  if (rows->empty())
    return make_error(Errc::not_found, "customer " + customer.customer_id + " is gone");
  const Row& r = rows->front();
  CustomerDetail d;
  d.customer = customer;
  d.paused_reason = r.text(0);
  d.devices_active_production = r.i64(1);
  d.devices_active_development = r.i64(2);
  d.devices_unregistered = r.i64(3);
  d.devices_invalid = r.i64(4);
  d.mailboxes = r.i64(5);
  d.registrations_active = r.i64(6);
  d.registrations_silent = r.i64(7);
  d.last_callback_at = r.text(8);
  d.outbox_queued = r.i64(9);
  d.outbox_dead = r.i64(10);
  return d;
}

Result<std::vector<DeviceRow>> find_devices(Connection& conn, std::int64_t customer_row_id,
                                            std::string_view token_prefix, std::size_t limit) {
  if (token_prefix.size() < 4 || token_prefix.size() > 200 ||
      !std::all_of(token_prefix.begin(), token_prefix.end(),
                   [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
    return make_error(Errc::invalid_argument,
                      "a token prefix is 4 to 200 lowercase hex characters");
  }
  // The prefix is hex only, so it holds no LIKE wildcard.
  auto rows = conn.query(
      "SELECT d.id, d.environment, d.token_hex, d.state, COALESCE(d.invalid_reason, ''), " +
          iso("d.unregistered_at") + ", " + iso("d.created_at") + ", " + iso("d.updated_at") +
          ", (SELECT COUNT(*) FROM registrations r WHERE r.device_id = d.id AND r.state = "
          "'active'), "
          "(SELECT COUNT(*) FROM registrations r WHERE r.device_id = d.id AND r.badge_owner IS NOT "
          "NULL), "
          "(SELECT COUNT(*) FROM outbox o WHERE o.device_id = d.id AND o.state = 'dead'), "
          "COALESCE((SELECT r.badge_error FROM registrations r WHERE r.device_id = d.id AND "
          "r.badge_owner IS NOT NULL AND r.badge_error IS NOT NULL LIMIT 1), (SELECT o.last_error "
          "FROM outbox o WHERE o.device_id = d.id AND o.state = 'dead' ORDER BY o.id DESC LIMIT "
          "1), '') "
          "FROM devices d WHERE d.customer_id = ? AND d.token_hex LIKE ? ORDER BY d.id DESC "
          "LIMIT ?",
      {Value{customer_row_id}, Value{std::string(token_prefix) + "%"},
       Value{static_cast<std::int64_t>(std::max<std::size_t>(1, limit))}});
  if (!rows) return std::move(rows).error();
  std::vector<DeviceRow> out;
  for (const auto& r : *rows) {
    out.push_back({r.i64(0), r.text(1), r.text(2), r.text(3), r.text(4), r.text(5), r.text(6),
                   r.text(7), r.i64(8), r.i64(9), r.i64(10), r.text(11)});
  }
  return out;
}

Result<std::vector<MailboxRegistration>> registrations_of_mailbox(
    Connection& conn, const Bytes& address_hmac, std::optional<std::int64_t> customer_row_id) {
  std::vector<Value> params{blob(address_hmac)};
  std::string where = "m.address_hmac = ?";
  if (customer_row_id) {
    where += " AND m.customer_id = ?";
    params.emplace_back(*customer_row_id);
  }
  auto rows = conn.query(
      "SELECT r.id, c.customer_id, m.id, r.unread_count, r.folder_id IS NOT NULL, d.environment, "
      "d.token_hex, d.state, r.state, r.subscription_id IS NOT NULL, "
      "(SELECT COUNT(*) FROM superseded_subscriptions s WHERE s.registration_id = r.id), "
      "r.status_frequency_minutes, " +
          iso("r.last_heard_at") + ", r.state = 'active' AND r.silent_after < UTC_TIMESTAMP(6), " +
          iso("r.created_at") +
          " FROM mailboxes m JOIN customers c ON c.id = m.customer_id "
          "JOIN registrations r ON r.mailbox_id = m.id JOIN devices d ON d.id = r.device_id "
          "WHERE " +
          where + " ORDER BY r.state = 'active' DESC, r.id DESC LIMIT 1000",
      params);
  if (!rows) return std::move(rows).error();
  std::vector<MailboxRegistration> out;
  for (const auto& r : *rows) {
    MailboxRegistration m;
    m.registration_id = r.i64(0);
    m.customer_id = r.text(1);
    m.mailbox_id = r.i64(2);
    m.unread_count = r.i64(3);
    m.folder_stated = r.i64(4) != 0;
    m.device_environment = r.text(5);
    m.device_token_hex = r.text(6);
    m.device_state = r.text(7);
    m.state = r.text(8);
    m.bound = r.i64(9) != 0;
    m.superseded_ids = r.i64(10);
    m.status_frequency_minutes = r.i64(11);
    m.last_heard_at = r.text(12);
    m.silent = r.i64(13) != 0;
    m.created_at = r.text(14);
    out.push_back(std::move(m));
  }
  return out;
}

Result<OutboxBreakdown> outbox_breakdown(Connection& conn, std::chrono::seconds lease) {
  OutboxBreakdown b;
  // Queued: the registrations' pending badge marks; dead: the outbox's dead letters.
  auto totals = conn.query(
      "SELECT (SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL), "
      "(SELECT COUNT(*) FROM outbox WHERE state = 'dead'), "
      "(SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL AND badge_attempts > 0), "
      "COALESCE(TIMESTAMPDIFF(SECOND, (SELECT MIN(badge_queued_at) FROM registrations WHERE "
      "badge_owner IS NOT NULL), UTC_TIMESTAMP(6)), 0)");
  if (!totals) return std::move(totals).error();
  if (!totals->empty()) {
    const Row& r = totals->front();
    b.queued = r.i64(0);
    b.dead = r.i64(1);
    b.retrying = r.i64(2);
    b.oldest_queued_seconds = std::max<std::int64_t>(0, r.i64(3));
  }
  auto customers = conn.query(
      "SELECT c.customer_id, SUM(t.queued), SUM(1 - t.queued), "
      "COALESCE(TIMESTAMPDIFF(SECOND, MIN(t.queued_at), UTC_TIMESTAMP(6)), 0), "
      "COALESCE(c.paused_reason, '') FROM (SELECT customer_id, 1 AS queued, badge_queued_at AS "
      "queued_at FROM registrations WHERE badge_owner IS NOT NULL UNION ALL SELECT customer_id, "
      "0, NULL FROM outbox WHERE state = 'dead') t JOIN customers c ON c.id = t.customer_id "
      "GROUP BY t.customer_id ORDER BY COUNT(*) DESC LIMIT 50");
  if (!customers) return std::move(customers).error();
  for (const auto& r : *customers) {
    b.customers.push_back(
        {r.text(0), r.i64(1), r.i64(2), std::max<std::int64_t>(0, r.i64(3)), r.text(4)});
  }
  auto owners = conn.query(
      "SELECT r.badge_owner, COUNT(*), (SELECT COUNT(*) FROM instances i WHERE i.instance_id = "
      "r.badge_owner AND i.stopped_at IS NULL AND i.heartbeat_at >= UTC_TIMESTAMP(6) - INTERVAL "
      "? SECOND) FROM registrations r WHERE r.badge_owner IS NOT NULL GROUP BY r.badge_owner "
      "ORDER BY COUNT(*) DESC",
      {Value{static_cast<std::int64_t>(lease.count())}});
  if (!owners) return std::move(owners).error();
  for (const auto& r : *owners) b.owners.push_back({r.text(0), r.i64(1), r.i64(2) > 0});
  auto reasons = conn.query(
      "SELECT COALESCE(last_error, ''), COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY "
      "last_error ORDER BY COUNT(*) DESC LIMIT 50");
  if (!reasons) return std::move(reasons).error();
  for (const auto& r : *reasons) b.dead_reasons.push_back({r.text(0), r.i64(1)});
  return b;
}

Result<RetryDeadResult> retry_dead_letters(Connection& conn, const RetryDeadFilter& filter,
                                           const Actor& actor) {
  std::string where = "o.state = 'dead'";
  std::vector<Value> params;
  if (filter.customer_row_id) {
    where += " AND o.customer_id = ?";
    params.emplace_back(*filter.customer_row_id);
  }
  if (filter.reason) {
    where += " AND o.last_error = ?";
    params.emplace_back(*filter.reason);
  }
  params.emplace_back(static_cast<std::int64_t>(std::clamp<std::size_t>(filter.limit, 1, 100000)));
  return in_transaction<RetryDeadResult>(conn, [&]() -> Result<RetryDeadResult> {
    // The ids first (locked), so the count, the update and the audit row agree.
    auto ids = conn.query(
        "SELECT o.id, d.state = 'active' AND c.state = 'active' FROM outbox o JOIN devices d ON "
        "d.id = o.device_id JOIN customers c ON c.id = o.customer_id WHERE " +
            where + " ORDER BY o.id LIMIT ? FOR UPDATE",
        params);
    if (!ids) return std::move(ids).error();
    RetryDeadResult result;
    std::vector<std::int64_t> requeue;
    for (const auto& r : *ids) {
      if (r.i64(1) == 0) {
        ++result.left_dead;
        continue;
      }
      requeue.push_back(r.i64(0));
    }
    auto st = sql::for_each_id_chunk(
        requeue, [&](std::string_view placeholders, std::span<const Value> chunk) -> Status {
          // The device's active registrations get a pending badge, owned as the dead letter was.
          auto marked = conn.execute(
              "UPDATE registrations r JOIN outbox o ON o.device_id = r.device_id SET "
              "r.badge_version = r.badge_version + 1, r.badge_owner = COALESCE(r.badge_owner, "
              "o.owner), r.badge_queued_at = COALESCE(r.badge_queued_at, UTC_TIMESTAMP(6)), "
              "r.badge_due_at = UTC_TIMESTAMP(6), r.badge_attempts = 0, r.badge_error = NULL "
              "WHERE r.state = 'active' AND o.state = 'dead' AND o.id IN (" +
                  std::string(placeholders) + ")",
              chunk);
          if (!marked) return std::move(marked).error();
          auto n = conn.execute("DELETE FROM outbox WHERE state = 'dead' AND id IN (" +
                                    std::string(placeholders) + ")",
                                chunk);
          if (!n) return std::move(n).error();
          result.requeued += *n;
          return {};
        });
    if (!st) return std::move(st).error();
    std::string detail = "{\"requeued\":" + std::to_string(result.requeued) +
                         ",\"left_dead\":" + std::to_string(result.left_dead);
    if (filter.reason) detail += ",\"reason\":" + json_string(*filter.reason);
    detail += "}";
    if (auto a = write_audit(conn, actor, "outbox.retry_dead", filter.customer_row_id, detail); !a)
      return std::move(a).error();
    return result;
  });
}

Result<std::vector<BadTokenDevice>> devices_with_malformed_tokens(
    Connection& conn, std::size_t limit, std::optional<std::int64_t> customer_row_id) {
  // What the registration API stores is even-length lowercase hex; anything else came in some
  // other way (an import, a hand edit, an older version) and APNs answers it BadDeviceToken.
  std::vector<Value> params;
  std::string where;
  if (customer_row_id) {
    where = " AND d.customer_id = ?";
    params.emplace_back(*customer_row_id);
  }
  params.emplace_back(static_cast<std::int64_t>(std::max<std::size_t>(1, limit)));
  auto rows = conn.query(
      "SELECT d.id, c.customer_id, d.environment, d.token_hex FROM devices d JOIN customers c ON "
      "c.id = d.customer_id WHERE d.state = 'active' AND c.state <> 'deleted' AND (d.token_hex = "
      "'' OR d.token_hex NOT REGEXP '^([0-9a-f][0-9a-f])+$')" +
          where + " ORDER BY d.id LIMIT ?",
      params);
  if (!rows) return std::move(rows).error();
  std::vector<BadTokenDevice> out;
  for (const auto& r : *rows) out.push_back({r.i64(0), r.text(1), r.text(2), r.text(3)});
  return out;
}

Result<SubscriptionCounts> subscription_counts(Connection& conn,
                                               std::optional<std::int64_t> customer_row_id) {
  std::vector<Value> params;
  std::string where;
  if (customer_row_id) {
    where = " AND r.customer_id = ?";
    params.emplace_back(*customer_row_id);
  }
  auto active =
      conn.query("SELECT COUNT(*) FROM registrations r WHERE r.state = 'active'" + where, params);
  if (!active) return std::move(active).error();
  auto silent = conn.query(
      "SELECT COUNT(*) FROM registrations r WHERE " + std::string(sql::kSilentCondition) + where,
      params);
  if (!silent) return std::move(silent).error();
  SubscriptionCounts counts;
  counts.active = active->empty() ? 0 : active->front().i64(0);
  counts.silent = silent->empty() ? 0 : silent->front().i64(0);
  return counts;
}

Result<std::vector<EnvironmentMismatch>> environment_mismatches(Connection& conn) {
  auto rows = conn.query(
      "SELECT c.customer_id, d.environment, COALESCE((SELECT k.environments FROM credentials k "
      "WHERE k.customer_id = c.id AND k.state = 'active' ORDER BY k.id DESC LIMIT 1), ''), "
      "COUNT(*) FROM devices d JOIN customers c ON c.id = d.customer_id WHERE d.state = 'active' "
      "AND c.state = 'active' AND NOT EXISTS (SELECT 1 FROM credentials k WHERE k.customer_id = "
      "c.id AND k.state = 'active' AND FIND_IN_SET(d.environment, k.environments) > 0) GROUP BY "
      "c.id, d.environment ORDER BY COUNT(*) DESC LIMIT 100");
  if (!rows) return std::move(rows).error();
  std::vector<EnvironmentMismatch> out;
  for (const auto& r : *rows) out.push_back({r.text(0), r.text(1), r.text(2), r.i64(3)});
  return out;
}

Result<std::vector<RefusedTokens>> refused_tokens(Connection& conn) {
  auto rows = conn.query(
      "SELECT c.customer_id, d.environment, d.invalid_reason, COUNT(*) FROM devices d JOIN "
      "customers c ON c.id = d.customer_id WHERE d.state = 'invalid' AND c.state = 'active' AND "
      "d.invalid_reason IN ('BadDeviceToken', 'DeviceTokenNotForTopic') GROUP BY c.id, "
      "d.environment, d.invalid_reason ORDER BY COUNT(*) DESC LIMIT 100");
  if (!rows) return std::move(rows).error();
  std::vector<RefusedTokens> out;
  for (const auto& r : *rows) out.push_back({r.text(0), r.text(1), r.text(2), r.i64(3)});
  return out;
}

}  // namespace mp::store
