// Tests of the registration API's store on the real MariaDB: customer lookup by registration
// key, idempotent registration, reactivation with a new generation, device states, token moves,
// re-keying, unregister, audit rows without addresses or tokens, and concurrent registrations.
#include "store/registrations.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "common/crypto.hpp"
#include "common/redact.hpp"
#include "store/migrations.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

// The store only sees hashes; any deterministic function of (id, generation) serves here.
Bytes test_hash(std::int64_t id, std::uint32_t generation) {
  return sha384("test-secret/" + std::to_string(id) + "/" + std::to_string(generation));
}

class RegistrationsStoreTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  const CallbackSecretHash hash_of = test_hash;
  const Actor actor{"registration-api", "192.0.2.9"};
  std::int64_t customer = 0;
  const Bytes mailbox = random_bytes(32);

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
    customer = test::insert_test_customer(conn, "tst-" + hex_encode(random_bytes(4)));
  }

  DeviceRegistration request(const std::string& token, const Bytes& mailbox_hmac,
                             const std::string& environment = "production") const {
    DeviceRegistration r;
    r.customer_id = customer;
    r.mailbox_hmac = mailbox_hmac;
    r.token_hex = token;
    r.environment = environment;
    r.status_frequency_minutes = 30;
    return r;
  }

  RegistrationResult registered(const DeviceRegistration& r) {
    auto result = register_device(conn, r, hash_of, actor);
    EXPECT_TRUE(result.ok()) << result.error().message;
    return result.ok() ? std::move(*result) : RegistrationResult{};
  }

  std::string column(const std::string& sql, std::int64_t id) {
    auto rows = conn.query(sql, {Value{id}});
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : "";
  }

  std::int64_t count(const std::string& sql) {
    auto rows = conn.query(sql);
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : -1;
  }

  std::string hash_hex(std::int64_t id) {
    return hex_encode(as_bytes(column("SELECT secret_hash FROM registrations WHERE id = ?", id)));
  }
};

std::string token() {
  return hex_encode(random_bytes(32));
}

TEST_F(RegistrationsStoreTest, FindsTheCustomerOnlyWithItsRegistrationKey) {
  const std::string id = "tst-" + hex_encode(random_bytes(5));
  const Bytes key_hash = sha384("rk_the-right-key");
  ASSERT_TRUE(conn.execute("INSERT INTO customers (customer_id, registration_key_hash, "
                           "admin_key_hash) VALUES (?, ?, ?)",
                           {Value{id}, Value{Blob{std::string(key_hash.begin(), key_hash.end())}},
                            Value{Blob{std::string(48, 'a')}}})
                  .ok());
  auto found = find_customer_by_registration_key(conn, id, key_hash);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->customer_id, id);
  EXPECT_EQ((*found)->state, "active");

  EXPECT_FALSE(find_customer_by_registration_key(conn, id, sha384("rk_wrong"))->has_value());
  EXPECT_FALSE(find_customer_by_registration_key(conn, id + "x", key_hash)->has_value());
  EXPECT_FALSE(find_customer_by_registration_key(conn, id, Bytes{})->has_value());

  ASSERT_TRUE(
      conn.execute("UPDATE customers SET state = 'disabled' WHERE customer_id = ?", {Value{id}})
          .ok());
  auto disabled = find_customer_by_registration_key(conn, id, key_hash);
  ASSERT_TRUE(disabled.ok() && disabled->has_value());
  EXPECT_EQ((*disabled)->state, "disabled") << "the caller refuses it with its own answer";
}

TEST_F(RegistrationsStoreTest, RegisteringIsIdempotent) {
  const std::string t = token();
  const auto first = registered(request(t, mailbox));
  EXPECT_EQ(first.change, RegistrationChange::created);
  EXPECT_GT(first.registration_id, 0);
  EXPECT_EQ(first.generation, 0u);
  EXPECT_EQ(hash_hex(first.registration_id), hex_encode(test_hash(first.registration_id, 0)));
  EXPECT_EQ(
      column("SELECT secret_generation FROM registrations WHERE id = ?", first.registration_id),
      "0");

  const auto again = registered(request(t, mailbox));
  EXPECT_EQ(again.change, RegistrationChange::unchanged);
  EXPECT_EQ(again.registration_id, first.registration_id);
  EXPECT_EQ(again.generation, 0u);
  EXPECT_EQ(again.mailbox_id, first.mailbox_id);
  EXPECT_EQ(again.device_id, first.device_id);
  EXPECT_TRUE(again.retired_secret_hashes.empty());
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'registration.created'"), 1)
      << "a repeat changes nothing and writes no audit row";

  // The same token in the other environment is another device, so another registration.
  const auto dev = registered(request(t, mailbox, "development"));
  EXPECT_EQ(dev.change, RegistrationChange::created);
  EXPECT_NE(dev.device_id, first.device_id);
}

