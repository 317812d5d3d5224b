// The certificate portal through a real mailpushd over HTTPS, on the real MariaDB, with the test
// "Apple" push certificates: create with an invite, status, renew, disable, delete; every bad
// input refused with its reason and nothing stored; keys at rest unreadable without the key file.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/crypto.hpp"
#include "credentials/credential_material.hpp"
#include "keys/envelope.hpp"
#include "keys/key_ring.hpp"
#include "store/customers.hpp"
#include "store/migrations.hpp"
#include "test_apns_sim.hpp"
#include "test_env.hpp"
#include "test_multipart_form.hpp"

namespace mp::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kAdminToken = "adm_integration-test-token-0123456789";

// A plain HTTP server on loopback that records the bodies POSTed to it and answers 200.
class WebhookReceiver {
 public:
  WebhookReceiver() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { serve(); });
  }
  ~WebhookReceiver() {
    stop_ = true;
    boost::system::error_code ec;
    // Wake the blocking accept with a connection of our own.
    boost::asio::ip::tcp::socket s(io_);
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<std::string> bodies() const {
    std::lock_guard lock(mutex_);
    return bodies_;
  }
  std::vector<std::string> targets() const {
    std::lock_guard lock(mutex_);
    return targets_;
  }

 private:
  void serve() {
    while (!stop_) {
      boost::asio::ip::tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      if (ec || stop_) continue;
      boost::beast::flat_buffer buffer;
      boost::beast::http::request<boost::beast::http::string_body> req;
      boost::beast::http::read(socket, buffer, req, ec);
      if (ec) continue;
      {
        std::lock_guard lock(mutex_);
        bodies_.push_back(req.body());
        targets_.emplace_back(req.target());
      }
      boost::beast::http::response<boost::beast::http::string_body> res{
          boost::beast::http::status::ok, 11};
      res.set(boost::beast::http::field::connection, "close");
      res.prepare_payload();
      boost::beast::http::write(socket, res, ec);
    }
  }

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::vector<std::string> bodies_, targets_;
  std::thread thread_;
};

