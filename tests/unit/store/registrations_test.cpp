// Tests of the registration API's store on the real MariaDB: customer lookup by registration
// key; registration with capabilities (refresh with the right one, replacement without it, a
// deleted pair used again), quotas per device and per customer, device states, moves and
// unregisters by capability, audit rows without addresses or tokens, concurrent registrations.
#include "store/registrations.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "common/crypto.hpp"
#include "common/redact.hpp"
#include "store/migrations.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

// The store only sees hashes of capabilities; any fresh random value serves here.
Bytes fresh_hash() {
  return sha384(hex_encode(random_bytes(22)));
}

class RegistrationsStoreTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  const Actor actor{"registration-api", "192.0.2.9"};
  std::int64_t customer = 0;
  const Bytes mailbox = random_bytes(32);

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
    customer = test::insert_test_customer(conn, "tst-" + hex_encode(random_bytes(4)));
  }

  CapabilityRegistration request(const std::string& token, const Bytes& mailbox_hmac,
                                 const std::string& environment = "production") const {
    CapabilityRegistration r;
    r.customer_id = customer;
    r.mailbox_hmac = mailbox_hmac;
    r.token_hex = token;
    r.environment = environment;
    r.status_frequency_minutes = 30;
    r.new_hash = fresh_hash();
    r.max_per_device = 16;
    r.max_per_customer = 1000;
    return r;
  }
  // The same request presenting `held` (the capability's hash) as its bearer.
  CapabilityRegistration with(CapabilityRegistration r, const Bytes& held) const {
    r.presented_hash = held;
    return r;
  }

  CapabilityResult registered(const CapabilityRegistration& r) {
    auto result = register_with_capability(conn, r, actor);
    EXPECT_TRUE(result.ok()) << result.error().message;
    return result.ok() ? std::move(*result) : CapabilityResult{};
  }

  std::optional<Ended> unregistered(const Bytes& held) {
    auto result = unregister_with_capability(conn, held, actor);
    EXPECT_TRUE(result.ok()) << result.error().message;
    return result.ok() ? std::move(*result) : std::nullopt;
  }

  MoveResult moved(const Bytes& held, const std::string& token_hex,
                   const std::string& environment = "production") {
    auto result = move_with_capability(conn, {held, token_hex, environment}, actor);
    EXPECT_TRUE(result.ok()) << result.error().message;
    return result.ok() ? std::move(*result) : MoveResult{};
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

TEST_F(RegistrationsStoreTest, ARefreshWithTheCapabilityKeepsItAndARepeatWithoutReplacesIt) {
  const std::string t = token();
  const auto req = request(t, mailbox);
  const auto first = registered(req);
  EXPECT_EQ(first.change, CapabilityChange::created);
  EXPECT_GT(first.registration_id, 0);
  EXPECT_EQ(hash_hex(first.registration_id), hex_encode(req.new_hash));
  EXPECT_EQ(column("SELECT secret_tagged FROM registrations WHERE id = ?", first.registration_id),
            "1");

  // The app refreshing with its capability: nothing new, no audit row.
  const auto refreshed = registered(with(request(t, mailbox), req.new_hash));
  EXPECT_EQ(refreshed.change, CapabilityChange::unchanged);
  EXPECT_EQ(refreshed.registration_id, first.registration_id);
  EXPECT_TRUE(refreshed.retired_secret_hashes.empty());
  EXPECT_EQ(hash_hex(first.registration_id), hex_encode(req.new_hash));
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'registration.created'"), 1);

  // Someone who knows the address and the token, without the capability (or with a wrong one):
  // never the existing capability; a new one, and the old one ends.
  ASSERT_TRUE(conn.execute("UPDATE registrations SET subscription_id = 'SUB-1', watermark = 'W' "
                           "WHERE id = ?",
                           {Value{first.registration_id}})
                  .ok());
  for (const std::optional<Bytes>& presented :
       {std::optional<Bytes>{}, std::optional{fresh_hash()}}) {
    auto again = request(t, mailbox);
    again.presented_hash = presented;
    const std::string stored =
        column("SELECT secret_hash FROM registrations WHERE id = ?", first.registration_id);
    const Bytes before(stored.begin(), stored.end());
    const auto replaced = registered(again);
    EXPECT_EQ(replaced.change, CapabilityChange::replaced);
    ASSERT_EQ(replaced.retired_secret_hashes.size(), 1u);
    EXPECT_EQ(replaced.retired_secret_hashes[0], before);
    EXPECT_EQ(hash_hex(first.registration_id), hex_encode(again.new_hash));
    EXPECT_EQ(column("SELECT COALESCE(subscription_id, '') FROM registrations WHERE id = ?",
                     first.registration_id),
              "")
        << "the old subscription belonged to the old capability";
  }
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'registration.replaced'"), 2);

  // The same token in the other environment is another device, so another registration.
  const auto dev = registered(request(t, mailbox, "development"));
  EXPECT_EQ(dev.change, CapabilityChange::created);
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

TEST_F(RegistrationsStoreTest, OnlyTheCapabilityUnregistersAndTheRowIsUsedAgain) {
  const std::string t = token();
  const auto req = request(t, mailbox);
  const auto first = registered(req);
  ASSERT_TRUE(conn.execute("UPDATE registrations SET subscription_id = 'SUB-1', watermark = 'W' "
                           "WHERE id = ?",
                           {Value{first.registration_id}})
                  .ok());
  EXPECT_FALSE(unregistered(fresh_hash()).has_value()) << "a wrong capability ends nothing";
  EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", first.registration_id),
            "active");

  const auto gone = unregistered(req.new_hash);
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->secret_hash, req.new_hash) << "the hash the listener cache drops";
  EXPECT_EQ(gone->customer_id, customer);
  EXPECT_FALSE(gone->customer_public_id.empty());
  EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", first.registration_id),
            "deleted");
  EXPECT_FALSE(unregistered(req.new_hash).has_value()) << "already deleted";

  // Registered again (with the old capability, or none): a new capability on the same row.
  const auto back = registered(with(request(t, mailbox), req.new_hash));
  EXPECT_EQ(back.change, CapabilityChange::created);
  EXPECT_EQ(back.registration_id, first.registration_id);
  EXPECT_NE(hash_hex(back.registration_id), hex_encode(req.new_hash))
      << "a new URL: Exchange's old subscription stays dead";
  EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", back.registration_id), "active");
  EXPECT_EQ(column("SELECT COALESCE(subscription_id, '') FROM registrations WHERE id = ?",
                   back.registration_id),
            "");
}

