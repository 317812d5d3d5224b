// Tests of the portal's tables on the real MariaDB: invites used once, customers created with
// their credential in one transaction, renewals retiring the old credential, state changes,
// expiry warnings claimed once across instances, key rotation's conditional rewrite.
#include "store/customers.hpp"

#include <gtest/gtest.h>

#include "store/migrations.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

class CustomersStoreTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  Actor actor{"test", "192.0.2.7"};

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
  }

  static NewCredential credential(std::string topic, std::string not_after) {
    NewCredential k;
    k.topic = std::move(topic);
    k.production = true;
    k.subject = "UID=" + k.topic;
    k.issuer = "CN=test";
    k.serial_hex = "01";
    k.fingerprint_sha256 = random_bytes(32);
    k.not_before = "2026-01-01 00:00:00";
    k.not_after = std::move(not_after);
    k.kek_id = "kek-a";
    k.wrapped_data_key = std::string("\x01wrapped\x00key", 12);
    k.sealed_material = std::string("\x01sealed\x00\xff", 9);
    return k;
  }

  NewCustomer customer(std::string id) {
    NewCustomer c;
    c.customer_id = std::move(id);
    c.display_name = "Ex'ample; DROP TABLE customers; -- ünïcode";
    c.app_id = "com.example.mail";
    c.registration_key_hash = random_bytes(48);
    c.admin_key_hash = random_bytes(48);
    return c;
  }

  std::string one(const std::string& sql, std::int64_t id) {
    auto rows = conn.query(sql, {Value{id}});
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : "";
  }
};

TEST_F(CustomersStoreTest, AnInviteCreatesOneCustomerOnlyOnce) {
  const Bytes code = random_bytes(48);
  ASSERT_TRUE(create_invite(conn, code, std::chrono::hours(24), actor, "for Example").ok());
  auto c = customer("t-" + hex_encode(random_bytes(6)));
  c.invite_code_hash = code;
  auto created =
      create_customer(conn, c, credential("com.example.mail", "2027-06-01 00:00:00"), actor);
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(one("SELECT customer_id FROM portal_invites WHERE id = (SELECT MAX(id) FROM "
                "portal_invites WHERE customer_id = ?)",
                created->id),
            std::to_string(created->id));

  // Stored verbatim, whatever the text holds.
  auto found = find_customer(conn, c.customer_id);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->display_name, c.display_name);
  EXPECT_EQ((*found)->app_id, "com.example.mail");
  auto by_key = find_customer_by_admin_key(conn, c.admin_key_hash);
  ASSERT_TRUE(by_key.ok() && by_key->has_value());
  EXPECT_EQ((*by_key)->id, created->id);
  auto none = find_customer_by_admin_key(conn, random_bytes(48));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  // Used: the second customer is refused and nothing of it is stored.
  auto again = customer("t-" + hex_encode(random_bytes(6)));
  again.invite_code_hash = code;
  auto refused =
      create_customer(conn, again, credential("com.example.mail", "2027-06-01 00:00:00"), actor);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::not_found);
  EXPECT_NE(refused.error().message.find("invite code is not valid"), std::string::npos);
  auto absent = find_customer(conn, again.customer_id);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());

  // The audit row names the customer and the certificate's facts, no key material.
  auto audit = tail_audit(conn, 5);
  ASSERT_TRUE(audit.ok());
  ASSERT_FALSE(audit->empty());
  EXPECT_EQ(audit->front().action, "customer.create");
  EXPECT_EQ(audit->front().customer, c.customer_id);
  EXPECT_EQ(audit->front().source_address, "192.0.2.7");
  EXPECT_NE(audit->front().detail.find("com.example.mail"), std::string::npos);
  EXPECT_EQ(audit->front().detail.find("sealed"), std::string::npos);
  EXPECT_EQ(audit->front().detail.find("wrapped"), std::string::npos);
}

TEST_F(CustomersStoreTest, AnExpiredOrUnknownInviteIsRefused) {
  const Bytes code = random_bytes(48);
  ASSERT_TRUE(create_invite(conn, code, std::chrono::seconds(1), actor, "").ok());
  ASSERT_TRUE(conn.execute("UPDATE portal_invites SET expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 "
                           "SECOND WHERE code_hash = ?",
                           {Value{Blob{std::string(code.begin(), code.end())}}})
                  .ok());
  for (const Bytes& tried : {code, random_bytes(48)}) {
    auto c = customer("t-" + hex_encode(random_bytes(6)));
    c.invite_code_hash = tried;
    auto r = create_customer(conn, c, credential("com.example.mail", "2027-06-01 00:00:00"), actor);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::not_found);
  }
}

