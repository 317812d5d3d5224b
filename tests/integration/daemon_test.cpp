// mailpushd as a real process against a real MariaDB: health, readiness following the database,
// metrics, graceful SIGTERM, and start-up errors an operator can act on.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "test_env.hpp"

namespace mp::test {
namespace {

using namespace std::chrono_literals;

std::filesystem::path daemon_binary() {
  return binary_dir() / "src/app/mailpushd";
}

std::string private_db_patch(const PrivateMariadb& db, const std::string& extra = "") {
  nlohmann::json patch = {{"database",
                           {{"host", "127.0.0.1"},
                            {"port", db.port()},
                            {"socket", nullptr},
                            {"name", PrivateMariadb::kDatabase},
                            {"password_file", db.password_file().string()},
                            {"connect_timeout_ms", 1000},
                            {"migrate_on_start", true}}}};
  if (!extra.empty()) patch.merge_patch(nlohmann::json::parse(extra));
  return patch.dump();
}

std::string scratch_db_patch(const ScratchDatabase& db, const std::string& extra = "") {
  nlohmann::json patch = {{"database",
                           {{"host", db.options().host},
                            {"port", db.options().port},
                            {"socket", nullptr},
                            {"name", db.name()},
                            {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")},
                            {"migrate_on_start", true}}}};
  if (!extra.empty()) patch.merge_patch(nlohmann::json::parse(extra));
  return patch.dump();
}

// Polls GET /readyz until it answers `status` (or the time runs out); returns the last reply.
HttpReply wait_for_ready_status(std::uint16_t port, int status, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  HttpReply last;
  while (std::chrono::steady_clock::now() < deadline) {
    last = https_request(port, "GET", "/readyz");
    if (last.status == status) return last;
    std::this_thread::sleep_for(100ms);
  }
  return last;
}

TEST(Daemon, ReadinessFollowsTheDatabase) {
  PrivateMariadb db;
  db.start();
  const auto dir = make_temp_dir("daemon-ready");
  const auto region = write_region_file(dir, private_db_patch(db));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  const auto port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();

  EXPECT_EQ(https_request(port, "GET", "/healthz").status, 200);
  auto ready = wait_for_ready_status(port, 200, 10s);
  ASSERT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(nlohmann::json::parse(ready.body)["status"], "ready");

  db.stop();
  // Answers are kept for a second: probes cannot make every call a database query.
  auto down = wait_for_ready_status(port, 503, 10s);
  EXPECT_EQ(down.status, 503);
  const auto reason = nlohmann::json::parse(down.body).value("reason", "");
  EXPECT_NE(reason.find("unreachable"), std::string::npos) << reason;
  EXPECT_EQ(reason.find(read_file(db.password_file())), std::string::npos);
  EXPECT_EQ(https_request(port, "GET", "/healthz").status, 200) << "alive even without a database";

  db.start();
  auto back = wait_for_ready_status(port, 200, 15s);
  EXPECT_EQ(back.status, 200) << back.body;

  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(15s), std::optional<int>(0)) << daemon.log();
}

TEST(Daemon, ReadinessTellsCallersOutsideMetricsAllowOnlyTheStatus) {
  // The finding: /readyz gave anyone the database's error text.
  PrivateMariadb db;
  db.start();
  const auto dir = make_temp_dir("daemon-ready-outside");
  const auto region = write_region_file(
      dir, private_db_patch(db, R"({"listener":{"metrics_allow":["10.0.0.0/8"]}})"));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  const auto port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();
  auto ready = wait_for_ready_status(port, 200, 10s);
  ASSERT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(ready.body, R"({"status":"ready"})");
  db.stop();
  auto down = wait_for_ready_status(port, 503, 10s);
  EXPECT_EQ(down.status, 503);
  EXPECT_EQ(down.body, R"({"status":"not_ready"})") << "no reason, no database text";
  EXPECT_TRUE(daemon.wait_for_log("daemon.not_ready", 5s).has_value()) << "operators see why";
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(15s), std::optional<int>(0)) << daemon.log();
}

TEST(Daemon, StartsWithoutADatabaseAndMigratesWhenItArrives) {
  PrivateMariadb db;
  db.start();  // creates the password file and database, then goes away
  db.stop();
  const auto dir = make_temp_dir("daemon-nodb");
  const auto region = write_region_file(dir, private_db_patch(db));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  const auto port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();
  EXPECT_TRUE(daemon.wait_for_log("daemon.database_not_ready", 1s).has_value());
  EXPECT_EQ(https_request(port, "GET", "/readyz").status, 503);

  db.start();
  auto ready = wait_for_ready_status(port, 200, 15s);
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_TRUE(daemon.wait_for_log("db.migration_applied", 1s).has_value());
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(15s), std::optional<int>(0));
}