TEST_F(RegistrationsStoreTest, EveryDeviceOfAMailboxHasItsOwnRegistration) {
  const auto a = registered(request(token(), mailbox));
  const auto b = registered(request(token(), mailbox));
  EXPECT_EQ(a.mailbox_id, b.mailbox_id);
  EXPECT_NE(a.device_id, b.device_id);
  EXPECT_NE(a.registration_id, b.registration_id);
  const auto other = registered(request(token(), random_bytes(32)));
  EXPECT_NE(other.mailbox_id, a.mailbox_id);
  EXPECT_EQ(count("SELECT COUNT(*) FROM mailboxes"), 2);
}

TEST_F(RegistrationsStoreTest, UnregisterThenRegisterGivesTheNextGeneration) {
  const std::string t = token();
  const auto first = registered(request(t, mailbox));
  ASSERT_TRUE(conn.execute("UPDATE registrations SET subscription_id = 'SUB-1', watermark = 'W' "
                           "WHERE id = ?",
                           {Value{first.registration_id}})
                  .ok());

  auto other_customer = unregister_registration(
      conn, test::insert_test_customer(conn, "tst-" + hex_encode(random_bytes(4))),
      first.registration_id, actor);
  ASSERT_TRUE(other_customer.ok());
  EXPECT_FALSE(other_customer->has_value()) << "only the customer's own registrations";

  auto gone = unregister_registration(conn, customer, first.registration_id, actor);
  ASSERT_TRUE(gone.ok()) << gone.error().message;
  ASSERT_TRUE(gone->has_value());
  EXPECT_EQ(**gone, test_hash(first.registration_id, 0)) << "the hash the listener cache holds";
  EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", first.registration_id),
            "deleted");
  auto twice = unregister_registration(conn, customer, first.registration_id, actor);
  ASSERT_TRUE(twice.ok());
  EXPECT_FALSE(twice->has_value()) << "already deleted";

  const auto back = registered(request(t, mailbox));
  EXPECT_EQ(back.change, RegistrationChange::reactivated);
  EXPECT_EQ(back.registration_id, first.registration_id);
  EXPECT_EQ(back.generation, 1u);
  EXPECT_EQ(hash_hex(back.registration_id), hex_encode(test_hash(back.registration_id, 1)))
      << "a new URL: Exchange's old subscription stays dead";
  EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", back.registration_id), "active");
  EXPECT_EQ(column("SELECT COALESCE(subscription_id, '') FROM registrations WHERE id = ?",
                   back.registration_id),
            "")
      << "the old binding belonged to the old subscription";
  EXPECT_EQ(registered(request(t, mailbox)).generation, 1u) << "and stays the same on repeats";

  // Twice more: each delete and return is one generation on.
  ASSERT_TRUE(unregister_registration(conn, customer, back.registration_id, actor)->has_value());
  EXPECT_EQ(registered(request(t, mailbox)).generation, 2u);
}