class Portal : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("portal");
    certs_ = apns_test_certs();
    store::Connection conn(db_.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(store::migrate(conn).ok());
    kek_ = dir_ / "kek";
    ASSERT_EQ(
        run_command({(source_dir() / "scripts/make-kek.sh").string(), kek_.string(), "kek-test-1"}),
        0);
    write_file(dir_ / "admin-tokens", "# test\n" + hex_encode(sha384(kAdminToken)) + "\n");
  }

  void TearDown() override {
    if (daemon_) {
      daemon_->signal(SIGTERM);
      EXPECT_EQ(daemon_->wait(15s), std::optional<int>(0)) << daemon_->log();
    }
  }

  void start(int failures = 1000, const json& portal_extra = json::object(),
             const json& top_extra = json::object()) {
    daemon_ = launch(dir_, failures, portal_extra, top_extra);
    port_ = listening_port(*daemon_, 30s);
    ASSERT_NE(port_, 0) << daemon_->log();
  }

  std::unique_ptr<ChildProcess> launch(const std::filesystem::path& dir, int failures,
                                       const json& portal_extra = json::object(),
                                       const json& top_extra = json::object()) {
    std::filesystem::create_directories(dir);
    json patch = {{"database",
                   {{"host", db_.options().host},
                    {"port", db_.options().port},
                    {"socket", nullptr},
                    {"name", db_.name()},
                    {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")},
                    {"migrate_on_start", false}}},
                  {"portal",
                   {{"kek_file", kek_.string()},
                    {"admin_token_file", (dir_ / "admin-tokens").string()},
                    {"trust_anchors", (certs_ / "apple-ca.crt").string()},
                    {"failed_attempts_per_15_minutes", failures},
                    {"credential_refresh_s", 1},
                    {"other_regions", {{"eu-west-1", "portal.euw1.mailpush.example"}}}}}};
    patch["portal"].update(portal_extra);
    patch.update(top_extra);
    const auto region = write_region_file(dir, patch.dump());
    return std::make_unique<ChildProcess>(binary_dir() / "src/app/mailpushd",
                                          std::vector<std::string>{"--region", region.string()},
                                          dir / "mailpushd.log");
  }

  // Waits (up to `limit`) until `port`'s /metrics holds `needle`; returns whether it did.
  static bool metrics_show(std::uint16_t port, const std::string& needle,
                           std::chrono::seconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (https_request(port, "GET", "/metrics").body.find(needle) != std::string::npos)
        return true;
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }

  std::string p12(const std::string& name) const { return read_file(certs_ / (name + ".p12")); }
  std::string password(const std::string& name) const {
    return read_file(certs_ / (name + ".p12.password"));
  }

  std::string invite() {
    store::Connection conn(db_.options());
    EXPECT_TRUE(conn.connect().ok());
    const std::string code = random_token("inv_", 24);
    EXPECT_TRUE(store::create_invite(conn, sha384(code), 1h, {"test", ""}, "").ok());
    return code;
  }

  // A create form for `name`.p12 with its password, App ID com.example.mail, region dev.
  Form create_form(const std::string& name) {
    Form f;
    f.file("certificate", p12(name))
        .field("password", password(name))
        .field("app_id", "com.example.mail")
        .field("region", "dev");
    return f;
  }

  HttpReply post(const std::string& path, const Form& form, const std::string& key = "") {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", Form::content_type()}};
    if (!key.empty()) headers.emplace_back("Authorization", "Bearer " + key);
    return https_request(port_, "POST", path, form.body(), headers);
  }

  HttpReply call(const std::string& method, const std::string& path, const std::string& key) {
    return https_request(port_, method, path, "", {{"Authorization", "Bearer " + key}});
  }

  std::int64_t count(const std::string& sql) {
    store::Connection conn(db_.options());
    EXPECT_TRUE(conn.connect().ok());
    auto rows = conn.query(sql);
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : -1;
  }

  static json body_of(const HttpReply& r) { return json::parse(r.body, nullptr, false); }

  ScratchDatabase db_;
  std::filesystem::path dir_, certs_, kek_;
  std::unique_ptr<ChildProcess> daemon_;
  std::uint16_t port_ = 0;
};