TEST(Daemon, ServesPrometheusMetrics) {
  ScratchDatabase db;
  const auto dir = make_temp_dir("daemon-metrics");
  const auto region = write_region_file(dir, scratch_db_patch(db));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  const auto port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();
  ASSERT_EQ(wait_for_ready_status(port, 200, 10s).status, 200);
  const auto metrics = https_request(port, "GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.header("Content-Type").find("text/plain"), std::string::npos);
  EXPECT_NE(metrics.body.find("mailpush_build_info{"), std::string::npos);
  EXPECT_NE(metrics.body.find("route=\"readyz\""), std::string::npos) << metrics.body;
  EXPECT_NE(metrics.body.find("mailpush_ready 1"), std::string::npos);
  EXPECT_NE(metrics.body.find("mailpush_db_jobs_queued"), std::string::npos);
  EXPECT_NE(metrics.body.find("mailpush_db_lookup_jobs_queued 0"), std::string::npos)
      << "the secret lookups' own pool is visible";
  EXPECT_NE(metrics.body.find("mailpush_db_lookup_jobs_rejected 0"), std::string::npos);
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(15s), std::optional<int>(0));
}

// /metrics names customers and certificate fingerprints: only listener.metrics_allow reads it,
// judged on the caller behind trusted proxies, never on a proxy's own address.
TEST(Daemon, MetricsAreServedOnlyToTheAllowedNetwork) {
  ScratchDatabase db;
  const auto dir = make_temp_dir("daemon-metrics-allow");
  const auto region = write_region_file(
      dir, scratch_db_patch(db, R"({"listener": {"trusted_proxies": ["127.0.0.0/8"]}})"));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  const auto port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();
  EXPECT_EQ(https_request(port, "GET", "/metrics").status, 200);
  // Through the (trusted) load balancer from the internet: refused.
  const auto outside =
      https_request(port, "GET", "/metrics", "", {{"X-Forwarded-For", "203.0.113.7"}});
  EXPECT_EQ(outside.status, 403);
  EXPECT_NE(outside.body.find("metrics_allow"), std::string::npos) << outside.body;
  EXPECT_EQ(outside.body.find("mailpush_"), std::string::npos);
  EXPECT_EQ(https_request(port, "GET", "/healthz", "", {{"X-Forwarded-For", "203.0.113.7"}}).status,
            200);
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(15s), std::optional<int>(0));

  // A region that names only its Prometheus network refuses loopback too.
  const auto renamed = dir / "mailpushd.log";
  std::filesystem::rename(renamed, dir / "mailpushd-1.log");
  const auto region2 = write_region_file(
      dir, scratch_db_patch(db, R"({"listener": {"metrics_allow": ["10.20.0.0/16"]}})"));
  ChildProcess second(daemon_binary(), {"--region", region2.string()}, dir / "mailpushd.log");
  const auto port2 = listening_port(second, 30s);
  ASSERT_NE(port2, 0) << second.log();
  EXPECT_EQ(https_request(port2, "GET", "/metrics").status, 403);
  second.signal(SIGTERM);
  EXPECT_EQ(second.wait(15s), std::optional<int>(0));
}

