// SQL behind customers.hpp.
#include "store/customers.hpp"

#include <algorithm>

#include "store/sql_util.hpp"

namespace mp::store {

namespace {

using sql::blob;
using sql::in_transaction;
using sql::json_string;

std::string environments_value(bool development, bool production) {
  if (development && production) return "development,production";
  return development ? "development" : "production";
}

constexpr std::string_view kCustomerColumns =
    "c.id, c.customer_id, c.display_name, c.app_id, c.state, "
    "DATE_FORMAT(c.created_at, '%Y-%m-%dT%H:%i:%sZ')";

CustomerRow customer_from(const Row& r) {
  CustomerRow c;
  c.id = r.i64(0);
  c.customer_id = r.text(1);
  c.display_name = r.text(2);
  c.app_id = r.text(3);
  c.state = r.text(4);
  c.created_at = r.text(5);
  return c;
}

Result<std::optional<CustomerRow>> one_customer(Result<std::vector<Row>> rows) {
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<CustomerRow>{};
  return std::optional<CustomerRow>{customer_from(rows->front())};
}

// Columns of credential rows, then optionally the sealed material (three more).
constexpr std::string_view kCredentialColumns =
    "k.id, k.customer_id, c.customer_id, k.topic, FIND_IN_SET('development', k.environments) > 0, "
    "FIND_IN_SET('production', k.environments) > 0, k.state, LOWER(HEX(k.fingerprint_sha256)), "
    "k.serial_hex, k.issuer, DATE_FORMAT(k.not_before, '%Y-%m-%dT%H:%i:%sZ'), "
    "DATE_FORMAT(k.not_after, '%Y-%m-%dT%H:%i:%sZ'), "
    "TIMESTAMPDIFF(SECOND, UTC_TIMESTAMP(), k.not_after), k.expiry_warned_days, "
    "COALESCE(DATE_FORMAT(k.activated_at, '%Y-%m-%dT%H:%i:%sZ'), ''), "
    "COALESCE(DATE_FORMAT(k.last_success_at, '%Y-%m-%dT%H:%i:%sZ'), ''), "
    "COALESCE(DATE_FORMAT(k.last_failure_at, '%Y-%m-%dT%H:%i:%sZ'), ''), "
    "COALESCE(k.last_failure_reason, '')";

CredentialRow credential_from(const Row& r, bool sealed) {
  CredentialRow k;
  k.id = r.i64(0);
  k.customer_row_id = r.i64(1);
  k.customer_id = r.text(2);
  k.topic = r.text(3);
  k.development = r.i64(4) != 0;
  k.production = r.i64(5) != 0;
  k.state = r.text(6);
  k.fingerprint_hex = r.text(7);
  k.serial_hex = r.text(8);
  k.issuer = r.text(9);
  k.not_before = r.text(10);
  k.not_after = r.text(11);
  k.seconds_left = r.i64(12);
  if (auto d = r.opt_i64(13)) k.expiry_warned_days = static_cast<int>(*d);
  k.activated_at = r.text(14);
  k.last_success_at = r.text(15);
  k.last_failure_at = r.text(16);
  k.last_failure_reason = r.text(17);
  if (sealed) {
    k.kek_id = r.text(18);
    k.wrapped_data_key = r.text(19);
    k.sealed_material = r.text(20);
  }
  return k;
}

Result<std::vector<CredentialRow>> credentials_where(Connection& conn, std::string_view where,
                                                     std::span<const Value> params, bool sealed) {
  std::string sql = "SELECT ";
  sql += kCredentialColumns;
  if (sealed) sql += ", k.kek_id, k.wrapped_data_key, k.sealed_material";
  sql += " FROM credentials k JOIN customers c ON c.id = k.customer_id WHERE ";
  sql += where;
  auto rows = conn.query(sql, params);
  if (!rows) return std::move(rows).error();
  std::vector<CredentialRow> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) out.push_back(credential_from(r, sealed));
  return out;
}

Result<std::int64_t> insert_credential(Connection& conn, std::int64_t customer_row_id,
                                       const NewCredential& k) {
  auto st = conn.prepare(
      "INSERT INTO credentials (customer_id, topic, environments, subject, issuer, serial_hex, "
      "fingerprint_sha256, not_before, not_after, kek_id, wrapped_data_key, sealed_material, "
      "state, activated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', "
      "UTC_TIMESTAMP(6))");
  if (!st) return std::move(st).error();
  const Value params[] = {Value{customer_row_id},
                          Value{k.topic},
                          Value{environments_value(k.development, k.production)},
                          Value{k.subject},
                          Value{k.issuer},
                          Value{k.serial_hex},
                          blob(k.fingerprint_sha256),
                          Value{k.not_before},
                          Value{k.not_after},
                          Value{k.kek_id},
                          Value{Blob{k.wrapped_data_key}},
                          Value{Blob{k.sealed_material}}};
  if (auto n = (*st)->execute(params); !n) return std::move(n).error();
  return static_cast<std::int64_t>((*st)->last_insert_id());
}

std::string credential_detail(const NewCredential& k) {
  return "{\"topic\":" + json_string(k.topic) +
         ",\"environments\":" + json_string(environments_value(k.development, k.production)) +
         ",\"not_after\":" + json_string(k.not_after) +
         ",\"fingerprint\":" + json_string(hex_encode(k.fingerprint_sha256)) + "}";
}

}  // namespace