TEST_F(RegistrationsStoreTest, AnUnregisteredDeviceComesBackOnlyAfterApnsTime) {
  const std::string t = token();
  const auto first = registered(request(t, mailbox));
  // APNs said 410 Unregistered a minute ago: the app registering now has a fresh token.
  ASSERT_TRUE(conn.execute("UPDATE devices SET state = 'unregistered', unregistered_at = "
                           "UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE WHERE id = ?",
                           {Value{first.device_id}})
                  .ok());
  const auto back = registered(request(t, mailbox));
  EXPECT_EQ(back.change, RegistrationChange::unchanged);
  EXPECT_TRUE(back.device_reactivated);
  EXPECT_EQ(column("SELECT state FROM devices WHERE id = ?", first.device_id), "active");
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = "
                  "'registration.device_reactivated'"),
            1);

  // APNs' time is after this request (its clock runs ahead): the token is still refused.
  ASSERT_TRUE(conn.execute("UPDATE devices SET state = 'unregistered', unregistered_at = "
                           "UTC_TIMESTAMP(6) + INTERVAL 1 HOUR WHERE id = ?",
                           {Value{first.device_id}})
                  .ok());
  const Bytes new_mailbox = random_bytes(32);
  const auto refused = registered(request(t, new_mailbox));
  EXPECT_EQ(refused.change, RegistrationChange::device_unregistered);
  EXPECT_FALSE(refused.device_note.empty());
  EXPECT_EQ(column("SELECT state FROM devices WHERE id = ?", first.device_id), "unregistered");
  EXPECT_EQ(count("SELECT COUNT(*) FROM mailboxes"), 1) << "nothing written for a refusal";
}

TEST_F(RegistrationsStoreTest, AnInvalidDeviceStaysRefusedInItsEnvironment) {
  const std::string t = token();
  const auto first = registered(request(t, mailbox));
  ASSERT_TRUE(conn.execute("UPDATE devices SET state = 'invalid', invalid_reason = "
                           "'BadDeviceToken' WHERE id = ?",
                           {Value{first.device_id}})
                  .ok());
  const auto refused = registered(request(t, mailbox));
  EXPECT_EQ(refused.change, RegistrationChange::device_invalid);
  EXPECT_EQ(refused.device_note, "BadDeviceToken");
  EXPECT_EQ(column("SELECT state FROM devices WHERE id = ?", first.device_id), "invalid");
  // The usual cause is the wrong environment: the same token in the other one is accepted.
  EXPECT_EQ(registered(request(t, mailbox, "development")).change, RegistrationChange::created);
}

TEST_F(RegistrationsStoreTest, ATokenUpdateMovesTheRegistrationAndKeepsItsUrlAndBinding) {
  const std::string old_token = token();
  const auto first = registered(request(old_token, mailbox));
  ASSERT_TRUE(conn.execute("UPDATE registrations SET subscription_id = 'SUB-1', watermark = 'W' "
                           "WHERE id = ?",
                           {Value{first.registration_id}})
                  .ok());
  const std::string new_token = token();
  auto moving = request(new_token, mailbox);
  moving.previous_token_hex = old_token;
  const auto moved = registered(moving);
  EXPECT_EQ(moved.change, RegistrationChange::token_moved);
  EXPECT_EQ(moved.registration_id, first.registration_id);
  EXPECT_EQ(moved.generation, first.generation);
  EXPECT_NE(moved.device_id, first.device_id);
  EXPECT_EQ(column("SELECT device_id FROM registrations WHERE id = ?", moved.registration_id),
            std::to_string(moved.device_id));
  EXPECT_EQ(column("SELECT subscription_id FROM registrations WHERE id = ?", moved.registration_id),
            "SUB-1");
  EXPECT_EQ(hash_hex(moved.registration_id), hex_encode(test_hash(first.registration_id, 0)));
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);

  // Sent again (the app retries): the registration is already the new token's.
  const auto repeat = registered(moving);
  EXPECT_EQ(repeat.change, RegistrationChange::unchanged);
  EXPECT_EQ(repeat.registration_id, first.registration_id);

  // A previous token that has no registration here: a plain registration.
  auto unknown = request(token(), mailbox);
  unknown.previous_token_hex = token();
  EXPECT_EQ(registered(unknown).change, RegistrationChange::created);
}

