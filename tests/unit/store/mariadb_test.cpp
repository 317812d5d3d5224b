// Tests of the Connector/C wrappers against the suite's real MariaDB server.
#include "store/mariadb.hpp"

#include <gtest/gtest.h>

#include "test_env.hpp"

namespace mp::store {
namespace {

class MariadbTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  void SetUp() override { ASSERT_TRUE(conn.connect().ok()); }
};

TEST_F(MariadbTest, PreparedStatementsRoundTripEveryValueKind) {
  ASSERT_TRUE(
      conn.execute("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(100), data MEDIUMBLOB, "
                   "n BIGINT NULL) CHARSET utf8mb4")
          .ok());
  std::string binary("\x00\x01\xff\xfe\x00", 5);
  std::string big(100000, 'x');
  auto inserted =
      conn.execute("INSERT INTO t VALUES (?, ?, ?, ?), (?, ?, ?, ?)",
                   {Value{std::int64_t{1}}, Value{std::string("Zoë 📬")}, Value{Blob{binary}},
                    Value{Null{}}, Value{std::int64_t{2}}, Value{std::string("big")},
                    Value{Blob{big}}, Value{std::int64_t{-9000000000}}});
  ASSERT_TRUE(inserted.ok()) << inserted.error().message;
  EXPECT_EQ(*inserted, 2u);

  auto rows = conn.query("SELECT id, name, data, n FROM t WHERE id >= ? ORDER BY id",
                         {Value{std::int64_t{0}}});
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 2u);
  const Row& a = (*rows)[0];
  EXPECT_EQ(a.i64(0), 1);
  EXPECT_EQ(a.text(1), "Zoë 📬");
  EXPECT_EQ(a.text(2), binary);
  EXPECT_TRUE(a.is_null(3));
  EXPECT_FALSE(a.opt_i64(3).has_value());
  const Row& b = (*rows)[1];
  EXPECT_EQ(b.text(2).size(), big.size());
  EXPECT_EQ(b.i64(3), -9000000000);
}

TEST_F(MariadbTest, ReusesPreparedStatementsAndReportsInsertIds) {
  ASSERT_TRUE(conn.execute("CREATE TABLE s (id BIGINT AUTO_INCREMENT PRIMARY KEY, v INT)").ok());
  auto stmt = conn.prepare("INSERT INTO s (v) VALUES (?)");
  ASSERT_TRUE(stmt.ok());
  auto again = conn.prepare("INSERT INTO s (v) VALUES (?)");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*stmt, *again);
  const Value v[] = {Value{std::int64_t{7}}};
  ASSERT_TRUE((*stmt)->execute(v).ok());
  const auto first = (*stmt)->last_insert_id();
  ASSERT_TRUE((*stmt)->execute(v).ok());
  // 1 on a single server; a Galera node steps by the cluster's size (wsrep_auto_increment_control).
  auto step = conn.query("SELECT @@auto_increment_increment");
  ASSERT_TRUE(step.ok()) << step.error().message;
  EXPECT_EQ((*stmt)->last_insert_id(), first + static_cast<std::uint64_t>((*step)[0].i64(0)));
}

TEST_F(MariadbTest, ClassifiesErrors) {
  ASSERT_TRUE(conn.execute("CREATE TABLE u (k INT PRIMARY KEY)").ok());
  ASSERT_TRUE(conn.execute("INSERT INTO u VALUES (?)", {Value{std::int64_t{1}}}).ok());
  auto dup = conn.execute("INSERT INTO u VALUES (?)", {Value{std::int64_t{1}}});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, Errc::conflict);
  EXPECT_NE(dup.error().message.find("Duplicate entry"), std::string::npos);

  auto wrong_count = conn.execute("INSERT INTO u VALUES (?)", {});
  ASSERT_FALSE(wrong_count.ok());
  EXPECT_EQ(wrong_count.error().code, Errc::internal);

  auto bad_sql = conn.query("SELECT * FROM no_such_table");
  ASSERT_FALSE(bad_sql.ok());
  EXPECT_NE(bad_sql.error().message.find("no_such_table"), std::string::npos);
  EXPECT_FALSE(conn.broken());
  EXPECT_TRUE(conn.ping().ok());
}