Status write_audit(Connection& conn, const Actor& actor, std::string_view action,
                   std::optional<std::int64_t> customer_id, std::string_view detail) {
  auto n = conn.execute(
      "INSERT INTO audit_log (actor, action, customer_id, source_address, detail) "
      "VALUES (?, ?, ?, NULLIF(?, ''), ?)",
      {Value{actor.name}, Value{std::string(action)},
       customer_id ? Value{*customer_id} : Value{Null{}}, Value{actor.source_address},
       Value{std::string(detail)}});
  if (!n) return std::move(n).error();
  return {};
}

Result<std::vector<AuditRow>> tail_audit(Connection& conn, std::size_t limit) {
  auto rows = conn.query(
      "SELECT a.id, DATE_FORMAT(a.at, '%Y-%m-%dT%H:%i:%s.%fZ'), a.actor, a.action, "
      "COALESCE(c.customer_id, ''), COALESCE(a.source_address, ''), COALESCE(a.detail, '') "
      "FROM audit_log a LEFT JOIN customers c ON c.id = a.customer_id "
      "ORDER BY a.id DESC LIMIT ?",
      {Value{static_cast<std::int64_t>(std::min<std::size_t>(limit, 100000))}});
  if (!rows) return std::move(rows).error();
  std::vector<AuditRow> out;
  for (const auto& r : *rows) {
    out.push_back({r.i64(0), r.text(1), r.text(2), r.text(3), r.text(4), r.text(5), r.text(6)});
  }
  return out;
}

Result<std::int64_t> create_invite(Connection& conn, const Bytes& code_hash,
                                   std::chrono::seconds valid_for, const Actor& actor,
                                   std::string_view note) {
  return in_transaction<std::int64_t>(conn, [&]() -> Result<std::int64_t> {
    auto st = conn.prepare(
        "INSERT INTO portal_invites (code_hash, created_by, note, expires_at) "
        "VALUES (?, ?, ?, UTC_TIMESTAMP(6) + INTERVAL ? SECOND)");
    if (!st) return std::move(st).error();
    const Value params[] = {blob(code_hash), Value{actor.name}, Value{std::string(note)},
                            Value{static_cast<std::int64_t>(valid_for.count())}};
    if (auto n = (*st)->execute(params); !n) return std::move(n).error();
    const auto id = static_cast<std::int64_t>((*st)->last_insert_id());
    const std::string detail = "{\"invite\":" + std::to_string(id) +
                               ",\"valid_for_s\":" + std::to_string(valid_for.count()) + "}";
    if (auto a = write_audit(conn, actor, "invite.create", std::nullopt, detail); !a)
      return std::move(a).error();
    return id;
  });
}

Result<bool> invite_usable(Connection& conn, const Bytes& code_hash) {
  auto rows = conn.query(
      "SELECT 1 FROM portal_invites WHERE code_hash = ? AND used_at IS NULL "
      "AND expires_at > UTC_TIMESTAMP(6)",
      {blob(code_hash)});
  if (!rows) return std::move(rows).error();
  return !rows->empty();
}

