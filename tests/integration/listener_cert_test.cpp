// mailpushd's listener certificate renewed without a restart, through a real process and real
// TLS connections: SIGHUP swaps the pair for new connections while an open one keeps working, a
// mismatched pair is refused with the old one kept, and changed files are found by the poll.
#include <gtest/gtest.h>
#include <signal.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "test_certificates.hpp"
#include "test_env.hpp"

namespace mp::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class ListenerCertificateReload : public ::testing::Test {
 protected:
  void TearDown() override {
    if (!HasFailure()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  // Replaces a file by renaming a complete copy over it, as an operator or certbot would.
  static void replace_file(const fs::path& path, const std::string& text) {
    write_file(path.string() + ".new", text);
    fs::rename(path.string() + ".new", path);
  }
  void install(const std::string& cert_pem, const std::string& key_pem) {
    replace_file(cert_, cert_pem);
    replace_file(key_, key_pem);
  }

  // Starts mailpushd on pair `initial` with the given poll interval; returns its port.
  std::uint16_t start(const TestCertificate& initial, int poll_ms) {
    install(initial.cert_pem, initial.key_pem);
    const nlohmann::json patch = {
        {"database",
         {{"host", db_.options().host},
          {"port", db_.options().port},
          {"socket", nullptr},
          {"name", db_.name()},
          {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")},
          {"migrate_on_start", true}}},
        {"listener",
         {{"tls_cert", cert_.string()},
          {"tls_key", key_.string()},
          {"tls_poll_interval_ms", poll_ms}}}};
    const auto region = write_region_file(dir_, patch.dump());
    daemon_.emplace(binary_dir() / "src/app/mailpushd",
                    std::vector<std::string>{"--region", region.string()}, dir_ / "mailpushd.log");
    return listening_port(*daemon_, 30s);
  }

  double metric(std::uint16_t port, const std::string& series) {
    const auto reply = https_request_insecure_metrics(port);
    const auto at = reply.find("\n" + series + " ");
    return at == std::string::npos ? -1 : std::stod(reply.substr(at + series.size() + 2));
  }
  // /metrics over a connection that does not check the certificate (the test pairs are
  // self-signed).
  static std::string https_request_insecure_metrics(std::uint16_t port) {
    ServedCertificateClient client(port);
    return client.get_body("/metrics");
  }

  void stop() {
    daemon_->signal(SIGTERM);
    EXPECT_EQ(daemon_->wait(20s), std::optional<int>(0)) << daemon_->log();
  }

  ScratchDatabase db_;
  fs::path dir_ = make_temp_dir("listener-cert");
  fs::path cert_ = dir_ / "listener.crt";
  fs::path key_ = dir_ / "listener.key";
  std::optional<ChildProcess> daemon_;
  const TestCertificate a_ = make_test_certificate({.serial = 0xA1});
  const TestCertificate b_ = make_test_certificate({.serial = 0xB2});
  const TestCertificate c_ = make_test_certificate({.serial = 0xC3});
};

TEST_F(ListenerCertificateReload, SighupSwapsThePairAndAMismatchedPairIsRefused) {
  const auto port = start(a_, 0);  // no poll: only SIGHUP reloads
  ASSERT_NE(port, 0) << daemon_->log();
  ServedCertificateClient before(port);
  EXPECT_EQ(before.serial_hex(), "a1");
  EXPECT_EQ(before.get("/healthz"), "HTTP/1.1 200 OK");

  install(b_.cert_pem, b_.key_pem);
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(ServedCertificateClient(port).serial_hex(), "a1")
      << "without polling, files alone change nothing";
  daemon_->signal(SIGHUP);
  const auto reloaded = daemon_->wait_for_log(R"("serial":"b2")", 10s);
  ASSERT_TRUE(reloaded.has_value()) << daemon_->log();
  EXPECT_NE(reloaded->find("listener.certificate_reloaded"), std::string::npos) << *reloaded;
  EXPECT_NE(reloaded->find(R"("trigger":"SIGHUP")"), std::string::npos) << *reloaded;
  ServedCertificateClient after(port);
  EXPECT_EQ(after.serial_hex(), "b2");
  EXPECT_EQ(after.get("/healthz"), "HTTP/1.1 200 OK");
  EXPECT_EQ(before.get("/healthz"), "HTTP/1.1 200 OK")
      << "an open connection finishes on the old pair";

  install(c_.cert_pem, a_.key_pem);  // C's certificate with A's key
  daemon_->signal(SIGHUP);
  const auto refused = daemon_->wait_for_log("listener.certificate_refused", 10s);
  ASSERT_TRUE(refused.has_value()) << daemon_->log();
  const auto line = nlohmann::json::parse(*refused);
  EXPECT_EQ(line["level"], "error");
  EXPECT_EQ(line["reason"], "key_mismatch");
  EXPECT_NE(line["error"].get<std::string>().find(key_.string()), std::string::npos) << *refused;
  EXPECT_EQ(line["serving_serial"], "b2");
  EXPECT_FALSE(a_.key_appears_in(daemon_->log()) || c_.key_appears_in(daemon_->log()));
  EXPECT_EQ(ServedCertificateClient(port).serial_hex(), "b2") << "the served pair is kept";
  EXPECT_EQ(metric(port, R"(mailpush_listener_certificate_reloads_total{result="refused"})"), 1);
  EXPECT_EQ(metric(port, R"(mailpush_listener_certificate_reloads_total{result="ok"})"), 1);
  EXPECT_EQ(metric(port, "mailpush_listener_certificate_files_refused"), 1);
  stop();
}

TEST_F(ListenerCertificateReload, ChangedFilesArePickedUpByThePoll) {
  const auto port = start(a_, 200);
  ASSERT_NE(port, 0) << daemon_->log();
  EXPECT_EQ(ServedCertificateClient(port).serial_hex(), "a1");
  const double a_not_after = metric(port, "mailpush_listener_certificate_not_after_seconds");
  EXPECT_GT(a_not_after, 0);

  const auto changed = std::chrono::steady_clock::now();
  install(c_.cert_pem, c_.key_pem);
  const auto reloaded = daemon_->wait_for_log(R"("serial":"c3")", 5s);
  ASSERT_TRUE(reloaded.has_value()) << daemon_->log();
  const auto took = std::chrono::steady_clock::now() - changed;
  EXPECT_LT(took, 2s) << "poll interval 200 ms";
  EXPECT_NE(reloaded->find(R"("trigger":"files_changed")"), std::string::npos) << *reloaded;
  EXPECT_EQ(ServedCertificateClient(port).serial_hex(), "c3");
  EXPECT_EQ(metric(port, "mailpush_listener_certificate_files_refused"), 0);
  stop();
}

}  // namespace
}  // namespace mp::test