TEST(Daemon, SigtermFinishesTheRequestInFlightAndExitsZero) {
  ScratchDatabase db;
  const auto dir = make_temp_dir("daemon-drain");
  const auto region =
      write_region_file(dir, scratch_db_patch(db, R"({"limits": {"shutdown_grace_ms": 10000}})"));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  const auto port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();

  RawTlsConnection idle(port);  // keep-alive connection with no request
  idle.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
  ASSERT_EQ(idle.read_response(5s).status, 200);

  RawTlsConnection busy(port);  // a request whose body is still arriving
  const std::string body(100, 'x');
  busy.send(
      "POST /v1/registrations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
      "Content-Length: 100\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_EQ(busy.read_response(5s).status, 100);  // the server has the headers: a request in flight
  busy.send(body.substr(0, 50));

  daemon.signal(SIGTERM);
  ASSERT_TRUE(daemon.wait_for_log("daemon.stopping", 5s).has_value()) << daemon.log();
  EXPECT_TRUE(idle.closed_by_peer(5s)) << "an idle connection is closed at once";
  EXPECT_TRUE(daemon.running()) << "the request in flight is still being served";

  busy.send(body.substr(50));
  const auto reply = busy.read_response(5s);
  // 100 bytes of 'x' are not JSON (400), or the region has no secret (503): either way answered.
  EXPECT_TRUE(reply.status == 400 || reply.status == 503) << reply.status << " " << reply.body;
  EXPECT_EQ(reply.header("Connection"), "close");
  EXPECT_EQ(daemon.wait(10s), std::optional<int>(0)) << daemon.log();
  EXPECT_FALSE(daemon.log().find("daemon.forced_close") != std::string::npos);
  EXPECT_TRUE(daemon.log().find("daemon.stopped") != std::string::npos);
}

// A SIGTERM during the start (an orchestrator that gives up on a slow start, an operator) stops
// the daemon as usual once it is set up, with exit 0 and its stop record: it does not kill it
// half-started (the default action, before the stop handler exists).
TEST(Daemon, SigtermDuringTheStartStopsItCleanly) {
  ScratchDatabase db;
  const auto dir = make_temp_dir("daemon-early-stop");
  const auto region = write_region_file(dir, scratch_db_patch(db));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  ASSERT_TRUE(daemon.wait_for_log("daemon.starting", 30s).has_value()) << daemon.log();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(15s), std::optional<int>(0)) << daemon.log();
  EXPECT_NE(daemon.log().find("daemon.stopped"), std::string::npos) << daemon.log();
}

TEST(Daemon, SigtermClosesAStuckRequestAfterTheGracePeriod) {
  ScratchDatabase db;
  const auto dir = make_temp_dir("daemon-grace");
  const auto region =
      write_region_file(dir, scratch_db_patch(db, R"({"limits": {"shutdown_grace_ms": 500}})"));
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  const auto port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();
  RawTlsConnection stuck(port);
  stuck.send(
      "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly-a-little");
  std::this_thread::sleep_for(100ms);  // let the server read the headers
  const auto start = std::chrono::steady_clock::now();
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(10s), std::optional<int>(0)) << daemon.log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(daemon.wait_for_log("daemon.forced_close", 1s).has_value()) << daemon.log();
}

TEST(Daemon, BadConfigurationExitsWithEX_CONFIGAndNamesTheField) {
  const auto dir = make_temp_dir("daemon-badcfg");
  const auto region = write_region_file(dir, R"({"database": {"port": "three"}})");
  ChildProcess daemon(daemon_binary(), {"--region", region.string()}, dir / "mailpushd.log");
  EXPECT_EQ(daemon.wait(10s), std::optional<int>(78));
  EXPECT_NE(daemon.log().find("database.port"), std::string::npos) << daemon.log();

  const auto missing_tls =
      write_region_file(dir, R"({"listener": {"tls_key": "/nonexistent/listener.key"}})");
  ChildProcess daemon2(daemon_binary(), {"--region", missing_tls.string()}, dir / "mailpushd2.log");
  EXPECT_EQ(daemon2.wait(10s), std::optional<int>(78));
  EXPECT_NE(daemon2.log().find("listener.tls_key"), std::string::npos) << daemon2.log();
}

TEST(Daemon, APortInUseIsAClearError) {
  ScratchDatabase db;
  const auto dir = make_temp_dir("daemon-port");
  const auto first_region = write_region_file(dir, scratch_db_patch(db));
  ChildProcess first(daemon_binary(), {"--region", first_region.string()}, dir / "first.log");
  const auto port = listening_port(first, 30s);
  ASSERT_NE(port, 0);
  const auto second_region = write_region_file(
      dir, scratch_db_patch(db, R"({"listener": {"port": )" + std::to_string(port) + "}}"));
  ChildProcess second(daemon_binary(), {"--region", second_region.string()}, dir / "second.log");
  EXPECT_EQ(second.wait(15s), std::optional<int>(1));
  EXPECT_NE(second.log().find("cannot listen on 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << second.log();
  first.signal(SIGTERM);
  EXPECT_EQ(first.wait(15s), std::optional<int>(0));
}

TEST(Daemon, VersionNamesTheCommit) {
  std::string out;
  EXPECT_EQ(run_command({daemon_binary().string(), "--version"}, &out), 0);
  EXPECT_NE(out.find("mailpushd "), std::string::npos);
  EXPECT_NE(out.find("commit"), std::string::npos);
}

}  // namespace
}  // namespace mp::test