TEST_F(Portal, CreateStatusRenewDisableDelete) {
  start();
  const std::string code = invite();
  Form form = create_form("mail");
  form.field("invite_code", code).field("display_name", "Example Corp");
  auto created = post("/portal/v1/customers", form);
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.header("Cache-Control"), "no-store");
  const json c = body_of(created);
  const std::string id = c["customer_id"];
  const std::string admin_key = c["admin_key"];
  EXPECT_EQ(id.rfind("dev-", 0), 0u);
  EXPECT_EQ(id.size(), 4u + 20u);
  EXPECT_EQ(std::string(c["registration_key"]).rfind("rk_", 0), 0u);
  EXPECT_EQ(admin_key.rfind("ak_", 0), 0u);
  EXPECT_EQ(c["certificate"]["topic"], "com.example.mail");
  EXPECT_EQ(c["certificate"]["environments"], "development,production");
  EXPECT_GT(c["certificate"]["days_left"].get<int>(), 300);
  EXPECT_TRUE(c["warnings"].empty()) << c.dump();

  // The invite is used up; the keys are stored only as hashes.
  form = create_form("mail");
  form.field("invite_code", code);
  auto again = post("/portal/v1/customers", form);
  EXPECT_EQ(again.status, 403) << again.body;
  EXPECT_EQ(body_of(again)["error"], "invalid_invite");
  EXPECT_EQ(count("SELECT COUNT(*) FROM customers"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM customers WHERE admin_key_hash = UNHEX('" +
                  hex_encode(sha384(admin_key)) + "')"),
            1);

  auto status = call("GET", "/portal/v1/customers/" + id, admin_key);
  ASSERT_EQ(status.status, 200) << status.body;
  json s = body_of(status);
  EXPECT_EQ(s["state"], "active");
  EXPECT_EQ(s["display_name"], "Example Corp");
  EXPECT_EQ(s["certificate"]["state"], "active");
  EXPECT_EQ(s["certificates"].size(), 1u);
  EXPECT_EQ(call("GET", "/portal/v1/customers/" + id, "ak_wrong").status, 403);
  EXPECT_EQ(call("GET", "/portal/v1/customers/" + id, kAdminToken).status, 200);

  // Renewal: the same certificate exported by Keychain (legacy encryption) replaces it.
  Form renew;
  renew.file("certificate", p12("mail-legacy")).field("password", password("mail-legacy"));
  auto renewed = post("/portal/v1/customers/" + id + "/certificate", renew, admin_key);
  ASSERT_EQ(renewed.status, 200) << renewed.body;
  // Another App ID's certificate is refused; a narrower environment needs the flag.
  Form other;
  other.file("certificate", p12("other")).field("password", password("other"));
  auto refused = post("/portal/v1/customers/" + id + "/certificate", other, admin_key);
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_EQ(body_of(refused)["error"], "topic_mismatch");
  Form dev_only;
  dev_only.file("certificate", p12("mail-dev")).field("password", password("mail-dev"));
  auto narrowed = post("/portal/v1/customers/" + id + "/certificate", dev_only, admin_key);
  EXPECT_EQ(narrowed.status, 409) << narrowed.body;
  EXPECT_EQ(body_of(narrowed)["error"], "environment_changed");
  dev_only.field("allow_environment_change", "true");
  narrowed = post("/portal/v1/customers/" + id + "/certificate", dev_only, admin_key);
  ASSERT_EQ(narrowed.status, 200) << narrowed.body;
  EXPECT_FALSE(body_of(narrowed)["warnings"].empty()) << "sandbox only";
  s = body_of(call("GET", "/portal/v1/customers/" + id, admin_key));
  ASSERT_EQ(s["certificates"].size(), 3u);
  EXPECT_EQ(s["certificates"][0]["state"], "active");
  EXPECT_EQ(s["certificates"][0]["environments"], "development");
  EXPECT_EQ(s["certificates"][1]["state"], "retired");
  EXPECT_EQ(s["certificates"][2]["state"], "retired");

  auto disabled = post("/portal/v1/customers/" + id + "/disable", Form{}, admin_key);
  EXPECT_EQ(disabled.status, 200) << disabled.body;
  EXPECT_EQ(body_of(call("GET", "/portal/v1/customers/" + id, admin_key))["state"], "disabled");
  EXPECT_EQ(call("DELETE", "/portal/v1/customers/" + id, admin_key).status, 200);
  EXPECT_EQ(call("GET", "/portal/v1/customers/" + id, admin_key).status, 403);
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action IN ('customer.create', "
                  "'credential.renew', 'customer.state')"),
            1 + 2 + 2);
}

TEST_F(Portal, KeysAtRestOpenOnlyWithTheRegionKeyFile) {
  start();
  auto created = post("/portal/v1/customers", create_form("mail"), kAdminToken);
  ASSERT_EQ(created.status, 201) << created.body;
  const std::string id = body_of(created)["customer_id"];
  store::Connection conn(db_.options());
  ASSERT_TRUE(conn.connect().ok());
  auto rows = store::active_credentials_sealed(conn);
  ASSERT_TRUE(rows.ok() && rows->size() == 1u);
  const auto& row = rows->front();
  EXPECT_EQ(row.kek_id, "kek-test-1");
  const keys::Sealed sealed{row.kek_id, row.wrapped_data_key, row.sealed_material};

  // The private key is not in the row in clear; nor is the certificate.
  const std::string key_pem = read_file(certs_ / "mail.key");
  const std::string cert_pem = read_file(certs_ / "mail.crt");
  for (const std::string& clear : {key_pem.substr(40, 32), cert_pem.substr(40, 32)}) {
    EXPECT_EQ(row.sealed_material.find(clear), std::string::npos);
  }

  // With the key file it opens (and is the uploaded key); with another key file it does not.
  auto ring = keys::KeyRing::load_file(kek_);
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  const std::string aad = credentials::credential_aad(id, row.fingerprint_hex);
  auto opened = keys::open(*ring, sealed, aad);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto material = credentials::unpack_material(opened->view());
  ASSERT_TRUE(material.ok());
  EXPECT_EQ(hex_encode(sha256(material->certificate_der)), row.fingerprint_hex);
  const auto other_kek = dir_ / "other-kek";
  ASSERT_EQ(run_command({(source_dir() / "scripts/make-kek.sh").string(), other_kek.string(),
                         "kek-test-1"}),
            0);
  auto other = keys::KeyRing::load_file(other_kek);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(keys::open(*other, sealed, aad).ok());
  EXPECT_FALSE(
      keys::open(*ring, sealed, credentials::credential_aad("dev-other", row.fingerprint_hex)).ok())
      << "a blob moved to another customer does not open";
}