Result<CreatedCustomer> create_customer(Connection& conn, const NewCustomer& customer,
                                        const NewCredential& credential, const Actor& actor) {
  return in_transaction<CreatedCustomer>(conn, [&]() -> Result<CreatedCustomer> {
    std::optional<std::int64_t> invite_id;
    if (customer.invite_code_hash) {
      // A locking read: two uploads with one code cannot both see it unused.
      auto rows = conn.query(
          "SELECT id FROM portal_invites WHERE code_hash = ? AND used_at IS NULL "
          "AND expires_at > UTC_TIMESTAMP(6) FOR UPDATE",
          {blob(*customer.invite_code_hash)});
      if (!rows) return std::move(rows).error();
      if (rows->empty()) {
        return make_error(Errc::not_found,
                          "the invite code is not valid: it is unknown, used or expired; ask "
                          "your relay operator for a new one");
      }
      invite_id = rows->front().i64(0);
    }
    auto ins = conn.prepare(
        "INSERT INTO customers (customer_id, display_name, app_id, registration_key_hash, "
        "admin_key_hash) VALUES (?, ?, ?, ?, ?)");
    if (!ins) return std::move(ins).error();
    const Value params[] = {Value{customer.customer_id}, Value{customer.display_name},
                            Value{customer.app_id}, blob(customer.registration_key_hash),
                            blob(customer.admin_key_hash)};
    if (auto n = (*ins)->execute(params); !n) return std::move(n).error();
    CreatedCustomer out;
    out.id = static_cast<std::int64_t>((*ins)->last_insert_id());
    auto cred = insert_credential(conn, out.id, credential);
    if (!cred) return std::move(cred).error();
    out.credential_id = *cred;
    if (invite_id) {
      auto used = conn.execute(
          "UPDATE portal_invites SET used_at = UTC_TIMESTAMP(6), customer_id = ? WHERE id = ?",
          {Value{out.id}, Value{*invite_id}});
      if (!used) return std::move(used).error();
    }
    const std::string detail = "{\"customer\":" + json_string(customer.customer_id) +
                               ",\"app_id\":" + json_string(customer.app_id) +
                               ",\"credential\":" + credential_detail(credential) +
                               (invite_id ? ",\"invite\":" + std::to_string(*invite_id) : "") + "}";
    if (auto a = write_audit(conn, actor, "customer.create", out.id, detail); !a)
      return std::move(a).error();
    return out;
  });
}

Result<std::optional<CustomerRow>> find_customer(Connection& conn, std::string_view customer_id) {
  return one_customer(conn.query(std::string("SELECT ") + std::string(kCustomerColumns) +
                                     " FROM customers c WHERE c.customer_id = ?",
                                 {Value{std::string(customer_id)}}));
}

Result<std::optional<CustomerRow>> find_customer_by_admin_key(Connection& conn,
                                                              const Bytes& admin_key_hash) {
  return one_customer(conn.query(std::string("SELECT ") + std::string(kCustomerColumns) +
                                     " FROM customers c WHERE c.admin_key_hash = ?",
                                 {blob(admin_key_hash)}));
}

Result<std::vector<CustomerRow>> list_customers(Connection& conn) {
  auto rows = conn.query(std::string("SELECT ") + std::string(kCustomerColumns) +
                         " FROM customers c ORDER BY c.id");
  if (!rows) return std::move(rows).error();
  std::vector<CustomerRow> out;
  for (const auto& r : *rows) out.push_back(customer_from(r));
  return out;
}

Result<std::vector<CredentialRow>> customer_credentials(Connection& conn,
                                                        std::int64_t customer_row_id) {
  const Value params[] = {Value{customer_row_id}};
  return credentials_where(conn, "k.customer_id = ? ORDER BY k.id DESC", params, false);
}

Result<std::vector<CredentialRow>> list_credentials(Connection& conn,
                                                    std::optional<std::int64_t> within_seconds) {
  std::vector<Value> params;
  std::string where = "c.state <> 'deleted' AND k.state IN ('active', 'expired')";
  if (within_seconds) {
    where += " AND k.not_after < UTC_TIMESTAMP() + INTERVAL ? SECOND";
    params.emplace_back(*within_seconds);
  }
  where += " ORDER BY k.not_after, k.id";
  return credentials_where(conn, where, params, false);
}