TEST_F(RegistrationsStoreTest, QuotasPerDeviceAndPerCustomerRefuseNewRegistrationsOnly) {
  const std::string t = token();
  auto first = request(t, mailbox);
  first.max_per_device = 2;
  ASSERT_EQ(registered(first).change, CapabilityChange::created);
  auto second = request(t, random_bytes(32));
  second.max_per_device = 2;
  ASSERT_EQ(registered(second).change, CapabilityChange::created);
  auto third = request(t, random_bytes(32));
  third.max_per_device = 2;
  EXPECT_EQ(registered(third).change, CapabilityChange::quota_device);
  EXPECT_EQ(count("SELECT COUNT(*) FROM mailboxes"), 2) << "nothing written for a refusal";
  // A refresh or a replacement of an existing pair is not a new registration.
  auto refresh = with(request(t, mailbox), first.new_hash);
  refresh.max_per_device = 2;
  EXPECT_EQ(registered(refresh).change, CapabilityChange::unchanged);
  auto replace = request(t, mailbox);
  replace.max_per_device = 2;
  EXPECT_EQ(registered(replace).change, CapabilityChange::replaced);
  // Ending one makes room.
  ASSERT_TRUE(unregistered(second.new_hash).has_value());
  EXPECT_EQ(registered(third).change, CapabilityChange::created);

  // The customer's quota counts its active registrations on every device.
  auto other_device = request(token(), random_bytes(32));
  other_device.max_per_customer = 2;
  EXPECT_EQ(registered(other_device).change, CapabilityChange::quota_customer);
  other_device.max_per_customer = 3;
  EXPECT_EQ(registered(other_device).change, CapabilityChange::created);
}