TEST_F(MariadbTest, SessionIsUtcStrictAndUtf8mb4) {
  auto rows = conn.query("SELECT @@session.time_zone, @@session.sql_mode, @@character_set_client");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ((*rows)[0].text(0), "+00:00");
  EXPECT_NE((*rows)[0].text(1).find("STRICT_ALL_TABLES"), std::string::npos);
  EXPECT_EQ((*rows)[0].text(2), "utf8mb4");
}

TEST_F(MariadbTest, TransactionsCommitAndRollBack) {
  ASSERT_TRUE(conn.execute("CREATE TABLE tx (k INT PRIMARY KEY) ENGINE=InnoDB").ok());
  ASSERT_TRUE(conn.begin().ok());
  ASSERT_TRUE(conn.execute("INSERT INTO tx VALUES (?)", {Value{std::int64_t{1}}}).ok());
  ASSERT_TRUE(conn.rollback().ok());
  ASSERT_TRUE(conn.begin().ok());
  ASSERT_TRUE(conn.execute("INSERT INTO tx VALUES (?)", {Value{std::int64_t{2}}}).ok());
  ASSERT_TRUE(conn.commit().ok());
  auto rows = conn.query("SELECT k FROM tx");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].i64(0), 2);
}

TEST_F(MariadbTest, BatchesRunInOneRoundTripAndStopAtTheFirstError) {
  ASSERT_TRUE(conn.execute("CREATE TABLE b (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL)").ok());
  auto counts = conn.execute_batch(
      "INSERT INTO b VALUES (1, 'a'), (2, 'b'); UPDATE b SET v = 'c' WHERE id IN (1, 2, 3); "
      "UPDATE b SET v = 'c' WHERE id = 1");
  ASSERT_TRUE(counts.ok()) << counts.error().message;
  // Matched rows (CLIENT_FOUND_ROWS): the last UPDATE changes nothing but matches one row.
  EXPECT_EQ(*counts, (std::vector<std::uint64_t>{2, 2, 1}));

  counts = conn.execute_batch(
      "UPDATE b SET v = 'd' WHERE id = 1; INSERT INTO b VALUES (1, 'x'); "
      "UPDATE b SET v = 'e' WHERE id = 2");
  ASSERT_FALSE(counts.ok());
  EXPECT_EQ(counts.error().code, Errc::conflict) << counts.error().message;
  auto rows = conn.query("SELECT v FROM b ORDER BY id");
  ASSERT_TRUE(rows.ok()) << "the connection is usable after a failed batch";
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].text(0), "d") << "statements before the failing one ran";
  EXPECT_EQ((*rows)[1].text(0), "c") << "statements after the failing one did not";
}

TEST_F(MariadbTest, QuotedLiteralsHoldAnyText) {
  ASSERT_TRUE(conn.execute("CREATE TABLE q (v VARCHAR(200) NOT NULL)").ok());
  const std::string hostile = "a'b\\c\";d;--\n' OR '1'='1\0x";
  ASSERT_TRUE(conn.execute_batch("INSERT INTO q VALUES (" + conn.quote(hostile) + ")").ok());
  auto rows = conn.query("SELECT v FROM q");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].text(0), hostile);
}

TEST(MariadbConnect, FailureNamesTheTargetButNeverThePassword) {
  auto o = test::shared_server_options();
  o.password = "definitely-wrong-password-1234";
  o.database = "mailpush_nonexistent";
  Connection c(o);
  auto st = c.connect();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_NE(st.error().message.find("Access denied"), std::string::npos) << st.error().message;
  EXPECT_NE(st.error().message.find(o.user + "@"), std::string::npos);
  EXPECT_EQ(st.error().message.find(o.password), std::string::npos);

  auto down = test::shared_server_options();
  down.port = test::free_tcp_port();
  Connection nobody(down);
  auto refused = nobody.connect();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::unavailable);
  EXPECT_NE(refused.error().message.find(std::to_string(down.port)), std::string::npos);
}

