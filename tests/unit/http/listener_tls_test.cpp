// Tests of src/http/listener_tls: the listener's pair loaded, reloaded and refused from files in a
// temp folder (certificates made in memory), its metrics and log lines, and an HttpsServer whose
// new connections get the new pair while an open one finishes on the old.
#include "http/listener_tls.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/log.hpp"
#include "http/https_server.hpp"
#include "test_certificates.hpp"
#include "test_env.hpp"

namespace mp::http {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

class ListenerCertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_sink([this](std::string_view line) {
      std::lock_guard lock(log_mutex_);
      lines_.emplace_back(line);
    });
  }
  void TearDown() override {
    log::set_sink(nullptr);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes a pair as the listener's files; each write replaces the file (new inode), like an
  // editor, certbot or `cp new.crt listener.crt && mv`.
  void install(const test::TestCertificate& pair) {
    install_cert(pair.cert_pem);
    install_key(pair.key_pem);
  }
  void install_cert(const std::string& pem) { replace_file(files_.cert_chain, pem); }
  void install_key(const std::string& pem) { replace_file(files_.private_key, pem); }
  static void replace_file(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".tmp";
    test::write_file(tmp, text);
    fs::rename(tmp, path);
  }

  std::unique_ptr<ListenerCertificate> load_ok() {
    auto loaded = ListenerCertificate::load(files_, registry_);
    EXPECT_TRUE(loaded.ok()) << (loaded.ok() ? "" : loaded.error().message);
    return loaded.ok() ? std::move(*loaded) : nullptr;
  }

  std::optional<double> sample(const std::string& series) const {
    std::istringstream text(serialize_metrics(registry_));
    for (std::string line; std::getline(text, line);) {
      if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    }
    return std::nullopt;
  }
  double refused_total() const {
    return sample(R"(mailpush_listener_certificate_reloads_total{result="refused"})").value_or(-1);
  }
  std::vector<std::string> lines_with(const std::string& needle) {
    std::lock_guard lock(log_mutex_);
    std::vector<std::string> out;
    for (const auto& l : lines_) {
      if (l.find(needle) != std::string::npos) out.push_back(l);
    }
    return out;
  }
  std::string all_lines() {
    std::lock_guard lock(log_mutex_);
    std::string out;
    for (const auto& l : lines_) out += l;
    return out;
  }

  fs::path dir_ = test::make_temp_dir("listener-tls");
  ServerTlsFiles files_{dir_ / "listener.crt", dir_ / "listener.key"};
  prometheus::Registry registry_;
  std::mutex log_mutex_;
  std::vector<std::string> lines_;
  const test::TestCertificate pair_a_ = test::make_test_certificate({.serial = 0xA1});
  const test::TestCertificate pair_b_ = test::make_test_certificate({.serial = 0xB2});
};

TEST_F(ListenerCertificateTest, LoadServesThePairAndExportsItsExpiry) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(cert->serving().serial_hex, "a1");
  EXPECT_NE(cert->tls().current(), nullptr);
  const double not_after =
      std::chrono::duration_cast<std::chrono::seconds>(cert->serving().not_after.time_since_epoch())
          .count();
  EXPECT_EQ(sample("mailpush_listener_certificate_not_after_seconds"), not_after);
  EXPECT_EQ(sample("mailpush_listener_certificate_files_refused"), 0);
  EXPECT_EQ(lines_with("listener.certificate_loaded").size(), 1u);
}

TEST_F(ListenerCertificateTest, LoadRefusesAMismatchedPairNamingBothFiles) {
  install_cert(pair_a_.cert_pem);
  install_key(pair_b_.key_pem);
  auto loaded = ListenerCertificate::load(files_, registry_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().code, Errc::invalid_argument);
  EXPECT_THAT(loaded.error().message, HasSubstr("listener.tls_key " + files_.private_key.string()));
  EXPECT_THAT(loaded.error().message, HasSubstr(files_.cert_chain.string()));
  EXPECT_THAT(loaded.error().message, HasSubstr("does not belong"));
}

TEST_F(ListenerCertificateTest, LoadRefusesAMissingFile) {
  install_cert(pair_a_.cert_pem);
  auto loaded = ListenerCertificate::load(files_, registry_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.error().message, HasSubstr("listener.tls_key: cannot read"));
}