TEST_F(RegistrationsStoreTest, RegistrationsExchangeNeverCalledEndAndFreeTheQuota) {
  // Anyone with the app's key can create registrations; those no subscription ever confirms
  // must not hold the customer's quota for ever.
  auto made = [&](std::uint64_t max_per_customer) {
    auto r = request(token(), random_bytes(32));
    r.max_per_customer = max_per_customer;
    return registered(r);
  };
  const auto old_silent = made(4);
  const auto old_heard = made(4);
  const auto old_silent_2 = made(4);
  const auto recent = made(4);
  ASSERT_EQ(made(4).change, CapabilityChange::quota_customer);
  auto age = [&](std::int64_t id, int hours, bool heard) {
    ASSERT_TRUE(conn.execute("UPDATE registrations SET created_at = UTC_TIMESTAMP(6) - INTERVAL ? "
                             "HOUR, last_heard_at = IF(?, UTC_TIMESTAMP(6) - INTERVAL ? HOUR, "
                             "NULL) WHERE id = ?",
                             {Value{std::int64_t{hours}}, Value{std::int64_t{heard ? 1 : 0}},
                              Value{std::int64_t{hours}}, Value{id}})
                    .ok());
  };
  age(old_silent.registration_id, 30, false);
  age(old_silent_2.registration_id, 30, false);
  age(old_heard.registration_id, 30, true);  // heard once, long ago: silent, not unconfirmed
  age(recent.registration_id, 20, false);    // within 24 h + 2 x 30 min

  // At most `limit` a call; the next call takes the rest; nothing else ends.
  auto first = expire_unconfirmed_registrations(conn, std::chrono::hours(24), 1);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(*first, 1u);
  auto second = expire_unconfirmed_registrations(conn, std::chrono::hours(24), 1000);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 1u);
  auto third = expire_unconfirmed_registrations(conn, std::chrono::hours(24), 1000);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(*third, 0u);
  for (const auto* r : {&old_silent, &old_silent_2}) {
    EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", r->registration_id),
              "deleted");
  }
  for (const auto* r : {&old_heard, &recent}) {
    EXPECT_EQ(column("SELECT state FROM registrations WHERE id = ?", r->registration_id), "active");
  }
  // Their places are free again.
  EXPECT_EQ(made(4).change, CapabilityChange::created);
  EXPECT_EQ(made(4).change, CapabilityChange::created);
  EXPECT_EQ(made(4).change, CapabilityChange::quota_customer);
}

TEST_F(RegistrationsStoreTest, AnUnregisteredDeviceComesBackOnlyAfterApnsTime) {
  const std::string t = token();
  const auto req = request(t, mailbox);
  const auto first = registered(req);
  // APNs said 410 Unregistered a minute ago: the app registering now has a fresh token.
  ASSERT_TRUE(conn.execute("UPDATE devices SET state = 'unregistered', unregistered_at = "
                           "UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE WHERE id = ?",
                           {Value{first.device_id}})
                  .ok());
  const auto back = registered(with(request(t, mailbox), req.new_hash));
  EXPECT_EQ(back.change, CapabilityChange::unchanged);
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
  const auto refused = registered(request(t, random_bytes(32)));
  EXPECT_EQ(refused.change, CapabilityChange::device_unregistered);
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
  EXPECT_EQ(refused.change, CapabilityChange::device_invalid);
  EXPECT_EQ(refused.device_note, "BadDeviceToken");
  EXPECT_EQ(column("SELECT state FROM devices WHERE id = ?", first.device_id), "invalid");
  // The usual cause is the wrong environment: the same token in the other one is accepted.
  EXPECT_EQ(registered(request(t, mailbox, "development")).change, CapabilityChange::created);
}

TEST_F(RegistrationsStoreTest, AMoveByCapabilityKeepsTheUrlAndBinding) {
  const std::string old_token = token();
  const auto req = request(old_token, mailbox);
  const auto first = registered(req);
  ASSERT_TRUE(conn.execute("UPDATE registrations SET subscription_id = 'SUB-1', watermark = 'W' "
                           "WHERE id = ?",
                           {Value{first.registration_id}})
                  .ok());
  const std::string new_token = token();
  EXPECT_EQ(moved(fresh_hash(), new_token).change, MoveChange::not_found)
      << "the token alone moves nothing: the capability does";
  const auto done = moved(req.new_hash, new_token);
  EXPECT_EQ(done.change, MoveChange::moved);
  EXPECT_EQ(done.customer_id, customer);
  EXPECT_TRUE(done.retired_secret_hashes.empty());
  EXPECT_EQ(column("SELECT d.token_hex FROM registrations r JOIN devices d ON d.id = r.device_id "
                   "WHERE r.id = ?",
                   first.registration_id),
            new_token);
  EXPECT_EQ(column("SELECT subscription_id FROM registrations WHERE id = ?", first.registration_id),
            "SUB-1");
  EXPECT_EQ(hash_hex(first.registration_id), hex_encode(req.new_hash));
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);
  // Sent again (the app retries): nothing to do.
  EXPECT_EQ(moved(req.new_hash, new_token).change, MoveChange::unchanged);
}

