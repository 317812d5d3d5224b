// Tests of the operators' queries (store/admin) on the real MariaDB: device lookup by prefix,
// the token and environment faults doctor reports, the outbox breakdown and the retry of dead
// letters with its filters, limit and audit row.
#include "store/admin.hpp"

#include <gtest/gtest.h>

#include "common/crypto.hpp"
#include "store/migrations.hpp"
#include "store/registrations.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

using namespace std::chrono_literals;

class AdminStoreTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  std::int64_t customer = 0;
  std::string customer_id;

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
    customer_id = "test-" + hex_encode(random_bytes(4));
    customer = test::insert_test_customer(conn, customer_id);
  }

  std::int64_t scalar(const std::string& sql) {
    auto rows = conn.query(sql);
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : -1;
  }

  std::int64_t device(std::int64_t owner, const std::string& token,
                      const std::string& environment = "production") {
    auto n =
        conn.execute("INSERT INTO devices (customer_id, environment, token_hex) VALUES (?, ?, ?)",
                     {Value{owner}, Value{environment}, Value{token}});
    EXPECT_TRUE(n.ok());
    return scalar("SELECT MAX(id) FROM devices");
  }

  // An active credential row serving `environments` (no usable material: these queries never
  // open it).
  void credential(std::int64_t owner, const std::string& environments) {
    auto n = conn.execute(
        "INSERT INTO credentials (customer_id, topic, environments, subject, issuer, serial_hex, "
        "fingerprint_sha256, not_before, not_after, kek_id, wrapped_data_key, sealed_material, "
        "state) VALUES (?, 'com.example.mail', ?, 's', 'i', '01', RANDOM_BYTES(32), "
        "UTC_TIMESTAMP() - INTERVAL 1 DAY, UTC_TIMESTAMP() + INTERVAL 300 DAY, 'k', 'w', 'm', "
        "'active')",
        {Value{owner}, Value{environments}});
    ASSERT_TRUE(n.ok()) << n.error().message;
  }

  void dead_letter(const test::TestRegistration& r, const std::string& reason) {
    auto n = conn.execute(
        "INSERT INTO outbox (owner, customer_id, device_id, mailbox_id, badge, state, attempts, "
        "next_attempt_at, expires_at, last_error) SELECT 'i', customer_id, device_id, mailbox_id, "
        "1, 'dead', 12, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), ? FROM registrations WHERE id = ?",
        {Value{reason}, Value{r.id}});
    ASSERT_TRUE(n.ok()) << n.error().message;
  }
};

TEST_F(AdminStoreTest, DevicesAreFoundByAHexPrefixOnly) {
  device(customer, "abcd" + std::string(60, '0'));
  device(customer, "abce" + std::string(60, '0'));
  const auto other = test::insert_test_customer(conn, "other-" + hex_encode(random_bytes(4)));
  device(other, "abcd" + std::string(60, '1'));

  auto found = find_devices(conn, customer, "abcd", 10);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ(found->front().token_hex, "abcd" + std::string(60, '0'));
  EXPECT_EQ(found->front().state, "active");
  auto both = find_devices(conn, customer, "abc0", 10);
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->empty());
  auto limited = find_devices(conn, customer, "ab00", 1);
  ASSERT_TRUE(limited.ok());

  // Too short, not hex, uppercase or a LIKE wildcard: refused before any query.
  for (const char* bad : {"abc", "ab%d", "ab_d", "ABCD", "zzzz", ""}) {
    auto refused = find_devices(conn, customer, bad, 10);
    ASSERT_FALSE(refused.ok()) << bad;
    EXPECT_EQ(refused.error().code, Errc::invalid_argument) << bad;
  }
}

TEST_F(AdminStoreTest, MalformedTokensAreListedAndGoodOnesAreNot) {
  device(customer, std::string(64, 'a'));                 // good
  device(customer, "");                                   // empty
  device(customer, "q83vEjRWeJA=");                       // base64
  device(customer, std::string(64, 'A'), "development");  // uppercase hex
  device(customer, std::string(63, 'b'));                 // odd length
  const auto gone = device(customer, "not a token");      // not active: not listed
  ASSERT_TRUE(
      conn.execute("UPDATE devices SET state = 'invalid' WHERE id = ?", {Value{gone}}).ok());

  auto bad = devices_with_malformed_tokens(conn, 100);
  ASSERT_TRUE(bad.ok());
  std::vector<std::string> tokens;
  for (const auto& d : *bad) {
    tokens.push_back(d.token);
    EXPECT_EQ(d.customer_id, customer_id);
  }
  EXPECT_EQ(tokens, (std::vector<std::string>{"", "q83vEjRWeJA=", std::string(64, 'A'),
                                              std::string(63, 'b')}));
  auto one = devices_with_malformed_tokens(conn, 1);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 1u);
}

