// SQL behind registrations.hpp.
#include "store/registrations.hpp"

#include "common/redact.hpp"

namespace mp::store {
namespace {

Value blob(const Bytes& b) {
  return Value{Blob{std::string(b.begin(), b.end())}};
}

constexpr std::string_view kSilentCondition =
    "r.state = 'active' AND COALESCE(r.last_heard_at, r.created_at) < "
    "UTC_TIMESTAMP(6) - INTERVAL (2 * r.status_frequency_minutes) MINUTE";

}  // namespace

Result<std::int64_t> insert_registration(Connection& conn, const NewRegistration& r) {
  if (auto st = conn.begin(); !st) return std::move(st).error();
  auto fail = [&](Error e) -> Result<std::int64_t> {
    if (!conn.broken()) (void)conn.rollback();
    return e;
  };
  // LAST_INSERT_ID(id) makes an existing row's id the insert id as well.
  auto mailbox = conn.prepare(
      "INSERT INTO mailboxes (customer_id, address_hmac) VALUES (?, ?) "
      "ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)");
  if (!mailbox) return fail(std::move(mailbox).error());
  const Value mailbox_params[] = {Value{r.customer_id}, blob(r.mailbox_hmac)};
  if (auto st = (*mailbox)->execute(mailbox_params); !st) return fail(std::move(st).error());
  const auto mailbox_id = static_cast<std::int64_t>((*mailbox)->last_insert_id());

  auto device = conn.prepare(
      "INSERT INTO devices (customer_id, environment, token_hex) VALUES (?, ?, ?) "
      "ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), state = 'active', unregistered_at = NULL, "
      "invalid_reason = NULL");
  if (!device) return fail(std::move(device).error());
  const Value device_params[] = {Value{r.customer_id}, Value{r.environment}, Value{r.token_hex}};
  if (auto st = (*device)->execute(device_params); !st) return fail(std::move(st).error());
  const auto device_id = static_cast<std::int64_t>((*device)->last_insert_id());

  auto reg = conn.prepare(
      "INSERT INTO registrations (customer_id, mailbox_id, device_id, secret_hash, "
      "status_frequency_minutes) VALUES (?, ?, ?, ?, ?) "
      "ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), secret_hash = VALUES(secret_hash), "
      "status_frequency_minutes = VALUES(status_frequency_minutes), state = 'active', "
      "subscription_id = NULL, watermark = NULL, last_heard_at = NULL, deleted_at = NULL");
  if (!reg) return fail(std::move(reg).error());
  const Value reg_params[] = {Value{r.customer_id}, Value{mailbox_id}, Value{device_id},
                              blob(r.secret_hash), Value{std::int64_t{r.status_frequency_minutes}}};
  if (auto st = (*reg)->execute(reg_params); !st) return fail(std::move(st).error());
  const auto id = static_cast<std::int64_t>((*reg)->last_insert_id());
  if (auto st = conn.commit(); !st) return fail(std::move(st).error());
  return id;
}

Result<bool> delete_registration(Connection& conn, std::int64_t registration_id) {
  auto n = conn.execute(
      "UPDATE registrations SET state = 'deleted', deleted_at = UTC_TIMESTAMP(6) "
      "WHERE id = ? AND state = 'active'",
      {Value{registration_id}});
  if (!n) return std::move(n).error();
  return *n > 0;
}

Result<std::int64_t> count_silent_subscriptions(Connection& conn) {
  auto rows =
      conn.query("SELECT COUNT(*) FROM registrations r WHERE " + std::string(kSilentCondition));
  if (!rows) return std::move(rows).error();
  return rows->empty() ? 0 : rows->front().i64(0);
}

Result<std::vector<SilentSubscription>> list_silent_subscriptions(Connection& conn,
                                                                  std::size_t limit) {
  auto rows = conn.query(
      "SELECT r.id, c.customer_id, d.token_hex, d.environment, "
      "COALESCE(DATE_FORMAT(r.last_heard_at, '%Y-%m-%dT%H:%i:%sZ'), ''), "
      "r.status_frequency_minutes, "
      "TIMESTAMPDIFF(SECOND, COALESCE(r.last_heard_at, r.created_at), UTC_TIMESTAMP(6)) "
      "FROM registrations r JOIN customers c ON c.id = r.customer_id "
      "JOIN devices d ON d.id = r.device_id WHERE " +
      std::string(kSilentCondition) + " ORDER BY COALESCE(r.last_heard_at, r.created_at) LIMIT " +
      std::to_string(limit));
  if (!rows) return std::move(rows).error();
  std::vector<SilentSubscription> out;
  for (const auto& r : *rows) {
    out.push_back({r.i64(0), r.text(1), redact(r.text(2)), r.text(3), r.text(4),
                   static_cast<int>(r.i64(5)), r.i64(6)});
  }
  return out;
}

}  // namespace mp::store