Result<std::vector<CredentialRow>> active_credentials_sealed(Connection& conn) {
  return credentials_where(conn, "c.state = 'active' AND k.state = 'active' ORDER BY k.id", {},
                           true);
}

Result<std::int64_t> replace_credential(Connection& conn, std::int64_t customer_row_id,
                                        const NewCredential& credential, const Actor& actor) {
  return in_transaction<std::int64_t>(conn, [&]() -> Result<std::int64_t> {
    // Serialises renewals of one customer: the customer row is the lock.
    auto lock =
        conn.query("SELECT state FROM customers WHERE id = ? FOR UPDATE", {Value{customer_row_id}});
    if (!lock) return std::move(lock).error();
    if (lock->empty() || lock->front().text(0) == "deleted")
      return make_error(Errc::not_found, "the customer does not exist");
    auto retired = conn.execute(
        "UPDATE credentials SET state = 'retired', retired_at = UTC_TIMESTAMP(6) "
        "WHERE customer_id = ? AND state IN ('active', 'expired')",
        {Value{customer_row_id}});
    if (!retired) return std::move(retired).error();
    auto id = insert_credential(conn, customer_row_id, credential);
    if (!id) return id;
    const std::string detail = "{\"credential\":" + credential_detail(credential) +
                               ",\"retired\":" + std::to_string(*retired) + "}";
    if (auto a = write_audit(conn, actor, "credential.renew", customer_row_id, detail); !a)
      return std::move(a).error();
    return id;
  });
}

Result<bool> set_customer_state(Connection& conn, std::int64_t customer_row_id,
                                std::string_view state, const Actor& actor) {
  if (state != "active" && state != "disabled" && state != "deleted")
    return make_error(Errc::invalid_argument, "customer state must be active, disabled or deleted");
  return in_transaction<bool>(conn, [&]() -> Result<bool> {
    auto n = conn.execute(
        "UPDATE customers SET state = ? WHERE id = ? AND state <> 'deleted' AND state <> ?",
        {Value{std::string(state)}, Value{customer_row_id}, Value{std::string(state)}});
    if (!n) return std::move(n).error();
    if (*n == 0) return false;
    const std::string detail = "{\"state\":" + json_string(state) + "}";
    if (auto a = write_audit(conn, actor, "customer.state", customer_row_id, detail); !a)
      return std::move(a).error();
    return true;
  });
}

Result<bool> claim_expiry_warning(Connection& conn, std::int64_t credential_id,
                                  int threshold_days) {
  auto n = conn.execute(
      "UPDATE credentials SET expiry_warned_days = ? WHERE id = ? AND "
      "(expiry_warned_days IS NULL OR expiry_warned_days > ?)",
      {Value{std::int64_t{threshold_days}}, Value{credential_id},
       Value{std::int64_t{threshold_days}}});
  if (!n) return std::move(n).error();
  return *n > 0;
}

Result<bool> mark_credential_expired(Connection& conn, std::int64_t credential_id) {
  auto n = conn.execute(
      "UPDATE credentials SET state = 'expired' WHERE id = ? AND state = 'active' AND "
      "not_after <= UTC_TIMESTAMP()",
      {Value{credential_id}});
  if (!n) return std::move(n).error();
  return *n > 0;
}

Result<std::vector<WrappedKey>> all_wrapped_keys(Connection& conn) {
  auto rows = conn.query("SELECT id, kek_id, wrapped_data_key FROM credentials ORDER BY id");
  if (!rows) return std::move(rows).error();
  std::vector<WrappedKey> out;
  for (const auto& r : *rows) out.push_back({r.i64(0), r.text(1), r.text(2)});
  return out;
}

Result<bool> update_wrapped_key(Connection& conn, std::int64_t credential_id,
                                std::string_view old_kek_id, const WrappedKey& now) {
  auto n = conn.execute(
      "UPDATE credentials SET kek_id = ?, wrapped_data_key = ? WHERE id = ? AND kek_id = ?",
      {Value{now.kek_id}, Value{Blob{now.wrapped_data_key}}, Value{credential_id},
       Value{std::string(old_kek_id)}});
  if (!n) return std::move(n).error();
  return *n > 0;
}

}  // namespace mp::store