TEST(MariadbConnect, FailoverTakesTheFirstServerThatAnswers) {
  const auto shared = test::shared_server_options();
  auto o = shared;
  const std::uint16_t dead1 = test::free_tcp_port();
  const std::uint16_t dead2 = test::free_tcp_port();
  o.hosts = {{"127.0.0.1", dead1}, {shared.host, shared.port}, {"127.0.0.1", dead2}};
  Connection c(o);
  auto st = c.connect();
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ(c.server(), (ServerAddress{shared.host, shared.port}.describe()));
  auto port = c.query("SELECT @@port");
  ASSERT_TRUE(port.ok()) << port.error().message;
  EXPECT_EQ((*port)[0].i64(0), shared.port);
  // The failover list is what messages show, never the password.
  EXPECT_NE(o.describe().find("127.0.0.1:" + std::to_string(dead1) + ","), std::string::npos);
  EXPECT_NE(o.describe().find(":" + std::to_string(dead2) + " (database"), std::string::npos);
  EXPECT_EQ(o.describe().find(o.password), std::string::npos);
}

TEST(MariadbConnect, NoServerAnsweringNamesEachOne) {
  auto o = test::shared_server_options();
  const std::uint16_t dead1 = test::free_tcp_port();
  const std::uint16_t dead2 = test::free_tcp_port();
  o.hosts = {{"127.0.0.1", dead1}, {"127.0.0.1", dead2}};
  Connection c(o);
  auto st = c.connect();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::unavailable);
  const std::string& m = st.error().message;
  EXPECT_NE(m.find("unreachable: 127.0.0.1:" + std::to_string(dead1) + ": "), std::string::npos)
      << m;
  EXPECT_NE(m.find("; 127.0.0.1:" + std::to_string(dead2) + ": "), std::string::npos) << m;
  EXPECT_EQ(m.find(o.password), std::string::npos);
}

TEST(MariadbConnect, APlainServerCountsAsReady) {
  // The readiness probe (SHOW GLOBAL STATUS) runs on every connect; a server without Galera
  // has no wsrep_local_state and is used as it is.
  Connection c(test::shared_server_options());
  auto st = c.connect();
  ASSERT_TRUE(st.ok()) << st.error().message;
}

TEST_F(MariadbTest, StatementCacheIsBoundedAndKeepsTheRecentlyUsed) {
  auto options = db.options();
  options.statement_cache_size = 4;
  Connection small(options);
  ASSERT_TRUE(small.connect().ok());
  const auto before = statement_stats();
  const auto select = [&](int n) {
    auto rows = small.query("SELECT ? + " + std::to_string(n), {Value{std::int64_t{1}}});
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? (*rows)[0].i64(0) : -1;
  };
  for (int n = 0; n < 4; ++n) EXPECT_EQ(select(n), n + 1);
  auto kept = small.prepare("SELECT ? + 0");  // now the most recently used
  ASSERT_TRUE(kept.ok());
  for (int n = 10; n < 13; ++n) EXPECT_EQ(select(n), n + 1);
  EXPECT_EQ(small.cached_statements(), 4u);
  EXPECT_EQ(statement_stats().evicted - before.evicted, 3u);
  auto again = small.prepare("SELECT ? + 0");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *kept) << "the recently used statement stayed cached";
  for (int n = 20; n < 120; ++n) EXPECT_EQ(select(n), n + 1);
  EXPECT_EQ(small.cached_statements(), 4u);
  EXPECT_EQ(statement_stats().open - before.open, 4) << "evicted statements are closed";
  small.close();
  EXPECT_EQ(statement_stats().open, before.open);
}