TEST_F(ListenerCertificateTest, AnExpiredPairAtStartIsServedWithAnErrorLine) {
  install(test::make_test_certificate({.serial = 7, .not_before = -48h, .not_after = -1h}));
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(cert->serving().serial_hex, "07");
  const auto lines = lines_with("listener.certificate_not_valid_now");
  ASSERT_EQ(lines.size(), 1u) << all_lines();
  const auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["reason"], "expired");
  EXPECT_LT(*sample("mailpush_listener_certificate_not_after_seconds"),
            static_cast<double>(std::time(nullptr)));
}

TEST_F(ListenerCertificateTest, ReloadSwapsToANewPairAndOldContextsLiveOn) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  const auto old_context = cert->tls().current();
  install(pair_b_);
  EXPECT_TRUE(cert->reload(ListenerCertificate::Trigger::signal));
  EXPECT_EQ(cert->serving().serial_hex, "b2");
  EXPECT_NE(cert->tls().current(), old_context);
  EXPECT_EQ(old_context.use_count(), 1) << "only connections that began with it hold it now";
  EXPECT_EQ(sample(R"(mailpush_listener_certificate_reloads_total{result="ok"})"), 1);
  const auto lines = lines_with("listener.certificate_reloaded");
  ASSERT_EQ(lines.size(), 1u);
  const auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["serial"], "b2");
  EXPECT_EQ(j["previous_serial"], "a1");
  EXPECT_EQ(j["trigger"], "SIGHUP");
}

TEST_F(ListenerCertificateTest, ReloadOfTheSamePairKeepsTheContext) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  const auto context = cert->tls().current();
  install(pair_a_);  // rewritten, same contents
  EXPECT_FALSE(cert->poll());
  EXPECT_EQ(cert->tls().current(), context) << "its session cache survives";
  EXPECT_EQ(refused_total(), 0);
}

// Each bad pair is refused with its reason; the served pair stays and no key byte is logged.
TEST_F(ListenerCertificateTest, BadPairsAreRefusedAndTheServedPairKept) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  const auto context = cert->tls().current();
  const auto expired =
      test::make_test_certificate({.serial = 3, .not_before = -48h, .not_after = -1h});
  const auto early =
      test::make_test_certificate({.serial = 4, .not_before = 24h, .not_after = 48h});
  const struct {
    std::string cert, key, reason;
  } cases[] = {
      {pair_a_.cert_pem, pair_b_.key_pem, "key_mismatch"},
      {expired.cert_pem, expired.key_pem, "expired"},
      {early.cert_pem, early.key_pem, "not_yet_valid"},
      {"garbage\n", pair_a_.key_pem, "no_certificate"},
      {pair_a_.cert_pem, "", "no_private_key"},
  };
  int refusals = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.reason);
    install_cert(c.cert);
    install_key(c.key);
    EXPECT_FALSE(cert->poll());
    EXPECT_EQ(cert->tls().current(), context);
    EXPECT_EQ(cert->serving().serial_hex, "a1");
    EXPECT_EQ(refused_total(), ++refusals);
    EXPECT_EQ(sample("mailpush_listener_certificate_files_refused"), 1);
    const auto lines = lines_with("listener.certificate_refused");
    ASSERT_EQ(lines.size(), static_cast<std::size_t>(refusals));
    const auto j = nlohmann::json::parse(lines.back());
    EXPECT_EQ(j["level"], "error");
    EXPECT_EQ(j["reason"], c.reason);
    EXPECT_EQ(j["serving_serial"], "a1");
    EXPECT_THAT(j["error"].get<std::string>(), HasSubstr(dir_.string()));
  }
  for (const auto* pair : {&pair_a_, &pair_b_, &expired, &early}) {
    EXPECT_FALSE(pair->key_appears_in(all_lines())) << "no key material in a log line";
  }
}

TEST_F(ListenerCertificateTest, AHalfWrittenUpdateIsRetriedUntilTheKeyArrives) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  install_cert(pair_b_.cert_pem);  // the certificate first...
  EXPECT_FALSE(cert->poll());
  EXPECT_FALSE(cert->poll());  // retried, said once
  EXPECT_EQ(lines_with("listener.certificate_refused").size(), 1u);
  EXPECT_EQ(refused_total(), 1);
  EXPECT_EQ(cert->serving().serial_hex, "a1");
  install_key(pair_b_.key_pem);  // ...then its key
  EXPECT_TRUE(cert->poll());
  EXPECT_EQ(cert->serving().serial_hex, "b2");
  EXPECT_EQ(sample("mailpush_listener_certificate_files_refused"), 0);
}

