// SQL behind registrations.hpp.
#include "store/registrations.hpp"

#include <nlohmann/json.hpp>

#include "common/redact.hpp"
#include "store/sql_util.hpp"

namespace mp::store {
namespace {

using sql::blob;
using sql::kSilentCondition;

Bytes bytes_of(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

// Runs `body` in a transaction, rolled back when it fails; a deadlock (or a Galera certification
// conflict, also Errc::busy) or a duplicate key (a concurrent request inserted the same row
// first) re-runs it, twice at most: the next run finds the row.
template <class T, class Body>
Result<T> in_transaction(Connection& conn, Body&& body) {
  for (int attempt = 0;; ++attempt) {
    if (auto st = conn.begin(); !st) return std::move(st).error();
    Result<T> result = body();
    if (result) {
      if (auto st = conn.commit(); !st) result = std::move(st).error();
    }
    if (result) return result;
    if (!conn.broken()) (void)conn.rollback();
    const Errc code = result.error().code;
    if ((code != Errc::busy && code != Errc::conflict) || attempt == 2 || conn.broken()) {
      return result;
    }
  }
}

struct ExistingRegistration {
  std::int64_t id = 0;
  std::int64_t device_id = 0;
  bool active = false;
  std::uint32_t generation = 0;
  Bytes secret_hash;
  int status_frequency_minutes = 0;
};

ExistingRegistration registration_from(const Row& row) {
  return {row.i64(0),
          row.i64(1),
          row.text(2) == "active",
          static_cast<std::uint32_t>(row.i64(3)),
          bytes_of(row.text(4)),
          static_cast<int>(row.i64(5))};
}

constexpr std::string_view kRegistrationColumns =
    "id, device_id, state, secret_generation, secret_hash, status_frequency_minutes";

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

struct DeviceState {
  std::int64_t id = 0;
  RegistrationChange refused = RegistrationChange::created;  // created = not refused
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
    d.refused = RegistrationChange::device_invalid;
    d.note = row.text(2).empty() ? "BadDeviceToken" : row.text(2);
    return d;
  }
  if (state == "unregistered") {
    if (row.i64(4) == 0) {
      d.refused = RegistrationChange::device_unregistered;
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

const char* registration_change_name(RegistrationChange change) noexcept {
  switch (change) {
    case RegistrationChange::created:
      return "created";
    case RegistrationChange::unchanged:
      return "unchanged";
    case RegistrationChange::reactivated:
      return "reactivated";
    case RegistrationChange::token_moved:
      return "token_moved";
    case RegistrationChange::device_invalid:
      return "device_invalid";
    case RegistrationChange::device_unregistered:
      return "device_unregistered";
  }
  return "unchanged";
}

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

Result<RegistrationResult> register_device(Connection& conn, const DeviceRegistration& r,
                                           const CallbackSecretHash& secret_hash_of,
                                           const Actor& actor) {
  return in_transaction<RegistrationResult>(conn, [&]() -> Result<RegistrationResult> {
    RegistrationResult out;
    auto mailbox = ensure_mailbox(conn, r.customer_id, r.mailbox_hmac);
    if (!mailbox) return std::move(mailbox).error();
    out.mailbox_id = *mailbox;
    auto device = ensure_device(conn, r.customer_id, r.environment, r.token_hex);
    if (!device) return std::move(device).error();
    out.device_id = device->id;
    out.device_reactivated = device->reactivated;
    if (device->refused != RegistrationChange::created) {
      out.change = device->refused;
      out.device_note = device->note;
      // Nothing is kept (not even a new mailbox row); the COMMIT that follows is a no-op.
      if (auto st = conn.rollback(); !st) return std::move(st).error();
      return out;
    }
    const std::int64_t frequency = r.status_frequency_minutes;
    nlohmann::json detail = {{"environment", r.environment}, {"device", redact(r.token_hex)}};
    if (device->reactivated) detail["device_reactivated"] = true;

    // The app's token changed: its registration for this mailbox moves to the new device.
    std::optional<std::int64_t> old_device;
    if (r.previous_token_hex && *r.previous_token_hex != r.token_hex) {
      auto old = conn.query(
          "SELECT id FROM devices WHERE customer_id = ? AND environment = ? AND token_hex = ?",
          {Value{r.customer_id}, Value{r.environment}, Value{*r.previous_token_hex}});
      if (!old) return std::move(old).error();
      if (!old->empty()) old_device = old->front().i64(0);
    }
    // The registrations of this mailbox on the new (and old) device, locked in index order.
    auto rows = conn.query(
        "SELECT " + std::string(kRegistrationColumns) +
            " FROM registrations WHERE mailbox_id = ? AND device_id IN (?, ?) ORDER BY id "
            "FOR UPDATE",
        {Value{out.mailbox_id}, Value{out.device_id}, Value{old_device.value_or(out.device_id)}});
    if (!rows) return std::move(rows).error();
    std::optional<ExistingRegistration> current, moving;
    for (const Row& row : *rows) {
      auto reg = registration_from(row);
      if (reg.device_id == out.device_id) {
        current = std::move(reg);
      } else {
        moving = std::move(reg);
      }
    }

    if (moving && moving->active) {
      detail["previous_device"] = redact(*r.previous_token_hex);
      if (current && current->active) {
        // The new token registered on its own already: that registration stays, the old one
        // goes (its token is dead); the app subscribes with the URL it gets now.
        auto gone = conn.execute(
            "UPDATE registrations SET state = 'deleted', deleted_at = UTC_TIMESTAMP(6) "
            "WHERE id = ?",
            {Value{moving->id}});
        if (!gone) return std::move(gone).error();
        out.retired_secret_hashes.push_back(moving->secret_hash);
        detail["registration"] = moving->id;
        detail["replaced_by"] = current->id;
        if (auto st = audit(conn, actor, "registration.deleted", r.customer_id, detail); !st)
          return std::move(st).error();
        detail.erase("replaced_by");
        // ...and `current` is answered below like a repeated registration.
      } else {
        if (current) {
          // A deleted registration of the new token is in the way of the unique (mailbox,
          // device) pair; its URL is dead already, so its row goes for good.
          for (std::string_view sql :
               {"DELETE FROM superseded_subscriptions WHERE registration_id = ?",
                "DELETE FROM registrations WHERE id = ? AND state = 'deleted'"}) {
            auto n = conn.execute(sql, {Value{current->id}});
            if (!n) return std::move(n).error();
          }
        }
        auto moved = conn.execute(
            "UPDATE registrations SET device_id = ?, status_frequency_minutes = ? WHERE id = ?",
            {Value{out.device_id}, Value{frequency}, Value{moving->id}});
        if (!moved) return std::move(moved).error();
        out.change = RegistrationChange::token_moved;
        out.registration_id = moving->id;
        out.generation = moving->generation;
        detail["registration"] = moving->id;
        detail["generation"] = moving->generation;
        if (auto st = audit(conn, actor, "registration.token_moved", r.customer_id, detail); !st)
          return std::move(st).error();
        return out;
      }
    }

    if (!current) {
      // The secret is derived from the id, known only after the insert: a random placeholder
      // (unique like every hash) holds the row until the real hash replaces it.
      auto insert = conn.prepare(
          "INSERT INTO registrations (customer_id, mailbox_id, device_id, secret_hash, "
          "secret_generation, status_frequency_minutes) VALUES (?, ?, ?, ?, 0, ?)");
      if (!insert) return std::move(insert).error();
      const Value params[] = {Value{r.customer_id}, Value{out.mailbox_id}, Value{out.device_id},
                              blob(random_bytes(48)), Value{frequency}};
      if (auto st = (*insert)->execute(params); !st) return std::move(st).error();
      out.registration_id = static_cast<std::int64_t>((*insert)->last_insert_id());
      out.generation = 0;
      auto keyed =
          conn.execute("UPDATE registrations SET secret_hash = ? WHERE id = ?",
                       {blob(secret_hash_of(out.registration_id, 0)), Value{out.registration_id}});
      if (!keyed) return std::move(keyed).error();
      out.change = RegistrationChange::created;
      detail["registration"] = out.registration_id;
      if (auto st = audit(conn, actor, "registration.created", r.customer_id, detail); !st)
        return std::move(st).error();
      return out;
    }

    out.registration_id = current->id;
    if (!current->active) {
      // Registered again after a delete: a new generation, so the old Exchange subscription's
      // URL stays dead; the old binding and watermark belong to that subscription.
      out.generation = current->generation + 1;
      auto revived = conn.execute(
          "UPDATE registrations SET state = 'active', deleted_at = NULL, secret_generation = ?, "
          "secret_hash = ?, subscription_id = NULL, superseded_subscription = NULL, "
          "watermark = NULL, last_heard_at = NULL, status_frequency_minutes = ? WHERE id = ?",
          {Value{std::int64_t{out.generation}}, blob(secret_hash_of(current->id, out.generation)),
           Value{frequency}, Value{current->id}});
      if (!revived) return std::move(revived).error();
      out.change = RegistrationChange::reactivated;
      detail["registration"] = current->id;
      detail["generation"] = out.generation;
      if (auto st = audit(conn, actor, "registration.reactivated", r.customer_id, detail); !st)
        return std::move(st).error();
      return out;
    }

    out.generation = current->generation;
    out.change = RegistrationChange::unchanged;
    const Bytes expected = secret_hash_of(current->id, current->generation);
    const bool rekey = !constant_time_equal(expected, current->secret_hash);
    if (rekey || current->status_frequency_minutes != r.status_frequency_minutes) {
      auto updated = conn.execute(
          "UPDATE registrations SET secret_hash = ?, status_frequency_minutes = ? WHERE id = ?",
          {blob(expected), Value{frequency}, Value{current->id}});
      if (!updated) return std::move(updated).error();
    }
    if (rekey) {
      // The stored hash is not this region secret's (the secret file was replaced, or the row
      // was written by a tool): the URL given now replaces the old one.
      out.retired_secret_hashes.push_back(current->secret_hash);
      detail["registration"] = current->id;
      if (auto st = audit(conn, actor, "registration.rekeyed", r.customer_id, detail); !st)
        return std::move(st).error();
    } else if (device->reactivated) {
      detail["registration"] = current->id;
      if (auto st = audit(conn, actor, "registration.device_reactivated", r.customer_id, detail);
          !st)
        return std::move(st).error();
    }
    return out;
  });
}

Result<std::optional<Bytes>> unregister_registration(Connection& conn, std::int64_t customer_id,
                                                     std::int64_t registration_id,
                                                     const Actor& actor) {
  return in_transaction<std::optional<Bytes>>(conn, [&]() -> Result<std::optional<Bytes>> {
    // Only the registration row is locked; the device is read for the audit row.
    auto rows = conn.query(
        "SELECT secret_hash, secret_generation, device_id FROM registrations "
        "WHERE id = ? AND customer_id = ? AND state = 'active' FOR UPDATE",
        {Value{registration_id}, Value{customer_id}});
    if (!rows) return std::move(rows).error();
    if (rows->empty()) return std::optional<Bytes>{};
    const Row& row = rows->front();
    auto device =
        conn.query("SELECT environment, token_hex FROM devices WHERE id = ?", {Value{row.i64(2)}});
    if (!device) return std::move(device).error();
    auto gone = conn.execute(
        "UPDATE registrations SET state = 'deleted', deleted_at = UTC_TIMESTAMP(6) WHERE id = ?",
        {Value{registration_id}});
    if (!gone) return std::move(gone).error();
    nlohmann::json detail = {{"registration", registration_id}, {"generation", row.i64(1)}};
    if (!device->empty()) {
      detail["environment"] = device->front().text(0);
      detail["device"] = redact(device->front().text(1));
    }
    if (auto st = audit(conn, actor, "registration.deleted", customer_id, detail); !st)
      return std::move(st).error();
    return std::optional<Bytes>{bytes_of(row.text(0))};
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