TEST_F(MariadbTest, TextStatementsReportAffectedRowsAndPrepareNothing) {
  ASSERT_TRUE(conn.execute("CREATE TABLE w (id INT PRIMARY KEY, v INT)").ok());
  const auto before = statement_stats();
  for (int i = 0; i < 50; ++i) {
    auto n = conn.execute_text("INSERT INTO w VALUES (" + std::to_string(i) + ", 0)");
    ASSERT_TRUE(n.ok()) << n.error().message;
    EXPECT_EQ(*n, 1u);
  }
  auto updated = conn.execute_text("UPDATE w SET v = 1 WHERE id < 10");
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(*updated, 10u);
  EXPECT_EQ(statement_stats().prepared, before.prepared);
  EXPECT_EQ(conn.cached_statements(), 0u);
  auto bad = conn.execute_text("UPDATE no_such_table SET v = 1");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("no_such_table"), std::string::npos);
}

// A server whose max_prepared_stmt_count is reached (by all its clients together): a connection
// gives back half of its own statements and goes on; one holding none gets a clear error.
TEST(MariadbStatementLimit, AFullServerCostsCachedStatementsNotWork) {
  test::PrivateMariadb server(8);
  server.start();
  Connection a(server.options());
  Connection b(server.options());
  ASSERT_TRUE(a.connect().ok());
  ASSERT_TRUE(b.connect().ok());
  for (int n = 0; n < 8; ++n) {
    auto rows = a.query("SELECT ? + " + std::to_string(n), {Value{std::int64_t{1}}});
    ASSERT_TRUE(rows.ok()) << rows.error().message;
  }
  EXPECT_EQ(test::server_prepared_statements(b), 8);
  auto refused = b.query("SELECT ? + 100", {Value{std::int64_t{1}}});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::busy);
  EXPECT_NE(refused.error().message.find("max_prepared_stmt_count"), std::string::npos)
      << refused.error().message;
  EXPECT_FALSE(b.broken());
  auto more = a.query("SELECT ? + 200", {Value{std::int64_t{1}}});
  ASSERT_TRUE(more.ok()) << more.error().message;
  EXPECT_EQ((*more)[0].i64(0), 201);
  EXPECT_EQ(a.cached_statements(), 5u);  // 8 halved to 4, then the new one
  EXPECT_EQ(test::server_prepared_statements(b), 5);
}

TEST(MariadbErrors, GaleraNotReadyMeansTheConnectionIsLost) {
  EXPECT_TRUE(is_connection_lost(1047));   // WSREP has not yet prepared node for application use
  EXPECT_TRUE(is_connection_lost(2013));   // lost connection during query
  EXPECT_FALSE(is_connection_lost(1213));  // deadlock, certification failure: retry the transaction
  EXPECT_FALSE(is_connection_lost(1062));
}

TEST(MariadbErrors, NodeReadinessFollowsTheWsrepStatus) {
  using R = NodeReadiness;
  const std::optional<std::string> none;
  EXPECT_EQ(node_readiness(std::string("OFF"), std::string("Disconnected"), none), R::ready);
  EXPECT_EQ(node_readiness(std::string("ON"), std::string("Primary"), std::string("4")), R::ready);
  EXPECT_EQ(node_readiness(std::string("ON"), std::string("Primary"), std::string("2")),
            R::fallback);  // donor
  EXPECT_EQ(node_readiness(std::string("ON"), std::string("Primary"), std::string("3")),
            R::fallback);  // joined, catching up
  EXPECT_EQ(node_readiness(std::string("OFF"), std::string("Primary"), std::string("1")),
            R::not_ready);  // joining
  EXPECT_EQ(node_readiness(std::string("OFF"), std::string("non-Primary"), std::string("4")),
            R::not_ready);  // cut off from the majority
  EXPECT_EQ(node_readiness(std::string("ON"), std::string("non-Primary"), std::string("4")),
            R::not_ready);
  EXPECT_EQ(node_readiness(none, none, std::string("4")), R::not_ready);
}

}  // namespace
}  // namespace mp::store
