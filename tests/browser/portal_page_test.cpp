// The portal page in a real browser: sets up what the page needs (database, key file, invite,
// mailpushd with a portal), then runs portal_page.test.js, which drives Debian's Chromium through
// puppeteer-core; between its steps this test moves the new certificate's end 10 days ahead.
#include "portal/portal_page.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "common/crypto.hpp"
#include "store/customers.hpp"
#include "store/migrations.hpp"
#include "test_apns_sim.hpp"
#include "test_env.hpp"

namespace mp::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

namespace fs = std::filesystem;

// Waits until `path` exists (a step of the browser script), the script exits, or `limit` passes.
bool wait_for_file(const fs::path& path, ChildProcess& script, std::chrono::seconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (fs::exists(path)) return true;
    if (!script.running()) return fs::exists(path);
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// The page's routes without a server: what each path answers, with which headers.
http::Response get(const http::Router& router, const std::string& target) {
  http::Request req{boost::beast::http::verb::get, target, 11};
  const auto m = router.match(boost::beast::http::verb::get, target);
  if (m.handler == nullptr) return http::Response{boost::beast::http::status::not_found, 11};
  boost::asio::io_context io;
  const http::RequestContext ctx{{}, m.route, m.path_rest};
  auto done = boost::asio::co_spawn(io, (*m.handler)(req, ctx), boost::asio::use_future);
  io.run();
  return done.get();
}

TEST(BrowserPortalPage, RoutesServeTheEmbeddedFilesWithTheirHeaders) {
  portal::PortalOptions options;
  options.region = "eu-west-1";
  options.other_regions = {{"us-east-1", "portal.use1.mailpush.example"}};
  portal::PortalPage page(options);
  http::Router router;
  page.add_routes(router);

  const auto html = get(router, "/portal/");
  EXPECT_EQ(html.result_int(), 200);
  EXPECT_EQ(html[boost::beast::http::field::content_type], "text/html; charset=utf-8");
  EXPECT_NE(html.body().find("/portal/assets/portal.js"), std::string::npos);
  EXPECT_EQ(html.body().find("<script>"), std::string::npos) << "no inline script";
  EXPECT_EQ(html.body().find("style="), std::string::npos) << "no inline style";
  const std::string csp(html["Content-Security-Policy"]);
  EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe"), std::string::npos) << csp;
  EXPECT_EQ(html["X-Content-Type-Options"], "nosniff");
  EXPECT_EQ(html["Referrer-Policy"], "no-referrer");
  EXPECT_EQ(html[boost::beast::http::field::cache_control], "no-store");

  const auto redirect = get(router, "/portal");
  EXPECT_EQ(redirect.result_int(), 308);
  EXPECT_EQ(redirect[boost::beast::http::field::location], "/portal/");

  const auto js = get(router, "/portal/assets/portal.js");
  EXPECT_EQ(js.result_int(), 200);
  EXPECT_EQ(js[boost::beast::http::field::content_type], "text/javascript; charset=utf-8");
  EXPECT_EQ(js["X-Content-Type-Options"], "nosniff");
  EXPECT_EQ(get(router, "/portal/assets/portal.css")[boost::beast::http::field::content_type],
            "text/css; charset=utf-8");
  for (const std::string bad :
       {"/portal/assets/index.html", "/portal/assets/nothing.js",
        "/portal/assets/../portal_page.cpp", "/portal/assets/", "/portal/assets/portal.js/x"}) {
    EXPECT_EQ(get(router, bad).result_int(), 404) << bad;
  }

  const auto info = get(router, "/portal/v1/info");
  EXPECT_EQ(info.result_int(), 200);
  EXPECT_EQ(json::parse(info.body()),
            json({{"region", "eu-west-1"},
                  {"other_regions", {{"us-east-1", "portal.use1.mailpush.example"}}}}));
}

TEST(BrowserPortalPage, CreateRefuseAndStatusInChromium) {
  const std::string node = MAILPUSH_NODE;
  ASSERT_FALSE(node.empty()) << "node is not installed: run scripts/install-deps.sh";
  const fs::path script = source_dir() / "tests/browser/portal_page.test.js";
  ASSERT_TRUE(fs::exists(source_dir() / "tests/browser/node_modules/puppeteer-core"))
      << "puppeteer-core is not installed in tests/browser/node_modules: run "
         "scripts/install-deps.sh";

  const fs::path dir = make_temp_dir("browser-portal");
  // The artifact (screenshot) goes to a stable place under the build tree.
  const fs::path out = binary_dir() / "tests/browser/output";
  fs::create_directories(out);
  fs::remove(out / "browser-portal.png");
  const fs::path certs = apns_test_certs();

  ScratchDatabase db;
  {
    store::Connection conn(db.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(store::migrate(conn).ok());
  }
  const fs::path kek = dir / "kek";
  ASSERT_EQ(
      run_command({(source_dir() / "scripts/make-kek.sh").string(), kek.string(), "kek-test-1"}),
      0);
  const json patch = {{"database",
                       {{"host", db.options().host},
                        {"port", db.options().port},
                        {"socket", nullptr},
                        {"name", db.name()},
                        {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")},
                        {"migrate_on_start", false}}},
                      {"portal",
                       {{"kek_file", kek.string()},
                        {"trust_anchors", (certs / "apple-ca.crt").string()},
                        {"failed_attempts_per_15_minutes", 1000},
                        {"other_regions", {{"eu-west-1", "portal.euw1.mailpush.example"}}}}}};
  ChildProcess daemon(binary_dir() / "src/app/mailpushd",
                      {"--region", write_region_file(dir, patch.dump()).string()},
                      dir / "mailpushd.log");
  const std::uint16_t port = listening_port(daemon, 30s);
  ASSERT_NE(port, 0) << daemon.log();

  // The invite code reaches the script through a file of mode 0600, never through argv or a log.
  const std::string invite = random_token("inv_", 24);
  {
    store::Connection conn(db.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(store::create_invite(conn, sha384(invite), 1h, {"browser-test", ""}, "").ok());
  }
  const fs::path invite_file = dir / "invite";
  write_file(invite_file, "");
  fs::permissions(invite_file, fs::perms::owner_read | fs::perms::owner_write);
  write_file(invite_file, invite);

  const fs::path created_file = dir / "created.json";  // written by the script
  const fs::path moved_file = dir / "moved";           // written here
  ChildProcess browser(node,
                       {script.string(), "--port", std::to_string(port), "--invite-file",
                        invite_file.string(), "--p12", (certs / "mail.p12").string(),
                        "--password-file", (certs / "mail.p12.password").string(), "--out-dir",
                        out.string(), "--created-file", created_file.string(), "--moved-file",
                        moved_file.string(), "--profile-dir", (dir / "chromium").string()},
                       dir / "browser.log");
  // On an early return, SIGTERM first: the script then closes its Chromium (SIGKILL would not).
  // The invite file goes whatever happens.
  struct StopScript {
    ChildProcess& p;
    fs::path secret;
    ~StopScript() {
      if (p.running()) {
        p.signal(SIGTERM);
        p.wait(15s);
      }
      std::error_code ec;
      fs::remove(secret, ec);
    }
  } stop_script{browser, invite_file};

  // Step 1 (script): refusal and creation. Then the certificate's end moves to 10 days from now.
  ASSERT_TRUE(wait_for_file(created_file, browser, 120s)) << browser.log();
  const json created = json::parse(read_file(created_file), nullptr, false);
  const std::string id = created.value("customer_id", "");
  ASSERT_TRUE(std::regex_match(id, std::regex("^dev-[a-z2-7]{20}$"))) << id;
  {
    store::Connection conn(db.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(conn.execute("UPDATE credentials k JOIN customers c ON c.id = k.customer_id "
                             "SET k.not_after = UTC_TIMESTAMP() + INTERVAL 10 DAY + INTERVAL 1 "
                             "HOUR WHERE c.customer_id = '" +
                             id + "'")
                    .ok());
  }
  write_file(moved_file, "moved\n");

  // Step 2 (script): status shows the warning colours; renewal; screenshot.
  const auto status = browser.wait(180s);
  const std::string log = browser.log();
  std::cout << log;
  ASSERT_EQ(status, std::optional<int>(0)) << "portal_page.test.js failed (output above)";
  EXPECT_TRUE(fs::exists(out / "browser-portal.png"));
  std::cout << "screenshot: " << (out / "browser-portal.png").string() << "\n";

  EXPECT_EQ(log.find(invite), std::string::npos) << "the invite code is not printed";
  EXPECT_EQ(log.find(read_file(certs / "mail.p12.password")), std::string::npos);
  EXPECT_EQ(log.find("ak_"), std::string::npos) << "no admin key printed";
  EXPECT_EQ(log.find("rk_"), std::string::npos) << "no registration key printed";
  EXPECT_EQ(daemon.log().find(invite), std::string::npos) << "nothing secret logged";

  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(15s), std::optional<int>(0)) << daemon.log();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mp::test