// Each refusal's rule is a unit test (tests/unit/portal/portal_endpoint_test.cpp); here, one of
// each layer through the real server: the PKCS#12 open, the body limit and the region.
TEST_F(Portal, BadInputIsRefusedWithAReasonAndNothingIsStored) {
  start();
  const std::string pw = password("mail");
  std::vector<test::RefusedForm> cases;
  {
    Form f;
    f.file("certificate", p12("mail"))
        .field("password", "not-" + pw)
        .field("app_id", "com.example.mail");
    f.field("region", "dev");
    cases.push_back({"wrong password", f, 422, "wrong_password"});
  }
  {
    Form f;
    f.file("certificate", std::string(70 * 1024, 'x')).field("password", pw);
    f.field("app_id", "com.example.mail").field("region", "dev");
    cases.push_back({"oversized", f, 413, "too_large"});
  }
  {
    Form f;
    f.file("certificate", p12("mail")).field("password", pw).field("app_id", "com.example.mail");
    f.field("region", "eu-west-1");
    cases.push_back({"wrong region", f, 421, "wrong_region"});
  }
  for (const auto& c : cases) {
    auto r = post("/portal/v1/customers", c.form, kAdminToken);
    EXPECT_EQ(r.status, c.status) << c.what << ": " << r.body;
    const json j = body_of(r);
    EXPECT_EQ(j.value("error", ""), c.error) << c.what << ": " << r.body;
    EXPECT_FALSE(j.value("message", "").empty()) << c.what;
    EXPECT_EQ(r.body.find(pw), std::string::npos) << c.what << ": the password is never echoed";
  }
  // The wrong region names the right portal.
  Form misdirected;
  misdirected.file("certificate", p12("mail")).field("password", pw);
  misdirected.field("app_id", "com.example.mail").field("region", "eu-west-1");
  EXPECT_NE(post("/portal/v1/customers", misdirected, kAdminToken)
                .body.find("https://portal.euw1.mailpush.example/portal/"),
            std::string::npos);

  // Not a multipart body at all; no authorisation; a wrong admin token; a wrong invite.
  auto raw = https_request(port_, "POST", "/portal/v1/customers", "password=x",
                           {{"Content-Type", "application/x-www-form-urlencoded"},
                            {"Authorization", "Bearer " + kAdminToken}});
  EXPECT_EQ(raw.status, 400) << raw.body;
  EXPECT_EQ(body_of(raw)["error"], "malformed_form");
  EXPECT_EQ(post("/portal/v1/customers", create_form("mail")).status, 401);
  EXPECT_EQ(post("/portal/v1/customers", create_form("mail"), "adm_wrong").status, 401);
  Form bad_invite = create_form("mail");
  bad_invite.field("invite_code", "inv_made-up");
  EXPECT_EQ(post("/portal/v1/customers", bad_invite).status, 403);

  EXPECT_EQ(count("SELECT COUNT(*) FROM customers"), 0) << "nothing stored";
  EXPECT_EQ(count("SELECT COUNT(*) FROM credentials"), 0);
  EXPECT_EQ(daemon_->log().find(pw), std::string::npos) << "nothing secret logged";
  EXPECT_EQ(daemon_->log().find(kAdminToken), std::string::npos);

  // Text fields keep SQL metacharacters and Unicode verbatim.
  Form named = create_form("mail");
  named.field("display_name", "Ünïcödé Corp'); DROP TABLE customers; -- \xF0\x9F\x93\xA7");
  auto created = post("/portal/v1/customers", named, kAdminToken);
  ASSERT_EQ(created.status, 201) << created.body;
  auto s = call("GET", "/portal/v1/customers/" + std::string(body_of(created)["customer_id"]),
                body_of(created)["admin_key"]);
  EXPECT_EQ(body_of(s)["display_name"],
            "Ünïcödé Corp'); DROP TABLE customers; -- \xF0\x9F\x93\xA7");
}