TEST_F(RegistrationsStoreTest, AMoveOntoATokenThatHasTheMailboxEndsThatRegistration) {
  const std::string old_token = token(), new_token = token();
  const auto old_req = request(old_token, mailbox);
  const auto old_reg = registered(old_req);
  const auto new_req = request(new_token, mailbox);
  const auto new_reg = registered(new_req);
  ASSERT_TRUE(
      conn.execute("INSERT INTO superseded_subscriptions (registration_id, subscription_id) "
                   "VALUES (?, 'OLD')",
                   {Value{new_reg.registration_id}})
          .ok());
  const auto done = moved(old_req.new_hash, new_token);
  EXPECT_EQ(done.change, MoveChange::moved);
  ASSERT_EQ(done.retired_secret_hashes.size(), 1u);
  EXPECT_EQ(done.retired_secret_hashes[0], new_req.new_hash);
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations WHERE id = " +
                  std::to_string(new_reg.registration_id)),
            0)
      << "the presented registration wins; the other row goes for good";
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);
  EXPECT_EQ(hash_hex(old_reg.registration_id), hex_encode(old_req.new_hash));
}

TEST_F(RegistrationsStoreTest, AMoveToARefusedTokenChangesNothing) {
  const auto req = request(token(), mailbox);
  const auto first = registered(req);
  const std::string bad = token();
  ASSERT_TRUE(registered(request(bad, random_bytes(32))).change == CapabilityChange::created);
  ASSERT_TRUE(conn.execute("UPDATE devices SET state = 'invalid', invalid_reason = "
                           "'BadDeviceToken' WHERE token_hex = ?",
                           {Value{bad}})
                  .ok());
  const auto refused = moved(req.new_hash, bad);
  EXPECT_EQ(refused.change, MoveChange::device_invalid);
  EXPECT_EQ(column("SELECT device_id FROM registrations WHERE id = ?", first.registration_id),
            std::to_string(first.device_id));
}

TEST_F(RegistrationsStoreTest, AuditRowsHoldNoAddressAndNoFullToken) {
  const std::string t = token();
  const auto req = request(t, mailbox);
  registered(req);
  ASSERT_TRUE(unregistered(req.new_hash).has_value());
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

TEST_F(RegistrationsStoreTest, ConcurrentFirstRegistrationsEndWithOneRowAndOneCapability) {
  const std::string t = token();
  constexpr int kThreads = 6;
  std::vector<CapabilityRegistration> requests;
  for (int i = 0; i < kThreads; ++i) requests.push_back(request(t, mailbox));
  std::vector<std::optional<CapabilityChange>> changes(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      Connection c(db.options());
      if (auto st = c.connect(); !st) {
        errors[i] = st.error().message;
        return;
      }
      auto r = register_with_capability(c, requests[i], actor);
      if (r) {
        changes[i] = r->change;
      } else {
        errors[i] = r.error().message;
      }
    });
  }
  for (auto& th : threads) th.join();
  int created = 0, replaced = 0;
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_TRUE(errors[i].empty()) << errors[i];
    created += changes[i] == CapabilityChange::created;
    replaced += changes[i] == CapabilityChange::replaced;
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(replaced, kThreads - 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM devices"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM mailboxes"), 1);
  // The capability that holds is one of those handed out.
  const std::string held = hash_hex(count("SELECT id FROM registrations"));
  int holders = 0;
  for (const auto& r : requests) holders += hex_encode(r.new_hash) == held;
  EXPECT_EQ(holders, 1);
}

}  // namespace
}  // namespace mp::store