TEST_F(ListenerCertificateTest, ASignalRepeatsARefusalThePollKeepsQuiet) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  install_key(pair_b_.key_pem);
  EXPECT_FALSE(cert->poll());
  EXPECT_FALSE(cert->poll());
  EXPECT_FALSE(cert->reload(ListenerCertificate::Trigger::signal));
  EXPECT_EQ(lines_with("listener.certificate_refused").size(), 2u);
}

TEST_F(ListenerCertificateTest, UnchangedFilesAreNotReread) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  EXPECT_FALSE(cert->poll());
  EXPECT_TRUE(lines_with("listener.certificate_").size() == 1u) << all_lines();
}

// certbot's live/ links and Kubernetes' ..data link: the path stays, the link's target changes.
TEST_F(ListenerCertificateTest, ASymlinkSwapIsPickedUp) {
  const fs::path v1 = dir_ / "v1", v2 = dir_ / "v2";
  fs::create_directories(v1);
  fs::create_directories(v2);
  test::write_file(v1 / "tls.crt", pair_a_.cert_pem);
  test::write_file(v1 / "tls.key", pair_a_.key_pem);
  test::write_file(v2 / "tls.crt", pair_b_.cert_pem);
  test::write_file(v2 / "tls.key", pair_b_.key_pem);
  fs::create_directory_symlink("v1", dir_ / "data");
  files_ = {dir_ / "data" / "tls.crt", dir_ / "data" / "tls.key"};
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  EXPECT_FALSE(cert->poll());
  fs::create_directory_symlink("v2", dir_ / "data.new");
  fs::rename(dir_ / "data.new", dir_ / "data");  // atomic, as kubelet does
  EXPECT_TRUE(cert->poll());
  EXPECT_EQ(cert->serving().serial_hex, "b2");
}

TEST_F(ListenerCertificateTest, WatchPollsUntilStopped) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  asio::io_context ioc;
  std::atomic<bool> stopping{false};
  asio::co_spawn(ioc, cert->watch(20ms, stopping), asio::detached);
  std::thread runner([&] { ioc.run(); });
  install(pair_b_);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (cert->serving().serial_hex != "b2" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  stopping = true;
  runner.join();  // the loop ends after its next tick
  EXPECT_EQ(cert->serving().serial_hex, "b2");
  EXPECT_EQ(lines_with("files_changed").size(), 1u);
}

// ---- through HttpsServer ---------------------------------------------------------------------

TEST_F(ListenerCertificateTest, NewConnectionsGetTheNewPairOpenOnesKeepTheOld) {
  install(pair_a_);
  auto cert = load_ok();
  ASSERT_NE(cert, nullptr);
  asio::io_context ioc;
  auto work = asio::make_work_guard(ioc);
  Router router;
  router.add(boost::beast::http::verb::get, "/hello", "hello",
             [](const Request& req, const RequestContext&) -> asio::awaitable<Response> {
               co_return make_response(req, boost::beast::http::status::ok, "text/plain", "hi");
             });
  ServerMetrics metrics(registry_);
  ServerOptions options;
  HttpsServer server(ioc, cert->tls(), options, router, metrics);
  ASSERT_TRUE(server.listen().ok());
  server.start();
  std::thread runner([&] { ioc.run(); });

  test::ServedCertificateClient before(server.local_port());
  EXPECT_EQ(before.serial_hex(), "a1");
  EXPECT_EQ(before.get("/hello"), "HTTP/1.1 200 OK");
  install(pair_b_);
  ASSERT_TRUE(cert->reload(ListenerCertificate::Trigger::signal));
  test::ServedCertificateClient after(server.local_port());
  EXPECT_EQ(after.serial_hex(), "b2");
  EXPECT_EQ(after.get("/hello"), "HTTP/1.1 200 OK");
  EXPECT_EQ(before.get("/hello"), "HTTP/1.1 200 OK")
      << "the open connection finishes on the old pair";

  std::promise<void> drained;
  server.shutdown(100ms, [&](std::size_t) { drained.set_value(); });
  drained.get_future().wait_for(5s);
  work.reset();
  ioc.stop();
  runner.join();
}

}  // namespace
}  // namespace mp::http