TEST_F(Portal, OneCustomersKeyDoesNotOpenAnother) {
  start();
  auto a = body_of(post("/portal/v1/customers", create_form("mail"), kAdminToken));
  auto b = body_of(post("/portal/v1/customers", create_form("mail"), kAdminToken));
  ASSERT_TRUE(a.contains("customer_id") && b.contains("customer_id"));
  const std::string b_path = "/portal/v1/customers/" + std::string(b["customer_id"]);
  EXPECT_EQ(call("GET", b_path, a["admin_key"]).status, 403);
  EXPECT_EQ(post(b_path + "/disable", Form{}, a["admin_key"]).status, 403);
  EXPECT_EQ(call("DELETE", b_path, a["admin_key"]).status, 403);
  EXPECT_EQ(call("GET", b_path, b["admin_key"]).status, 200);
}

// A renewal through one instance is sending in every other instance of the region within a
// minute, without a restart (here: refresh every second).
TEST_F(Portal, ARenewalReachesASecondInstanceWithoutRestart) {
  start();
  auto second = launch(dir_ / "second", 1000);
  const auto second_port = listening_port(*second, 30s);
  ASSERT_NE(second_port, 0) << second->log();

  auto created = body_of(post("/portal/v1/customers", create_form("mail-prod"), kAdminToken));
  ASSERT_TRUE(created.contains("customer_id")) << created.dump();
  const std::string id = created["customer_id"];
  const std::string first_fp = created["certificate"]["fingerprint_sha256"];
  EXPECT_TRUE(metrics_show(second_port, "fingerprint=\"" + first_fp + "\"", 60s))
      << https_request(second_port, "GET", "/metrics").body;

  Form renew;
  renew.file("certificate", p12("mail")).field("password", password("mail"));
  renew.field("allow_environment_change", "true");
  auto renewed =
      body_of(post("/portal/v1/customers/" + id + "/certificate", renew, created["admin_key"]));
  ASSERT_TRUE(renewed.contains("certificate")) << renewed.dump();
  const std::string new_fp = renewed["certificate"]["fingerprint_sha256"];
  ASSERT_NE(new_fp, first_fp);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(metrics_show(second_port, "fingerprint=\"" + new_fp + "\"", 60s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 60s);
  const auto metrics = https_request(second_port, "GET", "/metrics").body;
  EXPECT_EQ(metrics.find("fingerprint=\"" + first_fp + "\""), std::string::npos)
      << "the retired certificate is no longer loaded";
  EXPECT_NE(metrics.find("mailpush_credentials_loaded 1"), std::string::npos) << metrics;

  // Disabled: no longer loaded anywhere.
  ASSERT_EQ(post("/portal/v1/customers/" + id + "/disable", Form{}, created["admin_key"]).status,
            200);
  EXPECT_TRUE(metrics_show(second_port, "mailpush_credentials_loaded 0", 60s));
  second->signal(SIGTERM);
  EXPECT_EQ(second->wait(15s), std::optional<int>(0)) << second->log();
}

// Expiry: each warning once (log, audit, webhook), the expired credential marked and unloaded,
// the customer and its devices kept.
TEST_F(Portal, ExpiryWarningsAreSentOnceAndExpiredCredentialsStop) {
  WebhookReceiver hook;
  start(1000, {{"expiry_check_interval_s", 1},
               {"expiry_webhook_url",
                "http://127.0.0.1:" + std::to_string(hook.port()) + "/hooks/expiry?token=s3cr3t"}});
  auto soon = body_of(post("/portal/v1/customers", create_form("mail"), kAdminToken));
  auto gone = body_of(post("/portal/v1/customers", create_form("mail"), kAdminToken));
  ASSERT_TRUE(soon.contains("customer_id") && gone.contains("customer_id"));
  {
    store::Connection conn(db_.options());
    ASSERT_TRUE(conn.connect().ok());
    const auto move_end = [&](const json& customer, const std::string& when) {
      ASSERT_TRUE(conn.execute("UPDATE credentials k JOIN customers c ON c.id = k.customer_id "
                               "SET k.not_after = " +
                               when + " WHERE c.customer_id = '" +
                               std::string(customer["customer_id"]) + "'")
                      .ok());
    };
    move_end(soon, "UTC_TIMESTAMP() + INTERVAL 10 DAY + INTERVAL 1 HOUR");
    move_end(gone, "UTC_TIMESTAMP() - INTERVAL 1 HOUR");
  }
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (hook.bodies().size() < 2 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  std::this_thread::sleep_for(3s);  // three more passes: nothing is sent twice
  const auto bodies = hook.bodies();
  ASSERT_EQ(bodies.size(), 2u) << daemon_->log();
  std::map<std::string, json> by_customer;
  for (const auto& b : bodies) {
    const json j = json::parse(b);
    by_customer[j["customer_id"]] = j;
  }
  const json& w = by_customer[soon["customer_id"]];
  EXPECT_EQ(w["event"], "credential.expiring");
  EXPECT_EQ(w["threshold_days"], 14);
  EXPECT_EQ(w["days_left"], 10);
  EXPECT_EQ(w["region"], "dev");
  EXPECT_EQ(w["topic"], "com.example.mail");
  const json& e = by_customer[gone["customer_id"]];
  EXPECT_EQ(e["event"], "credential.expired");
  EXPECT_EQ(e["threshold_days"], 0);
  EXPECT_EQ(hook.targets().front(), "/hooks/expiry?token=s3cr3t");

  EXPECT_EQ(count("SELECT COUNT(*) FROM credentials WHERE state = 'expired'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'credential.expiring'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE action = 'credential.expired'"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM customers WHERE state = 'active'"), 2) << "kept";
  EXPECT_TRUE(metrics_show(port_, "mailpush_credentials_loaded 1", 30s));
  auto status = body_of(
      call("GET", "/portal/v1/customers/" + std::string(gone["customer_id"]), gone["admin_key"]));
  EXPECT_TRUE(status["certificate"].is_null()) << status.dump();
  EXPECT_FALSE(status["warnings"].empty()) << status.dump();
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("credential.expiring"), std::string::npos);
  EXPECT_EQ(log.find("s3cr3t"), std::string::npos) << "the webhook URL's token is not logged";
}

// A renewal may ask for a test connection to APNs with the new certificate first: it replaces
// the old one only if the handshake with (here) apns-sim succeeds.
TEST_F(Portal, RenewalCanTestTheConnectionToApnsFirst) {
  auto sim = std::make_unique<ApnsSimProcess>();
  const json apns = {{"apns",
                      {{"production", {{"host", "127.0.0.1"}, {"port", sim->h2_port()}}},
                       {"sandbox", {{"host", "127.0.0.1"}, {"port", sim->h2_port()}}},
                       {"ca_file", (certs_ / "apple-ca.crt").string()}}}};
  start(1000, json::object(), apns);
  auto created = body_of(post("/portal/v1/customers", create_form("mail"), kAdminToken));
  ASSERT_TRUE(created.contains("customer_id")) << created.dump();
  const std::string path = "/portal/v1/customers/" + std::string(created["customer_id"]);

  Form renew;
  renew.file("certificate", p12("mail-legacy")).field("password", password("mail-legacy"));
  renew.field("test_connection", "true");
  auto ok = post(path + "/certificate", renew, created["admin_key"]);
  ASSERT_EQ(ok.status, 200) << ok.body << daemon_->log();
  EXPECT_NE(daemon_->log().find("portal.apns_test_ok"), std::string::npos);

  sim.reset();  // APNs unreachable: the renewal is refused and the current certificate stays
  auto failed = post(path + "/certificate", renew, created["admin_key"]);
  EXPECT_EQ(failed.status, 422) << failed.body;
  EXPECT_EQ(body_of(failed)["error"], "apns_test_failed");
  EXPECT_NE(body_of(failed)["message"].get<std::string>().find("stays active"), std::string::npos);
  const auto status = body_of(call("GET", path, created["admin_key"]));
  EXPECT_EQ(status["certificates"].size(), 2u) << "nothing replaced by the failed renewal";
}

// portal.listen: the portal on its own port, and only there.
TEST_F(Portal, ThePortalCanHaveItsOwnPort) {
  start(1000, {{"listen", {{"bind_address", "127.0.0.1"}, {"port", 0}}}});
  const auto line = daemon_->wait_for_log("\"daemon.portal_listening\"", 30s);
  ASSERT_TRUE(line) << daemon_->log();
  const auto portal_port = json::parse(*line).at("port").get<std::uint16_t>();
  ASSERT_NE(portal_port, port_);
  const auto listener_port = port_;

  port_ = portal_port;
  auto created = post("/portal/v1/customers", create_form("mail"), kAdminToken);
  EXPECT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(https_request(portal_port, "GET", "/portal/").status, 200);
  EXPECT_EQ(https_request(portal_port, "GET", "/healthz").status, 200);
  EXPECT_EQ(https_request(portal_port, "POST", "/ews/v1/notify/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                          "<x/>", {{"Content-Type", "text/xml"}})
                .status,
            404)
      << "no EWS listener on the portal's port";

  port_ = listener_port;
  EXPECT_EQ(post("/portal/v1/customers", create_form("mail"), kAdminToken).status, 404)
      << "no portal on the listener's port";
  EXPECT_EQ(https_request(listener_port, "GET", "/portal/").status, 404);
  EXPECT_EQ(https_request(listener_port, "GET", "/healthz").status, 200);
}

// SQL metacharacters and Unicode in each text field: refused with the field's reason, or
// stored verbatim; never an error of the database.
TEST_F(Portal, SqlAndUnicodeInEveryTextField) {
  start();
  const std::string hostile = "x'); DROP TABLE customers; -- \xC3\xBC\xF0\x9F\x93\xA7 \\ \"";
  const std::string code = invite();
  struct Case {
    std::string field;
    int status;
    std::string error;
  };
  for (const Case& c :
       {Case{"app_id", 400, "invalid_app_id"}, Case{"region", 400, "unknown_region"},
        Case{"password", 422, "wrong_password"}, Case{"invite_code", 403, "invalid_invite"}}) {
    Form f;
    f.file("certificate", p12("mail"));
    for (const auto& [name, value] :
         std::vector<std::pair<std::string, std::string>>{{"password", password("mail")},
                                                          {"app_id", "com.example.mail"},
                                                          {"region", "dev"},
                                                          {"invite_code", code}}) {
      f.field(name, name == c.field ? hostile : value);
    }
    auto r = post("/portal/v1/customers", f);
    EXPECT_EQ(r.status, c.status) << c.field << ": " << r.body;
    EXPECT_EQ(body_of(r).value("error", ""), c.error) << c.field << ": " << r.body;
    EXPECT_EQ(r.body.find("DROP TABLE"), std::string::npos) << "values are never echoed";
  }
  // The invite survived the refusals; display_name keeps the text exactly.
  Form ok = create_form("mail");
  ok.field("invite_code", code).field("display_name", hostile);
  auto created = post("/portal/v1/customers", ok);
  ASSERT_EQ(created.status, 201) << created.body;
  const json c = body_of(created);
  EXPECT_EQ(body_of(call("GET", "/portal/v1/customers/" + std::string(c["customer_id"]),
                         c["admin_key"]))["display_name"],
            hostile);
  // Keys and ids in paths and headers: refused, never a database error.
  EXPECT_EQ(call("GET", "/portal/v1/customers/dev-x'%20OR%201=1", c["admin_key"]).status, 404);
  EXPECT_EQ(
      call("GET", "/portal/v1/customers/" + std::string(c["customer_id"]), "ak_' OR 1=1 --").status,
      403);
  EXPECT_EQ(count("SELECT COUNT(*) FROM customers"), 1);
}

// Review findings: what could be accepted but not kept, text that is not UTF-8, and an admin
// asking about a customer that does not exist.
TEST_F(Portal, UnstorableUploadsAndUnknownCustomersAreRefusedCleanly) {
  start();
  // A .p12 with nine extra certificates besides the push certificate.
  std::string extra;
  for (int i = 0; i < 9; ++i) extra += read_file(certs_ / "apple-ca.crt");
  write_file(dir_ / "extra.pem", extra);
  const std::string pw = "many-certs";
  ASSERT_EQ(
      run_command({"openssl", "pkcs12", "-export", "-in", (certs_ / "mail.crt").string(), "-inkey",
                   (certs_ / "mail.key").string(), "-certfile", (dir_ / "extra.pem").string(),
                   "-passout", "pass:" + pw, "-out", (dir_ / "many.p12").string()}),
      0);
  Form many;
  many.file("certificate", read_file(dir_ / "many.p12")).field("password", pw);
  many.field("app_id", "com.example.mail").field("region", "dev");
  auto refused = post("/portal/v1/customers", many, kAdminToken);
  EXPECT_EQ(refused.status, 422) << refused.body;
  EXPECT_EQ(body_of(refused)["error"], "too_many_certificates");

  Form latin1 = create_form("mail");
  latin1.field("display_name", "Soci\xE9t\xE9");
  auto bad_text = post("/portal/v1/customers", latin1, kAdminToken);
  EXPECT_EQ(bad_text.status, 400) << bad_text.body;
  EXPECT_EQ(body_of(bad_text)["error"], "invalid_display_name");
  Form odd_name = create_form("mail");
  odd_name.field("n\xE4me", "x");
  auto bad_name = post("/portal/v1/customers", odd_name, kAdminToken);
  EXPECT_EQ(bad_name.status, 400) << bad_name.body;
  EXPECT_EQ(body_of(bad_name)["error"], "unknown_field");
  EXPECT_EQ(count("SELECT COUNT(*) FROM customers"), 0);

  // The admin token opens every customer: an unknown one is 404, not a failed attempt.
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(call("GET", "/portal/v1/customers/dev-aaaaaaaaaaaaaaaaaaaa", kAdminToken).status,
              404);
  }
  EXPECT_EQ(call("GET", "/portal/v1/customers/dev-aaaaaaaaaaaaaaaaaaaa", "ak_someone").status, 403);
}

TEST_F(Portal, RepeatedFailuresFromOneAddressAreRateLimited) {
  start(3);
  Form wrong;
  wrong.file("certificate", p12("mail"))
      .field("password", "wrong")
      .field("app_id", "com.example.mail");
  wrong.field("region", "dev");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(post("/portal/v1/customers", wrong, kAdminToken).status, 422);
  }
  auto limited = post("/portal/v1/customers", create_form("mail"), kAdminToken);
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_FALSE(limited.header("Retry-After").empty());
  EXPECT_EQ(body_of(limited)["error"], "too_many_failures");
}

}  // namespace
}  // namespace mp::test
