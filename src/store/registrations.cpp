// SQL behind registrations.hpp.
#include "store/registrations.hpp"

#include <nlohmann/json.hpp>

#include "common/redact.hpp"
#include "store/sql_util.hpp"

namespace mp::store {
namespace {

using sql::blob;
using sql::in_transaction_retried;
using sql::kSilentCondition;

Bytes bytes_of(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

// The mailbox row of (customer, HMAC), created when missing.
Result<std::int64_t> ensure_mailbox(Connection& conn, std::int64_t customer_id,
                                    const Bytes& address_hmac) {
  auto found = conn.query("SELECT id FROM mailboxes WHERE customer_id = ? AND address_hmac = ?",
                          {Value{customer_id}, blob(address_hmac)});
  if (!found) return std::move(found).error();
  if (!found->empty()) return found->front().i64(0);
  // LAST_INSERT_ID(id) makes a row inserted meanwhile by another request the insert id as well.
  auto insert = conn.prepare(
      "INSERT INTO mailboxes (customer_id, address_hmac) VALUES (?, ?) "
      "ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)");
  if (!insert) return std::move(insert).error();
  const Value params[] = {Value{customer_id}, blob(address_hmac)};
  if (auto st = (*insert)->execute(params); !st) return std::move(st).error();
  return static_cast<std::int64_t>((*insert)->last_insert_id());
}

enum class DeviceRefusal { none, invalid, unregistered };

struct DeviceState {
  std::int64_t id = 0;
  DeviceRefusal refused = DeviceRefusal::none;
  bool reactivated = false;
  std::string note;
};

// The device row of (customer, environment, token): created when missing, made active again
// when APNs' unregistered time has passed, refused when invalid or unregistered after now.
Result<DeviceState> ensure_device(Connection& conn, std::int64_t customer_id,
                                  const std::string& environment, const std::string& token_hex) {
  // After an insert that met a row committed meanwhile, only a locking read sees that row.
  const auto select = [&](bool locking) {
    return conn.query(
        std::string("SELECT id, state, COALESCE(invalid_reason, ''), "
                    "COALESCE(DATE_FORMAT(unregistered_at, '%Y-%m-%dT%H:%i:%sZ'), ''), "
                    "unregistered_at IS NULL OR unregistered_at < UTC_TIMESTAMP(6) "
                    "FROM devices WHERE customer_id = ? AND environment = ? AND token_hex = ?") +
            (locking ? " FOR UPDATE" : ""),
        {Value{customer_id}, Value{environment}, Value{token_hex}});
  };
  auto found = select(false);
  if (!found) return std::move(found).error();
  if (found->empty()) {
    auto insert = conn.prepare(
        "INSERT INTO devices (customer_id, environment, token_hex) VALUES (?, ?, ?) "
        "ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id)");
    if (!insert) return std::move(insert).error();
    const Value params[] = {Value{customer_id}, Value{environment}, Value{token_hex}};
    if (auto st = (*insert)->execute(params); !st) return std::move(st).error();
    found = select(true);  // a row inserted meanwhile may be in any state
    if (!found) return std::move(found).error();
    if (found->empty()) return make_error(Errc::internal, "device row missing after insert");
  }
  const Row& row = found->front();
  DeviceState d;
  d.id = row.i64(0);
  const std::string& state = row.text(1);
  if (state == "invalid") {
    d.refused = DeviceRefusal::invalid;
    d.note = row.text(2).empty() ? "BadDeviceToken" : row.text(2);
    return d;
  }
  if (state == "unregistered") {
    if (row.i64(4) == 0) {
      d.refused = DeviceRefusal::unregistered;
      d.note = row.text(3);
      return d;
    }
    // Conditional, so a newer Unregistered report written meanwhile is not overwritten.
    auto revived = conn.execute(
        "UPDATE devices SET state = 'active', unregistered_at = NULL "
        "WHERE id = ? AND state = 'unregistered' "
        "AND (unregistered_at IS NULL OR unregistered_at < UTC_TIMESTAMP(6))",
        {Value{d.id}});
    if (!revived) return std::move(revived).error();
    if (*revived == 0) return make_error(Errc::busy, "device changed while registering");
    d.reactivated = true;
  }
  return d;
}

Status audit(Connection& conn, const Actor& actor, std::string_view action,
             std::int64_t customer_id, nlohmann::json detail) {
  return write_audit(conn, actor, action, customer_id, detail.dump());
}

}  // namespace

Result<std::optional<RegistrationCustomer>> find_customer_by_registration_key(
    Connection& conn, std::string_view customer_id, const Bytes& registration_key_hash) {
  auto rows = conn.query(
      "SELECT id, customer_id, state, registration_key_hash FROM customers WHERE customer_id = ?",
      {Value{std::string(customer_id)}});
  if (!rows) return std::move(rows).error();
  if (rows->empty()) return std::optional<RegistrationCustomer>{};
  const Row& row = rows->front();
  const Bytes stored = bytes_of(row.text(3));
  if (!constant_time_equal(stored, registration_key_hash)) {
    return std::optional<RegistrationCustomer>{};
  }
  return std::optional<RegistrationCustomer>{
      RegistrationCustomer{row.i64(0), row.text(1), row.text(2)}};
}

// ---------------------------------------------------------------- capabilities

const char* capability_change_name(CapabilityChange change) noexcept {
  switch (change) {
    case CapabilityChange::created:
      return "created";
    case CapabilityChange::unchanged:
      return "unchanged";
    case CapabilityChange::replaced:
      return "replaced";
    case CapabilityChange::device_invalid:
      return "device_invalid";
    case CapabilityChange::device_unregistered:
      return "device_unregistered";
    case CapabilityChange::quota_device:
      return "quota_device";
    case CapabilityChange::quota_customer:
      return "quota_customer";
    case CapabilityChange::limited:
      return "limited";
  }
  return "unchanged";
}

namespace {

// Whether the customer may have one more active registration (max 0: no quota), counted on
// ix_registrations_customer_state. register_with_capability holds the customer's row locked
// from its first statement, before any consistent read: the count sees every registration
// committed before, so two registrations at once cannot both take the last place.
Result<bool> customer_has_room(Connection& conn, std::int64_t customer_id, std::uint64_t max) {
  if (max == 0) return true;
  auto count =
      conn.query("SELECT COUNT(*) FROM registrations WHERE customer_id = ? AND state = 'active'",
                 {Value{customer_id}});
  if (!count) return std::move(count).error();
  return count->empty() || static_cast<std::uint64_t>(count->front().i64(0)) < max;
}

Value optional_text(const std::optional<std::string>& text) {
  return text ? Value{*text} : Value{Null{}};
}

// The clientState hash of a Graph registration; NULL for EWS.
Value graph_hash_of(const CapabilityRegistration& r) {
  return r.source == "graph" ? blob(r.client_state_hash) : Value{Null{}};
}

// The pair's row with a new capability and a fresh state: active (a deleted row used again), no
// subscription bound, none superseded, nothing heard. Its old capability ends with it.
// `fresh_counts`: the row was deleted, so its badge state starts again (a replaced row keeps the
// device's count of that mailbox).
Status rekey(Connection& conn, std::int64_t id, const CapabilityRegistration& r,
             const Value& folder, bool fresh_counts) {
  // A Graph registration's count starts from what the app stated (else from the count the row
  // holds: a replaced row keeps the device's count of the mailbox), with an empty unread set.
  const Value stated = r.unread ? Value{std::int64_t{*r.unread}} : Value{Null{}};
  const Value fresh{std::int64_t{fresh_counts}};
  auto updated = conn.execute(
      "UPDATE registrations SET state = 'active', deleted_at = NULL, secret_hash = ?, "
      "secret_tagged = 1, secret_generation = secret_generation + 1, subscription_id = NULL, "
      "superseded_subscription = NULL, watermark = NULL, last_heard_at = NULL, "
      "status_frequency_minutes = ?, folder_id = ?, "
      "graph_baseline = COALESCE(?, IF(?, 0, unread_count)), graph_items = '', "
      "unread_count = COALESCE(?, IF(?, 0, unread_count)), "
      "recent_items = IF(?, '', recent_items), source = ?, client_state_hash = ?, "
      "graph_tenant = ?, graph_user = ?, graph_expires_at = NULL WHERE id = ?",
      {blob(r.new_hash), Value{std::int64_t{r.status_frequency_minutes}}, folder, stated, fresh,
       stated, fresh, fresh, Value{r.source}, graph_hash_of(r), optional_text(r.graph_tenant),
       optional_text(r.graph_user), Value{id}});
  if (!updated) return std::move(updated).error();
  auto history =
      conn.execute("DELETE FROM superseded_subscriptions WHERE registration_id = ?", {Value{id}});
  if (!history) return std::move(history).error();
  return {};
}

// A registration row gone for good (the pair's unique key must be free for another row).
Status erase_registration_row(Connection& conn, std::int64_t id) {
  for (std::string_view sql : {"DELETE FROM superseded_subscriptions WHERE registration_id = ?",
                               "DELETE FROM registrations WHERE id = ?"}) {
    auto n = conn.execute(sql, {Value{id}});
    if (!n) return std::move(n).error();
  }
  return {};
}

}  // namespace

namespace {

// Ends a registration with `change` and nothing kept (not even a new mailbox row); the COMMIT
// that follows is a no-op.
Result<CapabilityResult> refuse_registration(Connection& conn, CapabilityResult out,
                                             CapabilityChange change) {
  out.change = change;
  if (auto st = conn.rollback(); !st) return std::move(st).error();
  return out;
}

Value folder_of(const CapabilityRegistration& r) {
  return r.folder_id ? Value{*r.folder_id} : Value{Null{}};
}

// What the audit rows of a registration say about its device.
nlohmann::json audit_detail(const CapabilityRegistration& r, bool device_reactivated) {
  nlohmann::json detail = {{"environment", r.environment}, {"device", redact(r.token_hex)}};
  if (device_reactivated) detail["device_reactivated"] = true;
  return detail;
}

// The app refreshing its own registration: settings may change, the URL does not.
Result<CapabilityResult> refresh_settings(Connection& conn, const CapabilityRegistration& r,
                                          const Actor& actor, CapabilityResult out) {
  auto updated = conn.execute(
      "UPDATE registrations SET status_frequency_minutes = ?, folder_id = ?, "
      "client_state_hash = ?, graph_tenant = ?, graph_user = ? WHERE id = ?",
      {Value{std::int64_t{r.status_frequency_minutes}}, folder_of(r), graph_hash_of(r),
       optional_text(r.graph_tenant), optional_text(r.graph_user), Value{out.registration_id}});
  if (!updated) return std::move(updated).error();
  out.change = CapabilityChange::unchanged;
  if (out.device_reactivated) {
    nlohmann::json detail = audit_detail(r, true);
    detail["registration"] = out.registration_id;
    if (auto st = audit(conn, actor, "registration.device_reactivated", r.customer_id, detail); !st)
      return std::move(st).error();
  }
  return out;
}

// The result with its change, once the change's audit row is written.
Result<CapabilityResult> with_audit(Connection& conn, const Actor& actor,
                                    const CapabilityRegistration& r, CapabilityResult out,
                                    CapabilityChange change, const char* event) {
  out.change = change;
  nlohmann::json detail = audit_detail(r, out.device_reactivated);
  detail["registration"] = out.registration_id;
  if (auto st = audit(conn, actor, event, r.customer_id, detail); !st) return std::move(st).error();
  return out;
}

// Registered again without its capability (a reinstalled app, or someone who knows the address
// and the token): a new capability; the old URL ends, and with it its Exchange subscription.
// The count of the mailbox stays the device's.
Result<CapabilityResult> replace_capability(Connection& conn, const CapabilityRegistration& r,
                                            const Actor& actor, CapabilityResult out,
                                            const Bytes& stored_hash) {
  if (auto st = rekey(conn, out.registration_id, r, folder_of(r), false); !st)
    return std::move(st).error();
  out.retired_secret_hashes.push_back(stored_hash);
  return with_audit(conn, actor, r, std::move(out), CapabilityChange::replaced,
                    "registration.replaced");
}

// The quota a new active registration would break, or none.
Result<std::optional<CapabilityChange>> quota_refusal(Connection& conn,
                                                      const CapabilityRegistration& r,
                                                      std::int64_t device_id) {
  if (r.max_per_device > 0) {
    auto count =
        conn.query("SELECT COUNT(*) FROM registrations WHERE device_id = ? AND state = 'active'",
                   {Value{device_id}});
    if (!count) return std::move(count).error();
    if (!count->empty() && count->front().i64(0) >= r.max_per_device) {
      return std::optional{CapabilityChange::quota_device};
    }
  }
  auto room = customer_has_room(conn, r.customer_id, r.max_per_customer);
  if (!room) return std::move(room).error();
  if (!*room) return std::optional{CapabilityChange::quota_customer};
  return std::optional<CapabilityChange>{};
}

// A new active registration, in the pair's deleted row when there is one (used again, with the
// new capability and a fresh state) or a new row.
Result<CapabilityResult> create_registration(Connection& conn, const CapabilityRegistration& r,
                                             const Actor& actor, CapabilityResult out,
                                             bool deleted_row_exists) {
  const std::int64_t frequency = r.status_frequency_minutes;
  const Value folder = folder_of(r);
  if (deleted_row_exists) {
    if (auto st = rekey(conn, out.registration_id, r, folder, true); !st)
      return std::move(st).error();
  } else {
    auto insert = conn.prepare(
        "INSERT INTO registrations (customer_id, mailbox_id, device_id, secret_hash, "
        "secret_tagged, secret_generation, status_frequency_minutes, folder_id, source, "
        "client_state_hash, graph_tenant, graph_user, graph_baseline, unread_count) VALUES (?, "
        "?, ?, ?, 1, 0, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!insert) return std::move(insert).error();
    const Value stated{std::int64_t{r.unread.value_or(0)}};
    const Value params[] = {Value{r.customer_id},
                            Value{out.mailbox_id},
                            Value{out.device_id},
                            blob(r.new_hash),
                            Value{frequency},
                            folder,
                            Value{r.source},
                            graph_hash_of(r),
                            optional_text(r.graph_tenant),
                            optional_text(r.graph_user),
                            stated,
                            stated};
    if (auto st = (*insert)->execute(params); !st) return std::move(st).error();
    out.registration_id = static_cast<std::int64_t>((*insert)->last_insert_id());
  }
  return with_audit(conn, actor, r, std::move(out), CapabilityChange::created,
                    "registration.created");
}

// One attempt of register_with_capability's transaction.
Result<CapabilityResult> register_in_transaction(Connection& conn, const CapabilityRegistration& r,
                                                 const Actor& actor) {
  CapabilityResult out;
  // A customer's registrations one at a time (the quotas count what the others committed);
  // a locking read first, so the transaction's snapshot is taken after the lock.
  auto lock =
      conn.query("SELECT id FROM customers WHERE id = ? FOR UPDATE", {Value{r.customer_id}});
  if (!lock) return std::move(lock).error();
  auto mailbox = ensure_mailbox(conn, r.customer_id, r.mailbox_hmac);
  if (!mailbox) return std::move(mailbox).error();
  out.mailbox_id = *mailbox;
  auto device = ensure_device(conn, r.customer_id, r.environment, r.token_hex);
  if (!device) return std::move(device).error();
  out.device_id = device->id;
  out.device_reactivated = device->reactivated;
  if (device->refused == DeviceRefusal::invalid) {
    out.device_note = device->note;
    return refuse_registration(conn, std::move(out), CapabilityChange::device_invalid);
  }
  if (device->refused == DeviceRefusal::unregistered) {
    out.device_note = device->note;
    return refuse_registration(conn, std::move(out), CapabilityChange::device_unregistered);
  }

  auto rows = conn.query(
      "SELECT id, state, secret_hash, source FROM registrations WHERE mailbox_id = ? AND "
      "device_id = ? FOR UPDATE",
      {Value{out.mailbox_id}, Value{out.device_id}});
  if (!rows) return std::move(rows).error();
  const bool exists = !rows->empty();
  const bool active = exists && rows->front().text(1) == "active";
  const Bytes stored = exists ? bytes_of(rows->front().text(2)) : Bytes{};
  if (exists) out.registration_id = rows->front().i64(0);

  // A refresh keeps the URL; an app that moves the account to the other source (Exchange Online
  // leaving EWS for Graph) gets new URLs, as a replacement, since the old ones serve the other
  // protocol.
  const bool same_source = exists && rows->front().text(3) == r.source;
  if (active && same_source && r.presented_hash && constant_time_equal(*r.presented_hash, stored)) {
    return refresh_settings(conn, r, actor, std::move(out));
  }
  if (r.refresh_only) {
    return refuse_registration(conn, std::move(out), CapabilityChange::limited);
  }
  if (active) return replace_capability(conn, r, actor, std::move(out), stored);
  auto quota = quota_refusal(conn, r, out.device_id);
  if (!quota) return std::move(quota).error();
  if (*quota) return refuse_registration(conn, std::move(out), **quota);
  return create_registration(conn, r, actor, std::move(out), exists);
}

}  // namespace

Result<CapabilityResult> register_with_capability(Connection& conn, const CapabilityRegistration& r,
                                                  const Actor& actor) {
  return in_transaction_retried<CapabilityResult>(
      conn, [&]() -> Result<CapabilityResult> { return register_in_transaction(conn, r, actor); });
}

Result<MoveResult> move_with_capability(Connection& conn, const CapabilityMove& m,
                                        const Actor& actor) {
  return in_transaction_retried<MoveResult>(conn, [&]() -> Result<MoveResult> {
    MoveResult out;
    auto rows = conn.query(
        "SELECT r.id, r.customer_id, r.mailbox_id, r.device_id, (SELECT c.customer_id FROM "
        "customers c WHERE c.id = r.customer_id) FROM registrations r "
        "WHERE r.secret_hash = ? AND r.state = 'active' FOR UPDATE",
        {blob(m.presented_hash)});
    if (!rows) return std::move(rows).error();
    if (rows->empty()) return out;  // not_found
    const std::int64_t id = rows->front().i64(0);
    out.customer_id = rows->front().i64(1);
    const std::int64_t mailbox_id = rows->front().i64(2);
    const std::int64_t old_device = rows->front().i64(3);
    out.customer_public_id = rows->front().text(4);
    auto device = ensure_device(conn, out.customer_id, m.environment, m.token_hex);
    if (!device) return std::move(device).error();
    if (device->refused != DeviceRefusal::none) {
      out.change = device->refused == DeviceRefusal::invalid ? MoveChange::device_invalid
                                                             : MoveChange::device_unregistered;
      out.device_note = device->note;
      if (auto st = conn.rollback(); !st) return std::move(st).error();
      return out;
    }
    if (device->id == old_device) {
      out.change = MoveChange::unchanged;
      return out;
    }
    // What the new token already has for this mailbox gives way to the presented registration.
    auto other = conn.query(
        "SELECT id, state, secret_hash FROM registrations WHERE mailbox_id = ? AND device_id = ? "
        "FOR UPDATE",
        {Value{mailbox_id}, Value{device->id}});
    if (!other) return std::move(other).error();
    nlohmann::json detail = {
        {"registration", id}, {"environment", m.environment}, {"device", redact(m.token_hex)}};
    if (!other->empty()) {
      const std::int64_t other_id = other->front().i64(0);
      if (other->front().text(1) == "active") {
        out.retired_secret_hashes.push_back(bytes_of(other->front().text(2)));
        detail["replaced"] = other_id;
      }
      if (auto st = erase_registration_row(conn, other_id); !st) return std::move(st).error();
    }
    auto moved = conn.execute("UPDATE registrations SET device_id = ? WHERE id = ?",
                              {Value{device->id}, Value{id}});
    if (!moved) return std::move(moved).error();
    out.change = MoveChange::moved;
    if (auto st = audit(conn, actor, "registration.token_moved", out.customer_id, detail); !st)
      return std::move(st).error();
    return out;
  });
}

Result<std::optional<Ended>> unregister_with_capability(Connection& conn, const Bytes& presented,
                                                        const Actor& actor) {
  return in_transaction_retried<std::optional<Ended>>(conn, [&]() -> Result<std::optional<Ended>> {
    auto rows = conn.query(
        "SELECT r.id, r.customer_id, (SELECT d.environment FROM devices d WHERE d.id = "
        "r.device_id), (SELECT d.token_hex FROM devices d WHERE d.id = r.device_id), (SELECT "
        "c.customer_id FROM customers c WHERE c.id = r.customer_id) FROM registrations r "
        "WHERE r.secret_hash = ? AND r.state = 'active' FOR UPDATE",
        {blob(presented)});
    if (!rows) return std::move(rows).error();
    if (rows->empty()) return std::optional<Ended>{};
    const Row& row = rows->front();
    auto gone = conn.execute(
        "UPDATE registrations SET state = 'deleted', deleted_at = UTC_TIMESTAMP(6) WHERE id = ?",
        {Value{row.i64(0)}});
    if (!gone) return std::move(gone).error();
    nlohmann::json detail = {{"registration", row.i64(0)},
                             {"environment", row.text(2)},
                             {"device", redact(row.text(3))}};
    if (auto st = audit(conn, actor, "registration.deleted", row.i64(1), detail); !st)
      return std::move(st).error();
    return std::optional<Ended>{Ended{row.i64(1), row.text(4), presented}};
  });
}

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

Result<std::uint64_t> expire_unconfirmed_registrations(Connection& conn, std::chrono::hours grace,
                                                       std::size_t limit) {
  // Read first (no locks), then end them by primary key with the conditions checked again: an
  // UPDATE over the index range would lock every silent registration it passes, heard or not,
  // against their callbacks.
  auto rows = conn.query(
      "SELECT id FROM registrations WHERE state = 'active' AND silent_after < UTC_TIMESTAMP(6) - "
      "INTERVAL ? HOUR AND last_heard_at IS NULL LIMIT ?",
      {Value{static_cast<std::int64_t>(grace.count())}, Value{static_cast<std::int64_t>(limit)}});
  if (!rows) return std::move(rows).error();
  std::vector<std::int64_t> ids;
  ids.reserve(rows->size());
  for (const auto& row : *rows) ids.push_back(row.i64(0));
  return sql::execute_in_id_chunks(conn,
                                   "UPDATE registrations SET state = 'deleted', deleted_at = "
                                   "UTC_TIMESTAMP(6) WHERE state = 'active' AND last_heard_at IS "
                                   "NULL AND id IN (",
                                   ids);
}

Result<GraphSubscriptionCounts> count_graph_subscriptions(Connection& conn) {
  auto rows = conn.query(
      "SELECT COUNT(*), COALESCE(SUM(graph_expires_at < UTC_TIMESTAMP(6)), 0), "
      "COALESCE(SUM(graph_expires_at BETWEEN UTC_TIMESTAMP(6) AND UTC_TIMESTAMP(6) + INTERVAL 1 "
      "DAY), 0), COALESCE(SUM(graph_expires_at IS NULL), 0) FROM registrations WHERE source = "
      "'graph' AND state = 'active'");
  if (!rows) return std::move(rows).error();
  GraphSubscriptionCounts c;
  if (rows->empty()) return c;
  const Row& r = rows->front();
  c.active = r.i64(0);
  c.expired = r.i64(1);
  c.expiring_1d = r.i64(2);
  c.never_notified = r.i64(3);
  return c;
}

Result<std::vector<GraphSubscription>> list_graph_subscriptions(Connection& conn,
                                                                std::size_t limit) {
  auto rows = conn.query(
      "SELECT r.id, c.customer_id, d.token_hex, d.environment, "
      "COALESCE(DATE_FORMAT(r.graph_expires_at, '%Y-%m-%dT%H:%i:%sZ'), ''), "
      "COALESCE(DATE_FORMAT(r.last_heard_at, '%Y-%m-%dT%H:%i:%sZ'), ''), "
      "COALESCE(r.wake_reason, ''), COALESCE(DATE_FORMAT(r.wake_sent_at, "
      "'%Y-%m-%dT%H:%i:%sZ'), '') FROM registrations r JOIN customers c ON c.id = r.customer_id "
      "JOIN devices d ON d.id = r.device_id WHERE r.source = 'graph' AND r.state = 'active' "
      "ORDER BY r.graph_expires_at LIMIT ?",
      {Value{static_cast<std::int64_t>(limit)}});
  if (!rows) return std::move(rows).error();
  std::vector<GraphSubscription> out;
  for (const auto& r : *rows) {
    out.push_back({r.i64(0), r.text(1), redact(r.text(2)), r.text(3), r.text(4), r.text(5),
                   r.text(6), r.text(7)});
  }
  return out;
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
          std::string(kSilentCondition) + " ORDER BY r.silent_after LIMIT ?",
      {Value{static_cast<std::int64_t>(limit)}});
  if (!rows) return std::move(rows).error();
  std::vector<SilentSubscription> out;
  for (const auto& r : *rows) {
    out.push_back({r.i64(0), r.text(1), redact(r.text(2)), r.text(3), r.text(4),
                   static_cast<int>(r.i64(5)), r.i64(6)});
  }
  return out;
}

}  // namespace mp::store