TEST_F(AdminStoreTest, DevicesOfAnEnvironmentNoActiveCredentialServesAreMismatches) {
  device(customer, std::string(64, '1'), "production");
  device(customer, std::string(64, '2'), "development");
  auto none = environment_mismatches(conn);
  ASSERT_TRUE(none.ok());
  ASSERT_EQ(none->size(), 2u);  // no credential at all
  EXPECT_EQ(none->front().credential_environments, "");

  credential(customer, "development");
  auto one = environment_mismatches(conn);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ(one->front().customer_id, customer_id);
  EXPECT_EQ(one->front().environment, "production");
  EXPECT_EQ(one->front().credential_environments, "development");
  EXPECT_EQ(one->front().devices, 1);

  credential(customer, "development,production");
  auto served = environment_mismatches(conn);
  ASSERT_TRUE(served.ok());
  EXPECT_TRUE(served->empty());
}

TEST_F(AdminStoreTest, RetryDeadLettersHonoursReasonCustomerAndLimitAndAudits) {
  const auto a = test::insert_test_registration(conn, customer, "a@example.com");
  const auto b = test::insert_test_registration(conn, customer, "b@example.com");
  const auto other = test::insert_test_customer(conn, "other-" + hex_encode(random_bytes(4)));
  const auto c = test::insert_test_registration(conn, other, "c@example.com");
  dead_letter(a, "TooManyAttempts");
  dead_letter(b, "TooManyAttempts");
  dead_letter(b, "Expired");
  dead_letter(c, "TooManyAttempts");

  auto breakdown = outbox_breakdown(conn, 30s);
  ASSERT_TRUE(breakdown.ok());
  EXPECT_EQ(breakdown->dead, 4);
  ASSERT_FALSE(breakdown->dead_reasons.empty());
  EXPECT_EQ(breakdown->dead_reasons.front().reason, "TooManyAttempts");
  EXPECT_EQ(breakdown->dead_reasons.front().dead, 3);

  RetryDeadFilter filter;
  filter.customer_row_id = customer;
  filter.reason = "TooManyAttempts";
  filter.limit = 1;
  auto first = retry_dead_letters(conn, filter, {"mailpushctl:test", ""});
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->requeued, 1u);
  filter.limit = 100;
  auto rest = retry_dead_letters(conn, filter, {"mailpushctl:test", ""});
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->requeued, 1u);
  // The other customer's and the Expired one stay dead.
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox WHERE state = 'dead'"), 2);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox WHERE state = 'dead' AND last_error = 'Expired'"),
            1);
  // Each requeued letter's device has a pending badge, due now, owned as the letter was.
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox"), 2) << "requeued letters leave the outbox";
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner = 'i' AND badge_attempts "
                   "= 0 AND badge_due_at <= UTC_TIMESTAMP(6) AND id IN (" +
                   std::to_string(a.id) + "," + std::to_string(b.id) + ")"),
            2);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL"), 2);
  breakdown = outbox_breakdown(conn, 30s);
  ASSERT_TRUE(breakdown.ok());
  EXPECT_EQ(breakdown->queued, 2);
  EXPECT_EQ(breakdown->dead, 2);
  ASSERT_EQ(breakdown->owners.size(), 1u);
  EXPECT_EQ(breakdown->owners[0].queued, 2);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'outbox.retry_dead' AND "
                   "customer_id = " +
                   std::to_string(customer)),
            2);
  // Nothing left to match: zero, still audited.
  auto none = retry_dead_letters(conn, filter, {"mailpushctl:test", ""});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->requeued, 0u);
  EXPECT_EQ(none->left_dead, 0u);
}

TEST_F(AdminStoreTest, CustomerDetailCountsWhatTheCustomerHas) {
  const auto r = test::insert_test_registration(conn, customer, "a@example.com");
  test::insert_test_registration(conn, customer, "b@example.com");
  dead_letter(r, "Expired");
  ASSERT_TRUE(conn.execute("UPDATE customers SET paused_reason = 'BadCertificate' WHERE id = ?",
                           {Value{customer}})
                  .ok());
  auto found = find_customer(conn, customer_id);
  ASSERT_TRUE(found.ok() && found->has_value());
  auto d = customer_detail(conn, **found);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->devices_active_production, 2);
  EXPECT_EQ(d->devices_active_development, 0);
  EXPECT_EQ(d->mailboxes, 2);
  EXPECT_EQ(d->registrations_active, 2);
  EXPECT_EQ(d->registrations_silent, 0);
  EXPECT_EQ(d->outbox_dead, 1);
  EXPECT_EQ(d->outbox_queued, 0);
  EXPECT_EQ(d->paused_reason, "BadCertificate");
  EXPECT_EQ(d->last_callback_at, "");
}

}  // namespace
}  // namespace mp::store
