// mailpushctl as a real process: migrate and status against real databases, with exit codes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "store/mariadb.hpp"
#include "store/migrations.hpp"
#include "test_env.hpp"

namespace mp::test {
namespace {

std::filesystem::path ctl_binary() {
  return binary_dir() / "src/app/mailpushctl";
}

std::filesystem::path region_for(const ScratchDatabase& db, const std::filesystem::path& dir) {
  nlohmann::json patch = {{"database",
                           {{"host", db.options().host},
                            {"port", db.options().port},
                            {"socket", nullptr},
                            {"name", db.name()},
                            {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")}}}};
  return write_region_file(dir, patch.dump());
}

int ctl(const std::filesystem::path& region, std::vector<std::string> args, std::string* out) {
  std::vector<std::string> argv{ctl_binary().string(), "--region", region.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, out);
}

TEST(Mailpushctl, MigrateThenStatus) {
  ScratchDatabase db;
  const auto region = region_for(db, make_temp_dir("ctl"));
  std::string out;
  EXPECT_EQ(ctl(region, {"status"}, &out), 5) << out;  // migrations pending
  EXPECT_NE(out.find("needs migration"), std::string::npos) << out;

  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  EXPECT_NE(out.find("migrated"), std::string::npos) << out;
  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;

  ASSERT_EQ(ctl(region, {"--json", "status"}, &out), 0) << out;
  const auto status = nlohmann::json::parse(out);
  EXPECT_EQ(status["ready"], true);
  EXPECT_EQ(status["schema"]["current_version"], store::latest_schema_version());
  EXPECT_EQ(status["counts"]["outbox_queued"], 0);
  EXPECT_EQ(status["database"]["reachable"], true);
  EXPECT_TRUE(status["instances"].is_array());
}

TEST(Mailpushctl, RefusesASchemaNewerThanTheBinary) {
  ScratchDatabase db;
  const auto region = region_for(db, make_temp_dir("ctl-newer"));
  std::string out;
  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  store::Connection conn(db.options());
  ASSERT_TRUE(conn.connect().ok());
  ASSERT_TRUE(conn.execute("INSERT INTO schema_migrations (version, name, checksum) "
                           "VALUES (999, 'future', REPEAT('0', 64))")
                  .ok());
  EXPECT_EQ(ctl(region, {"migrate"}, &out), 4);
  EXPECT_NE(out.find("newer"), std::string::npos) << out;
  EXPECT_EQ(ctl(region, {"status"}, &out), 4);
}

TEST(Mailpushctl, UnreachableDatabaseExitsThree) {
  const auto dir = make_temp_dir("ctl-down");
  const auto region = write_region_file(
      dir, R"({"database": {"host": "127.0.0.1", "port": )" + std::to_string(free_tcp_port()) +
               R"(, "socket": null, "connect_timeout_ms": 1000, "password_file": ")" +
               std::string(std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")) + R"("}})");
  std::string out;
  EXPECT_EQ(ctl(region, {"migrate"}, &out), 3);
  EXPECT_NE(out.find("unreachable"), std::string::npos) << out;
  EXPECT_EQ(ctl(region, {"--json", "status"}, &out), 3);
  EXPECT_EQ(nlohmann::json::parse(out)["database"]["reachable"], false);
}

TEST(Mailpushctl, UsageAndConfigErrorsHaveTheirOwnExitCodes) {
  std::string out;
  EXPECT_EQ(
      run_command({ctl_binary().string(), "--region", (source_dir() / "regions/dev.json").string()},
                  &out),
      2);
  EXPECT_EQ(run_command({ctl_binary().string(), "--version"}, &out), 0);
  EXPECT_NE(out.find("mailpushctl "), std::string::npos);
  const auto dir = make_temp_dir("ctl-badcfg");
  const auto region = write_region_file(dir, R"({"database": {"pasword_file": "x"}})");
  EXPECT_EQ(run_command({ctl_binary().string(), "--region", region.string(), "status"}, &out), 78);
  EXPECT_NE(out.find("database.pasword_file: unknown field"), std::string::npos) << out;
}

}  // namespace
}  // namespace mp::test
