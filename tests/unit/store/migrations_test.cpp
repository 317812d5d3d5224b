// Tests of migrate() and read_schema_state() against the real MariaDB: fresh, re-run, partial,
// concurrent, newer schema, changed migration text.
#include "store/migrations.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "test_env.hpp"

namespace mp::store {
namespace {

class MigrationsTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  void SetUp() override { ASSERT_TRUE(conn.connect().ok()); }

  std::vector<std::string> tables() {
    auto rows = conn.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
        "ORDER BY table_name");
    std::vector<std::string> out;
    for (const auto& r : *rows) out.push_back(r.text(0));
    return out;
  }
};

TEST_F(MigrationsTest, FreshDatabaseGetsEveryTable) {
  auto before = read_schema_state(conn);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->current_version, 0);
  EXPECT_EQ(before->pending.size(), shipped_migrations().size());
  EXPECT_FALSE(before->up_to_date());

  auto report = migrate(conn);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->from_version, 0);
  EXPECT_EQ(report->to_version, latest_schema_version());
  EXPECT_EQ(report->applied.size(), shipped_migrations().size());
  EXPECT_EQ(tables(), (std::vector<std::string>{"audit_log", "credentials", "customers", "devices",
                                                "instances", "mailboxes", "outbox",
                                                "portal_invites", "registrations",
                                                "schema_migrations", "superseded_subscriptions"}));
  auto after = read_schema_state(conn);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->up_to_date());
  EXPECT_EQ(after->current_version, latest_schema_version());
  EXPECT_EQ(after->applied.size(), shipped_migrations().size());
}

TEST_F(MigrationsTest, ReRunIsANoOp) {
  ASSERT_TRUE(migrate(conn).ok());
  auto again = migrate(conn);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->applied.empty());
  EXPECT_EQ(again->from_version, latest_schema_version());
  auto count = conn.query("SELECT COUNT(*) FROM schema_migrations");
  EXPECT_EQ((*count)[0].i64(0), static_cast<std::int64_t>(shipped_migrations().size()));
}

TEST_F(MigrationsTest, InterruptedMigrationCompletesOnTheNextRun) {
  // As if the process died after the first statements of migration 1 (DDL commits at once).
  const auto statements = split_sql_statements(shipped_migrations().front().sql);
  ASSERT_GT(statements.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) ASSERT_TRUE(conn.execute(statements[i]).ok());
  auto report = migrate(conn);
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_EQ(report->to_version, latest_schema_version());
  EXPECT_TRUE(read_schema_state(conn)->up_to_date());
}

TEST_F(MigrationsTest, EveryShippedStatementIsReRunnable) {
  for (const auto& m : shipped_migrations()) {
    for (const auto& s : split_sql_statements(m.sql)) {
      ASSERT_TRUE(conn.execute(s).ok()) << m.name;
      ASSERT_TRUE(conn.execute(s).ok()) << "not re-runnable in " << m.name << ": " << s;
    }
  }
}

TEST_F(MigrationsTest, QueuedOutboxRowsOfAnEarlierVersionBecomePendingBadges) {
  // A region upgraded while badges wait: migration 9 moves them onto their devices'
  // registrations (same owner, due now, waiting since the oldest row) and keeps dead letters.
  std::vector<Migration> before(shipped_migrations().begin(), shipped_migrations().begin() + 8);
  ASSERT_EQ(before.back().version, 8);
  ASSERT_TRUE(migrate(conn, before).ok());
  const auto customer = test::insert_test_customer(conn, "upgrade-test");
  const auto phone = test::insert_test_registration(conn, customer, "a@example.com");
  const auto quiet = test::insert_test_registration(conn, customer, "b@example.com");
  for (const char* state : {"queued", "queued", "dead"}) {
    ASSERT_TRUE(conn.execute("INSERT INTO outbox (owner, customer_id, device_id, mailbox_id, "
                             "badge, state, next_attempt_at, expires_at, created_at) SELECT "
                             "'old-instance', customer_id, device_id, mailbox_id, 3, ?, "
                             "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) - INTERVAL 5 "
                             "MINUTE FROM registrations WHERE id = ?",
                             {Value{std::string(state)}, Value{phone.id}})
                    .ok());
  }
  auto report = migrate(conn);
  ASSERT_TRUE(report.ok()) << report.error().message;
  auto rows = conn.query(
      "SELECT id, badge_owner, badge_due_at <= UTC_TIMESTAMP(6), badge_queued_at < "
      "UTC_TIMESTAMP(6) - INTERVAL 4 MINUTE, badge_version FROM registrations ORDER BY id");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].i64(0), phone.id);
  EXPECT_EQ((*rows)[0].text(1), "old-instance");
  EXPECT_EQ((*rows)[0].i64(2), 1);
  EXPECT_EQ((*rows)[0].i64(3), 1);
  EXPECT_EQ((*rows)[0].i64(4), 1) << "two rows of one device: one mark";
  EXPECT_EQ((*rows)[1].i64(0), quiet.id);
  EXPECT_TRUE((*rows)[1].is_null(1)) << "nothing waited for this device";
  auto left = conn.query("SELECT state, COUNT(*) FROM outbox GROUP BY state");
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].text(0), "dead");
}

TEST_F(MigrationsTest, RefusesASchemaNewerThanTheBinary) {
  ASSERT_TRUE(migrate(conn).ok());
  ASSERT_TRUE(conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES "
                           "(999, 'from_the_future', REPEAT('0', 64))")
                  .ok());
  auto report = migrate(conn);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().code, Errc::conflict);
  EXPECT_NE(report.error().message.find("version 999"), std::string::npos)
      << report.error().message;
  auto state = read_schema_state(conn);
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE(state->newer_than_binary());
  EXPECT_FALSE(state->up_to_date());
}

TEST_F(MigrationsTest, RefusesAnAppliedMigrationWhoseTextChanged) {
  ASSERT_TRUE(migrate(conn).ok());
  ASSERT_TRUE(
      conn.execute("UPDATE schema_migrations SET checksum = REPEAT('f', 64) WHERE version = 1")
          .ok());
  auto report = migrate(conn);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().code, Errc::conflict);
  EXPECT_NE(report.error().message.find("different SQL"), std::string::npos);
  auto state = read_schema_state(conn);
  ASSERT_EQ(state->problems.size(), 1u);
}

TEST_F(MigrationsTest, AFailingStatementIsNamedAndNothingIsRecorded) {
  std::vector<Migration> broken = shipped_migrations();
  broken.push_back({latest_schema_version() + 1, "broken",
                    "CREATE TABLE IF NOT EXISTS ok_table (x INT);\n"
                    "ALTER TABLE no_such_table ADD COLUMN y INT;",
                    std::string(64, 'a')});
  auto report = migrate(conn, broken);
  ASSERT_FALSE(report.ok());
  EXPECT_NE(report.error().message.find("failed at statement 2 of 2"), std::string::npos)
      << report.error().message;
  auto state = read_schema_state(conn);
  EXPECT_EQ(state->current_version, latest_schema_version());  // the shipped ones went in
}

TEST_F(MigrationsTest, ConcurrentMigrationsApplyEachVersionOnce) {
  Connection other(db.options());
  ASSERT_TRUE(other.connect().ok());
  Result<MigrateReport> a = make_error(Errc::internal, "not run");
  Result<MigrateReport> b = make_error(Errc::internal, "not run");
  std::thread t1([&] { a = migrate(conn); });
  std::thread t2([&] { b = migrate(other); });
  t1.join();
  t2.join();
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(a->applied.size() + b->applied.size(), shipped_migrations().size());
}

}  // namespace
}  // namespace mp::store
