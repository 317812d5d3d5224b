// Tests of split_sql_statements and of the migrations compiled into the binary (no database).
#include <gtest/gtest.h>

#include "store/migrations.hpp"

namespace mp::store {
namespace {

TEST(SplitSql, SplitsAtSemicolonsOutsideQuotesAndComments) {
  const auto parts = split_sql_statements(
      "-- leading comment; with a semicolon\n"
      "CREATE TABLE a (x VARCHAR(3) DEFAULT ';');\n"
      "INSERT INTO a VALUES ('it''s;'), (\"q;\"), (`b;`);  # trailing; comment\n"
      "/* block; comment */ SELECT 1;\n"
      "  \n-- only a comment at the end;\n");
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_NE(parts[0].find("DEFAULT ';'"), std::string::npos);
  EXPECT_NE(parts[1].find("'it''s;'"), std::string::npos);
  EXPECT_NE(parts[1].find("(`b;`)"), std::string::npos);
  EXPECT_NE(parts[2].find("SELECT 1"), std::string::npos);
}

TEST(SplitSql, KeepsBackslashEscapesInsideStrings) {
  const auto parts = split_sql_statements("SELECT 'a\\';b'; SELECT 2");
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0], "SELECT 'a\\';b'");
  EXPECT_EQ(parts[1], " SELECT 2");
}

TEST(SplitSql, EmptyInputHasNoStatements) {
  EXPECT_TRUE(split_sql_statements("").empty());
  EXPECT_TRUE(split_sql_statements("  ;; -- nothing\n").empty());
}

TEST(ShippedMigrations, AreNumberedFromOneWithoutGaps) {
  const auto& m = shipped_migrations();
  ASSERT_GE(m.size(), 2u);
  for (std::size_t i = 0; i < m.size(); ++i) {
    EXPECT_EQ(m[i].version, static_cast<int>(i + 1));
    EXPECT_FALSE(m[i].name.empty());
    EXPECT_EQ(m[i].checksum.size(), 64u);
    EXPECT_FALSE(split_sql_statements(m[i].sql).empty());
  }
  EXPECT_EQ(m.front().name, "initial_schema");
  EXPECT_EQ(latest_schema_version(), m.back().version);
}

TEST(ShippedMigrations, CreateEveryTableOfTheDesign) {
  std::string all;
  for (const auto& m : shipped_migrations()) all += m.sql;
  for (const char* table : {"customers", "credentials", "devices", "mailboxes", "registrations",
                            "outbox", "audit_log", "instances", "superseded_subscriptions"}) {
    EXPECT_NE(all.find(std::string("CREATE TABLE IF NOT EXISTS ") + table + " ("),
              std::string::npos)
        << table;
  }
}

}  // namespace
}  // namespace mp::store