TEST_F(CustomersStoreTest, RenewalRetiresTheOldCredentialAndKeepsIt) {
  auto c = customer("t-" + hex_encode(random_bytes(6)));
  auto created =
      create_customer(conn, c, credential("com.example.mail", "2026-12-01 00:00:00"), actor);
  ASSERT_TRUE(created.ok()) << created.error().message;
  auto renewed = replace_credential(conn, created->id,
                                    credential("com.example.mail", "2027-12-01 00:00:00"), actor);
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  auto all = customer_credentials(conn, created->id);
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].id, *renewed);
  EXPECT_EQ((*all)[0].state, "active");
  EXPECT_EQ((*all)[0].not_after, "2027-12-01T00:00:00Z");
  EXPECT_TRUE((*all)[0].production);
  EXPECT_FALSE((*all)[0].development);
  EXPECT_EQ((*all)[1].state, "retired");

  auto sealed = active_credentials_sealed(conn);
  ASSERT_TRUE(sealed.ok());
  const auto mine = std::find_if(sealed->begin(), sealed->end(),
                                 [&](const auto& k) { return k.customer_id == c.customer_id; });
  ASSERT_NE(mine, sealed->end());
  EXPECT_EQ(mine->id, *renewed);
  EXPECT_EQ(mine->sealed_material, std::string("\x01sealed\x00\xff", 9)) << "bytes verbatim";
  EXPECT_EQ(mine->wrapped_data_key, std::string("\x01wrapped\x00key", 12));
  EXPECT_EQ(std::count_if(sealed->begin(), sealed->end(),
                          [&](const auto& k) { return k.customer_id == c.customer_id; }),
            1);
}

TEST_F(CustomersStoreTest, StatesChangeAndDeletedIsFinal) {
  auto created = create_customer(conn, customer("t-" + hex_encode(random_bytes(6))),
                                 credential("com.example.mail", "2027-01-01 00:00:00"), actor);
  ASSERT_TRUE(created.ok());
  EXPECT_TRUE(set_customer_state(conn, created->id, "disabled", actor).value());
  EXPECT_FALSE(set_customer_state(conn, created->id, "disabled", actor).value()) << "no change";
  EXPECT_TRUE(set_customer_state(conn, created->id, "active", actor).value());
  EXPECT_TRUE(set_customer_state(conn, created->id, "deleted", actor).value());
  EXPECT_FALSE(set_customer_state(conn, created->id, "active", actor).value());
  EXPECT_EQ(one("SELECT state FROM customers WHERE id = ?", created->id), "deleted");
  EXPECT_FALSE(set_customer_state(conn, created->id, "gone", actor).ok());
  auto renew = replace_credential(conn, created->id,
                                  credential("com.example.mail", "2028-01-01 00:00:00"), actor);
  ASSERT_FALSE(renew.ok());
  EXPECT_EQ(renew.error().code, Errc::not_found);
}

TEST_F(CustomersStoreTest, ExpiryWarningsAreClaimedOnceEachAndExpiredIsMarked) {
  auto created = create_customer(conn, customer("t-" + hex_encode(random_bytes(6))),
                                 credential("com.example.mail", "2020-01-01 00:00:00"), actor);
  ASSERT_TRUE(created.ok());
  const auto id = created->credential_id;
  EXPECT_TRUE(claim_expiry_warning(conn, id, 30).value());
  EXPECT_FALSE(claim_expiry_warning(conn, id, 30).value()) << "another instance sent it";
  EXPECT_TRUE(claim_expiry_warning(conn, id, 7).value());
  EXPECT_FALSE(claim_expiry_warning(conn, id, 14).value()) << "a lower one was sent already";
  EXPECT_TRUE(claim_expiry_warning(conn, id, 0).value());

  auto expiring = list_credentials(conn, std::int64_t{0});
  ASSERT_TRUE(expiring.ok());
  const auto it =
      std::find_if(expiring->begin(), expiring->end(), [&](const auto& k) { return k.id == id; });
  ASSERT_NE(it, expiring->end());
  EXPECT_LT(it->seconds_left, 0);
  EXPECT_EQ(it->expiry_warned_days, std::optional<int>(0));

  EXPECT_TRUE(mark_credential_expired(conn, id).value());
  EXPECT_FALSE(mark_credential_expired(conn, id).value());
  EXPECT_EQ(one("SELECT state FROM credentials WHERE id = ?", id), "expired");

  // One that has not ended is never marked.
  auto later = replace_credential(conn, created->id,
                                  credential("com.example.mail", "2099-01-01 00:00:00"), actor);
  ASSERT_TRUE(later.ok());
  EXPECT_FALSE(mark_credential_expired(conn, *later).value());
}

TEST_F(CustomersStoreTest, RewrapOnlyReplacesTheKeyItRead) {
  auto created = create_customer(conn, customer("t-" + hex_encode(random_bytes(6))),
                                 credential("com.example.mail", "2027-01-01 00:00:00"), actor);
  ASSERT_TRUE(created.ok());
  const WrappedKey now{created->credential_id, "kek-b", "new-wrapping"};
  EXPECT_FALSE(update_wrapped_key(conn, created->credential_id, "kek-x", now).value());
  EXPECT_TRUE(update_wrapped_key(conn, created->credential_id, "kek-a", now).value());
  EXPECT_FALSE(update_wrapped_key(conn, created->credential_id, "kek-a", now).value());
  auto keys = all_wrapped_keys(conn);
  ASSERT_TRUE(keys.ok());
  const auto it = std::find_if(keys->begin(), keys->end(), [&](const auto& k) {
    return k.credential_id == created->credential_id;
  });
  ASSERT_NE(it, keys->end());
  EXPECT_EQ(it->kek_id, "kek-b");
  EXPECT_EQ(it->wrapped_data_key, "new-wrapping");
}

}  // namespace
}  // namespace mp::store