TEST_F(RegistrationsStoreTest, ATokenUpdateOntoATokenAlreadyRegisteredKeepsThatOne) {
  const std::string old_token = token(), new_token = token();
  const auto old_reg = registered(request(old_token, mailbox));
  const auto new_reg = registered(request(new_token, mailbox));
  auto moving = request(new_token, mailbox);
  moving.previous_token_hex = old_token;
  const auto result = registered(moving);
  EXPECT_EQ(result.change, RegistrationChange::unchanged);
  EXPECT_EQ(result.registration_id, new_reg.registration_id);
  ASSERT_EQ(result.retired_secret_hashes.size(), 1u);
  EXPECT_EQ(result.retired_secret_hashes[0], test_hash(old_reg.registration_id, 0));
  EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", old_reg.registration_id),
            "deleted")
      << "the old token is dead";

  // A deleted registration of the new token is in the way of a move: it goes for good.
  const std::string third = token();
  const auto third_reg = registered(request(third, mailbox));
  ASSERT_TRUE(
      unregister_registration(conn, customer, third_reg.registration_id, actor)->has_value());
  ASSERT_TRUE(
      conn.execute("INSERT INTO superseded_subscriptions (registration_id, subscription_id) "
                   "VALUES (?, 'OLD')",
                   {Value{third_reg.registration_id}})
          .ok());
  auto onto_deleted = request(third, mailbox);
  onto_deleted.previous_token_hex = new_token;
  const auto moved = registered(onto_deleted);
  EXPECT_EQ(moved.change, RegistrationChange::token_moved);
  EXPECT_EQ(moved.registration_id, new_reg.registration_id);
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations WHERE id = " +
                  std::to_string(third_reg.registration_id)),
            0);
}

TEST_F(RegistrationsStoreTest, ARowWithAnotherSecretIsRekeyed) {
  // A row written by a tool (or under another region secret) holds a hash of its own.
  const auto tool = test::insert_test_registration(conn, customer, "rekey@example.com");
  const auto token_hex = column(
      "SELECT d.token_hex FROM registrations r JOIN devices d ON d.id = r.device_id "
      "WHERE r.id = ?",
      tool.id);
  const std::string raw_hmac = column(
      "SELECT m.address_hmac FROM registrations r JOIN mailboxes m ON m.id = r.mailbox_id "
      "WHERE r.id = ?",
      tool.id);
  const Bytes hmac(raw_hmac.begin(), raw_hmac.end());
  ASSERT_EQ(hmac.size(), 32u);
  const auto result = registered(request(token_hex, hmac));
  EXPECT_EQ(result.change, RegistrationChange::unchanged);
  EXPECT_EQ(result.registration_id, tool.id);
  ASSERT_EQ(result.retired_secret_hashes.size(), 1u);
  EXPECT_EQ(result.retired_secret_hashes[0], sha384(tool.secret));
  EXPECT_EQ(hash_hex(tool.id), hex_encode(test_hash(tool.id, 0)));
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'registration.rekeyed'"), 1);
}

TEST_F(RegistrationsStoreTest, AuditRowsHoldNoAddressAndNoFullToken) {
  const std::string t = token();
  const auto first = registered(request(t, mailbox));
  ASSERT_TRUE(unregister_registration(conn, customer, first.registration_id, actor)->has_value());
  auto rows = tail_audit(conn, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  for (const auto& row : *rows) {
    EXPECT_EQ(row.actor, "registration-api");
    EXPECT_EQ(row.source_address, "192.0.2.9");
    EXPECT_EQ(row.detail.find(t), std::string::npos) << row.detail;
    EXPECT_EQ(row.detail.find(t.substr(16, 16)), std::string::npos) << row.detail;
    EXPECT_NE(row.detail.find(redact(t)), std::string::npos) << row.detail;
  }
  EXPECT_EQ((*rows)[0].action, "registration.deleted");
  EXPECT_EQ((*rows)[1].action, "registration.created");
}

TEST_F(RegistrationsStoreTest, ConcurrentFirstRegistrationsAgreeOnOneRow) {
  const std::string t = token();
  constexpr int kThreads = 6;
  std::vector<std::int64_t> ids(kThreads, 0);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      Connection c(db.options());
      if (auto st = c.connect(); !st) {
        errors[i] = st.error().message;
        return;
      }
      auto r = register_device(c, request(t, mailbox), hash_of, actor);
      if (r) {
        ids[i] = r->registration_id;
      } else {
        errors[i] = r.error().message;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_TRUE(errors[i].empty()) << errors[i];
    EXPECT_EQ(ids[i], ids[0]);
  }
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM devices"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM mailboxes"), 1);
}

}  // namespace
}  // namespace mp::store
