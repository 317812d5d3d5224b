// The relay's main job end to end with real processes: mailpushd, apns-sim and MariaDB. A
// customer is onboarded through the portal, devices are registered, SendNotification callbacks
// are posted to the listener, and what each simulated device received is read back from
// apns-sim. Covers each subscription badging its own device (and no squatter's), exact badges,
// NewMail counted once, 410, bad tokens, a
// refused certificate pausing the customer until renewal, APNs down for a while, and the two
// crash tests: mailpushd killed with SIGKILL and MariaDB restarted, both under load, with the
// acknowledged events counted.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/crypto.hpp"
#include "store/migrations.hpp"
#include "test_apns_sim.hpp"
#include "test_env.hpp"
#include "test_ews_bodies.hpp"
#include "test_graph_sim.hpp"
#include "test_registrations.hpp"

namespace mp::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

constexpr const char* kAdminToken = "adm_fanout_test_token_0123456789";

// A multipart form for the portal.
std::string form_body(const std::vector<std::pair<std::string, std::string>>& fields,
                      const std::string& p12) {
  std::string b;
  for (const auto& [k, v] : fields) {
    b += "--mpboundary\r\nContent-Disposition: form-data; name=\"" + k + "\"\r\n\r\n" + v + "\r\n";
  }
  b += "--mpboundary\r\nContent-Disposition: form-data; name=\"certificate\"; "
       "filename=\"c.p12\"\r\nContent-Type: application/x-pkcs12\r\n\r\n" +
       p12 + "\r\n--mpboundary--\r\n";
  return b;
}

struct Device {
  TestRegistration registration;
  std::string token;
  std::string subscription;
};

class Fanout : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("fanout");
    certs_ = apns_test_certs();
    kek_ = dir_ / "kek";
    ASSERT_EQ(run_command({(source_dir() / "scripts/make-kek.sh").string(), kek_.string(), "k1"}),
              0);
    write_file(dir_ / "admin-tokens", hex_encode(sha384(kAdminToken)) + "\n");
  }

  void TearDown() override {
    if (daemon_ && daemon_->running()) {
      daemon_->signal(SIGTERM);
      EXPECT_EQ(daemon_->wait(20s), std::optional<int>(0)) << daemon_->log();
    }
  }

  virtual store::ConnectionOptions db_options() const { return db_.options(); }

  void migrate() {
    store::Connection conn(db_options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(store::migrate(conn).ok());
  }

  // Schema, apns-sim and mailpushd: what most tests start with.
  void start_region(const json& extra = json::object()) {
    migrate();
    start_sim();
    sim_port_ = sim_->h2_port();
    start_daemon(extra);
  }

  void start_sim(std::vector<std::string> extra = {}) {
    sim_ = std::make_unique<ApnsSimProcess>(std::move(extra));
  }

  void start_daemon(const json& extra = json::object()) {
    const auto o = db_options();
    json patch = {{"database",
                   {{"host", o.host},
                    {"port", o.port},
                    {"socket", nullptr},
                    {"name", o.database},
                    {"password_file", password_file_},
                    {"pool_size", 4},
                    {"connect_timeout_ms", 1000},
                    {"query_timeout_ms", 5000},
                    {"migrate_on_start", false}}},
                  {"portal",
                   {{"kek_file", kek_.string()},
                    {"admin_token_file", (dir_ / "admin-tokens").string()},
                    {"trust_anchors", (certs_ / "apple-ca.crt").string()},
                    {"credential_refresh_s", 1}}},
                  {"apns",
                   {{"production", {{"host", "127.0.0.1"}, {"port", sim_port_}}},
                    {"sandbox", {{"host", "127.0.0.1"}, {"port", sim_port_}}},
                    {"ca_file", (certs_ / "apple-ca.crt").string()}}},
                  {"registration", {{"secret_file", region_secret().string()}}},
                  {"dispatch",
                   {{"instance_id", "fanout-a"}, {"lease_s", 3}, {"poll_ms", 50}, {"ttl_s", 600}}}};
    patch.merge_patch(extra);
    const auto region = write_region_file(dir_, patch.dump());
    daemon_ = std::make_unique<ChildProcess>(
        binary_dir() / "src/app/mailpushd", std::vector<std::string>{"--region", region.string()},
        dir_ / ("mailpushd-" + std::to_string(++launches_) + ".log"));
    port_ = listening_port(*daemon_, 30s);
    ASSERT_NE(port_, 0) << daemon_->log();
  }

  // The region secret, made once per test (a restarted daemon keeps the same one).
  std::filesystem::path region_secret() {
    const auto file = dir_ / "region-secret";
    return std::filesystem::exists(file) ? file : make_region_secret(dir_);
  }

  // Onboards a customer through the portal with `cert`.p12; returns its row id.
  std::int64_t onboard(const std::string& cert = "mail") {
    const auto body = form_body({{"password", read_file(certs_ / (cert + ".p12.password"))},
                                 {"app_id", "com.example.mail"},
                                 {"region", "dev"}},
                                read_file(certs_ / (cert + ".p12")));
    const auto reply = https_request(port_, "POST", "/portal/v1/customers", body,
                                     {{"Content-Type", "multipart/form-data; boundary=mpboundary"},
                                      {"Authorization", std::string("Bearer ") + kAdminToken}});
    EXPECT_EQ(reply.status, 201) << reply.body;
    const auto j = json::parse(reply.body, nullptr, false);
    customer_public_ = j.value("customer_id", "");
    admin_key_ = j.value("admin_key", "");
    registration_key_ = j.value("registration_key", "");
    store::Connection conn(db_options());
    EXPECT_TRUE(conn.connect().ok());
    auto rows = conn.query("SELECT id FROM customers WHERE customer_id = ?",
                           {store::Value{customer_public_}});
    EXPECT_TRUE(rows.ok() && !rows->empty());
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : 0;
  }

  // Renews the customer's certificate with `cert`.p12 through the portal.
  void renew(const std::string& cert) {
    std::string body = form_body({{"password", read_file(certs_ / (cert + ".p12.password"))}},
                                 read_file(certs_ / (cert + ".p12")));
    const auto reply = https_request(
        port_, "POST", "/portal/v1/customers/" + customer_public_ + "/certificate", body,
        {{"Content-Type", "multipart/form-data; boundary=mpboundary"},
         {"Authorization", "Bearer " + admin_key_}});
    ASSERT_EQ(reply.status, 200) << reply.body;
  }

  Device add_device(std::int64_t customer, const std::string& mailbox) {
    store::Connection conn(db_options());
    EXPECT_TRUE(conn.connect().ok());
    Device d;
    d.registration = insert_test_registration(conn, customer, mailbox);
    auto rows = conn.query(
        "SELECT d.token_hex FROM devices d JOIN registrations r ON r.device_id = d.id WHERE r.id = "
        "?",
        {store::Value{d.registration.id}});
    EXPECT_TRUE(rows.ok() && !rows->empty());
    d.token = (*rows)[0].text(0);
    d.subscription = "sub-" + hex_encode(random_bytes(6));
    return d;
  }

  // Registers a device through the registration API, as the app does.
  Device register_device(const std::string& mailbox, const std::string& token) {
    const auto reply = post_registration(port_, {{"customer_id", customer_public_},
                                                 {"registration_key", registration_key_},
                                                 {"mailbox", mailbox},
                                                 {"device_token", token},
                                                 {"environment", "production"}});
    EXPECT_EQ(reply.status, 201) << reply.body;
    const auto j = json::parse(reply.body, nullptr, false);
    Device d;
    d.registration.secret = j.is_object() ? j.value("capability", "") : "";
    EXPECT_EQ(secret_of_listener_url(j.value("listener_url", "")), d.registration.secret);
    EXPECT_FALSE(j.contains("registration_id")) << "no id is shown";
    d.token = token;
    d.subscription = "sub-" + hex_encode(random_bytes(6));
    return d;
  }

  // `n` devices, one mailbox each (`prefix`<i>@example.com), inserted and bound.
  std::vector<Device> bound_devices(std::int64_t customer, const std::string& prefix, int n) {
    std::vector<Device> devices;
    for (int i = 0; i < n; ++i) {
      devices.push_back(add_device(customer, prefix + std::to_string(i) + "@example.com"));
      bind(devices.back());
    }
    return devices;
  }

  HttpReply post(const Device& d, const std::string& events) {
    return https_request(
        port_, "POST", "/ews/v1/notify/" + d.registration.secret,
        notification(d.subscription, events),
        {{"Content-Type", "text/xml; charset=utf-8"}, {"SOAPAction", kSoapAction}});
  }
  static bool ok(const HttpReply& r) {
    return r.status == 200 && r.body.find(">OK<") != std::string::npos;
  }
  void bind(const Device& d) { ASSERT_TRUE(ok(post(d, status_event("wm-0")))) << daemon_->log(); }

  // Badges apns-sim accepted per token, in arrival order.
  std::map<std::string, std::vector<int>> received() const {
    std::map<std::string, std::vector<int>> out;
    std::int64_t since = 0;
    for (;;) {
      const auto j = sim_->control("GET", "/accepted?since=" + std::to_string(since));
      const auto& records = j["records"];
      if (records.empty()) break;
      for (const auto& r : records) {
        const auto payload = json::parse(r["payload"].get<std::string>(), nullptr, false);
        // Background pushes (wakes) carry no badge.
        if (!payload["aps"].contains("badge")) continue;
        out[r["token"].get<std::string>()].push_back(payload["aps"]["badge"].get<int>());
      }
      since = j["last_seq"].get<std::int64_t>();
    }
    return out;
  }
  // Waits until the newest badge of every token in `want` is the wanted one.
  bool wait_for_badges(const std::map<std::string, int>& want, std::chrono::seconds limit) const {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      const auto got = received();
      bool all = true;
      for (const auto& [token, badge] : want) {
        auto it = got.find(token);
        if (it == got.end() || it->second.empty() || it->second.back() != badge) all = false;
      }
      if (all) return true;
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

  // Waits until no acknowledged badge is missing at the devices (see lost()).
  bool nothing_lost(const std::map<std::string, int>& acked, std::chrono::seconds limit) const;

  std::int64_t scalar(const std::string& sql) {
    store::Connection conn(db_options());
    EXPECT_TRUE(conn.connect().ok());
    auto rows = conn.query(sql);
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : -1;
  }

  ScratchDatabase db_;
  std::string password_file_ = std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")
                                   ? std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")
                                   : "";
  std::filesystem::path dir_, certs_, kek_;
  std::unique_ptr<ApnsSimProcess> sim_;
  std::uint16_t sim_port_ = 0;
  std::unique_ptr<ChildProcess> daemon_;
  std::uint16_t port_ = 0;
  int launches_ = 0;
  std::string customer_public_, admin_key_, registration_key_;
};

TEST_F(Fanout, EachSubscriptionBadgesItsOwnDeviceWithTheExactCount) {
  // Each device of the mailbox holds its own Exchange subscription (the app subscribes on each
  // device), so every device gets every badge through its own; none gets another's.
  start_region();
  onboard();
  const auto phone = register_device("alice@example.com", std::string(64, 'a'));
  const auto tablet = register_device("Alice@Example.com", std::string(64, 'b'));
  const auto bob = register_device("bob@example.com", std::string(64, 'c'));
  ASSERT_FALSE(phone.registration.secret.empty());
  bind(phone);
  bind(tablet);
  bind(bob);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(received().empty()) << "a status event changes no badge";

  ASSERT_TRUE(ok(post(phone, unread_event("wm-1", 3))));
  ASSERT_TRUE(ok(post(tablet, unread_event("wm-1", 3))));
  ASSERT_TRUE(wait_for_badges({{phone.token, 3}, {tablet.token, 3}}, 10s)) << daemon_->log();
  // One new mail reaches both subscriptions: each device counts it once (not twice, as when the
  // count was the mailbox's and both subscriptions added to it).
  ASSERT_TRUE(ok(post(phone, new_mail_event("wm-2"))));
  ASSERT_TRUE(ok(post(tablet, new_mail_event("wm-2"))));
  ASSERT_TRUE(wait_for_badges({{phone.token, 4}, {tablet.token, 4}}, 10s));
  EXPECT_EQ(scalar("SELECT MAX(unread_count) FROM registrations"), 4);
  // Exchange sending a notification again after a lost OK: counted once.
  ASSERT_TRUE(ok(post(phone, new_mail_event("wm-2"))));
  ASSERT_TRUE(ok(post(tablet, unread_event("wm-3", 0))));
  ASSERT_TRUE(wait_for_badges({{tablet.token, 0}}, 10s)) << "0 clears";
  EXPECT_EQ(received()[phone.token].back(), 4) << "the tablet's subscription moved only the tablet";
  EXPECT_EQ(received().count(bob.token), 0u) << "another mailbox's device got nothing";

  ASSERT_TRUE(ok(post(bob, unread_event("wm-1", 7))));
  ASSERT_TRUE(wait_for_badges({{bob.token, 7}}, 10s));
  EXPECT_EQ(received()[phone.token].back(), 4);
  const auto accepted = sim_->control("GET", "/accepted");
  for (const auto& r : accepted["records"]) {
    EXPECT_EQ(r["headers"]["apns-topic"], "com.example.mail");
    EXPECT_EQ(r["payload"].get<std::string>().find("alert"), std::string::npos);
  }
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL"), 0)
      << "delivered badges are cleared";
  // Unregistered: its URL is told to Unsubscribe, and it gets no more badges.
  const auto gone = delete_registration(port_, tablet.registration.secret);
  ASSERT_EQ(gone.status, 200) << gone.body;
  const auto answer = post(tablet, unread_event("wm-4", 9));
  EXPECT_EQ(answer.status, 200);
  EXPECT_NE(answer.body.find(">Unsubscribe<"), std::string::npos) << answer.body;
  ASSERT_TRUE(ok(post(phone, unread_event("wm-5", 9))));
  ASSERT_TRUE(wait_for_badges({{phone.token, 9}}, 10s));
  EXPECT_EQ(received()[tablet.token].back(), 0) << "the unregistered device got nothing more";

  const auto log = daemon_->log();
  EXPECT_EQ(log.find(phone.token), std::string::npos) << "no full token in the log";
  EXPECT_EQ(log.find(phone.registration.secret), std::string::npos);
  EXPECT_EQ(log.find("alice@example.com"), std::string::npos) << "no mailbox address in the log";
}

TEST_F(Fanout, ASquatterOfTheAddressNeitherReadsNorSetsTheOwnersBadge) {
  // Someone registers the owner's address with a device of their own (the registration key is
  // in every copy of the app) and sets counts through their own URL.
  start_region();
  onboard();
  const auto owner = register_device("held@example.com", std::string(64, 'd'));
  const auto squatter = register_device("held@example.com", std::string(64, 'e'));
  bind(owner);
  bind(squatter);
  ASSERT_TRUE(ok(post(owner, unread_event("wm-1", 42))));
  ASSERT_TRUE(wait_for_badges({{owner.token, 42}}, 10s)) << daemon_->log();
  ASSERT_TRUE(ok(post(squatter, unread_event("wm-1", 99))));
  ASSERT_TRUE(wait_for_badges({{squatter.token, 99}}, 10s));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(received()[owner.token], std::vector<int>{42}) << "the owner's device is unaffected";
  EXPECT_EQ(received()[squatter.token], std::vector<int>{99}) << "the squatter never saw 42";
}

TEST_F(Fanout, UnregisteredAndBadTokensStopTheirDeviceOnly) {
  start_region();
  const auto customer = onboard();
  const auto phone = add_device(customer, "carol@example.com");
  const auto gone = add_device(customer, "carol@example.com");
  const auto bad = add_device(customer, "carol@example.com");
  bind(phone);
  bind(gone);
  bind(bad);
  sim_->control("POST", "/faults", json{{"unregistered", {gone.token}}}.dump());
  for (const auto* d : {&phone, &gone, &bad}) ASSERT_TRUE(ok(post(*d, unread_event("wm-1", 2))));
  ASSERT_TRUE(wait_for_badges({{phone.token, 2}, {bad.token, 2}}, 10s)) << daemon_->log();
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (scalar("SELECT COUNT(*) FROM devices WHERE state = 'unregistered'") != 1 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM devices WHERE state = 'unregistered' AND "
                   "unregistered_at IS NOT NULL"),
            1);

  // The next answer for `bad` is BadDeviceToken.
  sim_->control("POST", "/reset");
  sim_->control("POST", "/faults", json{{"bad_device_tokens", {bad.token}}}.dump());
  for (const auto* d : {&phone, &gone, &bad}) ASSERT_TRUE(ok(post(*d, new_mail_event("wm-2"))));
  ASSERT_TRUE(wait_for_badges({{phone.token, 3}}, 10s));
  const auto until2 = std::chrono::steady_clock::now() + 10s;
  while (scalar("SELECT COUNT(*) FROM devices WHERE state = 'invalid'") != 1 &&
         std::chrono::steady_clock::now() < until2) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM devices WHERE state = 'invalid' AND invalid_reason = "
                   "'BadDeviceToken'"),
            1)
      << daemon_->log();
  EXPECT_EQ(received().count(gone.token), 0u) << "the 410 device gets nothing after the 410";

  for (const auto* d : {&phone, &gone, &bad}) ASSERT_TRUE(ok(post(*d, new_mail_event("wm-3"))));
  ASSERT_TRUE(wait_for_badges({{phone.token, 4}}, 10s));
  EXPECT_EQ(received().count(bad.token), 0u) << "an invalid device gets nothing more";
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL"), 0);
}

TEST_F(Fanout, ARefusedCertificatePausesTheCustomerUntilRenewal) {
  start_region();
  const auto customer = onboard("mail");
  const auto phone = add_device(customer, "dan@example.com");
  bind(phone);
  const std::string fingerprint = [&] {
    store::Connection conn(db_options());
    EXPECT_TRUE(conn.connect().ok());
    auto rows =
        conn.query("SELECT HEX(fingerprint_sha256) FROM credentials WHERE state = 'active'");
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : std::string();
  }();
  std::string lower = fingerprint;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  sim_->control("POST", "/faults", json{{"bad_certificate", {lower}}}.dump());
  // Loaded before the first event, so the pause below is APNs refusing the certificate, not the
  // short wait of a customer whose credential the registry has not read yet.
  ASSERT_TRUE(daemon_->wait_for_log("credential.loaded", 15s)) << daemon_->log();
  ASSERT_TRUE(ok(post(phone, unread_event("wm-1", 5))));
  const auto paused = daemon_->wait_for_log("dispatch.customer_paused", 15s);
  ASSERT_TRUE(paused) << daemon_->log();
  EXPECT_NE(paused->find("BadCertificate"), std::string::npos) << *paused;
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL"), 1)
      << "kept queued";
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM devices WHERE state = 'active'"), 1) << "devices kept";
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM customers WHERE paused_reason IS NOT NULL"), 1);

  sim_->control("POST", "/faults", json{{"bad_certificate", json::array()}}.dump());
  // Another certificate (another fingerprint; both environments, like the first) resumes the
  // customer at once; the same one again would meet the same refusal, so only the probe
  // (dispatch.pause_probe_s) retries that.
  renew("mail-no-topics");
  ASSERT_TRUE(wait_for_badges({{phone.token, 5}}, 20s)) << daemon_->log();
  EXPECT_TRUE(daemon_->wait_for_log("dispatch.customer_resumed", 5s));
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM customers WHERE paused_reason IS NOT NULL"), 0);
}

TEST_F(Fanout, WhatWasQueuedWhileApnsWasDownIsDeliveredAfterwards) {
  migrate();
  sim_port_ = free_tcp_port();
  start_sim({"--port", std::to_string(sim_port_)});
  start_daemon();
  const auto customer = onboard();
  const auto devices = bound_devices(customer, "m", 5);
  sim_.reset();  // APNs unreachable
  for (std::size_t i = 0; i < devices.size(); ++i) {
    ASSERT_TRUE(ok(post(devices[i], unread_event("wm-1", static_cast<int>(10 + i)))));
  }
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL"), 5);
  start_sim({"--port", std::to_string(sim_port_)});
  std::map<std::string, int> want;
  for (std::size_t i = 0; i < devices.size(); ++i)
    want[devices[i].token] = static_cast<int>(10 + i);
  EXPECT_TRUE(wait_for_badges(want, 60s)) << daemon_->log();
}

TEST_F(Fanout, SigtermFinishesTheSendsInFlight) {
  migrate();
  start_sim({"--latency-ms", "1500"});
  sim_port_ = sim_->h2_port();
  start_daemon();
  const auto customer = onboard();
  const auto phone = add_device(customer, "slow@example.com");
  bind(phone);
  // Warm the connection, so that the next send is on the wire when SIGTERM comes.
  ASSERT_TRUE(ok(post(phone, unread_event("wm-1", 1))));
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL") != 0 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(wait_for_badges({{phone.token, 1}}, 1s)) << daemon_->log();
  // apns-sim records a request when it arrives and answers 1.5 s later: SIGTERM comes while
  // the answer is outstanding, and the daemon must wait for it and write the result.
  ASSERT_TRUE(ok(post(phone, unread_event("wm-2", 2))));
  ASSERT_TRUE(wait_for_badges({{phone.token, 2}}, 5s));
  daemon_->signal(SIGTERM);
  EXPECT_EQ(daemon_->wait(20s), std::optional<int>(0)) << daemon_->log();
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL"), 0)
      << "its result was written before exit";
  EXPECT_NE(daemon_->log().find("dispatch.stopped"), std::string::npos);
}

TEST_F(Fanout, RetryableFailuresBackOffThenDeadLetterAndAreCounted) {
  start_region({{"dispatch", {{"max_attempts", 2}}}});
  const auto customer = onboard();
  const auto phone = add_device(customer, "busy@example.com");
  bind(phone);
  sim_->control("POST", "/faults", json{{"error_rates", {{"503", 1.0}}}}.dump());
  ASSERT_TRUE(ok(post(phone, unread_event("wm-1", 4))));
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (scalar("SELECT COUNT(*) FROM outbox WHERE state = 'dead'") != 1 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox WHERE state = 'dead' AND attempts = 2 AND "
                   "last_error LIKE 'TooManyAttempts%'"),
            1)
      << daemon_->log();
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_outbox_dead_letters_total{reason=\"TooManyAttempts"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(received().count(phone.token), 0u);
}

// Posts callbacks for `devices` (one mailbox each) from several threads, each mailbox's unread
// count going up by one per callback; records the highest acknowledged count per mailbox.
class Load {
 public:
  Load(std::uint16_t& port, const std::vector<Device>& devices) : port_(port), devices_(devices) {
    for (std::size_t t = 0; t < 4; ++t) {
      threads_.emplace_back([this, t] {
        std::vector<int> next(devices_.size(), 1);
        while (!stop_) {
          for (std::size_t i = t; i < devices_.size() && !stop_; i += 4) {
            const auto& d = devices_[i];
            const int badge = next[i];
            HttpReply r;
            try {
              r = https_request(
                  port_, "POST", "/ews/v1/notify/" + d.registration.secret,
                  notification(d.subscription, unread_event("wm-" + std::to_string(badge), badge)),
                  {{"Content-Type", "text/xml"}, {"SOAPAction", kSoapAction}});
            } catch (const std::exception&) {
              r.status = 0;
            }
            std::lock_guard lock(mutex_);
            if (r.status == 200 && r.body.find(">OK<") != std::string::npos) {
              acked_[d.token] = badge;
              ++next[i];
              ++acks_;
            } else {
              ++refused_[r.status];
              // Not acknowledged: Exchange would send it again; so do we.
              attempted_[d.token] = std::max(attempted_[d.token], badge);
            }
          }
          std::this_thread::sleep_for(5ms);
        }
      });
    }
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  std::map<std::string, int> acked() const {
    std::lock_guard lock(mutex_);
    return acked_;
  }
  std::map<std::string, int> attempted() const {
    std::lock_guard lock(mutex_);
    return attempted_;
  }
  std::uint64_t acks() const {
    std::lock_guard lock(mutex_);
    return acks_;
  }
  std::map<int, int> refused() const {
    std::lock_guard lock(mutex_);
    return refused_;
  }

 private:
  std::uint16_t& port_;
  const std::vector<Device>& devices_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::map<std::string, int> acked_, attempted_;
  std::map<int, int> refused_;
  std::uint64_t acks_ = 0;
  std::vector<std::thread> threads_;
};

// Counts acknowledged events whose newest badge never reached the device: the final badge a
// device received must be its mailbox's last acknowledged count (or a later one that was written
// but whose answer was lost in the crash).
int lost(const std::map<std::string, int>& acked,
         const std::map<std::string, std::vector<int>>& got) {
  int losses = 0;
  for (const auto& [token, badge] : acked) {
    auto it = got.find(token);
    if (it == got.end() || it->second.empty() || it->second.back() < badge) ++losses;
  }
  return losses;
}

bool Fanout::nothing_lost(const std::map<std::string, int>& acked,
                          std::chrono::seconds limit) const {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (lost(acked, received()) == 0) return true;
    std::this_thread::sleep_for(200ms);
  }
  return false;
}

TEST_F(Fanout, KilledWithSigkillUnderLoadLosesNoAcknowledgedEvent) {
  start_region();
  const auto customer = onboard();
  const auto devices = bound_devices(customer, "k", 40);
  {
    Load load(port_, devices);
    // Under load: at least 3 s and 200 acknowledged callbacks (slower builds take longer).
    const auto started = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - started < 3s ||
           (load.acks() < 200 && std::chrono::steady_clock::now() - started < 20s)) {
      std::this_thread::sleep_for(100ms);
    }
    daemon_->signal(SIGKILL);
    ASSERT_TRUE(daemon_->wait(10s).has_value());
    std::this_thread::sleep_for(500ms);
    load.stop();
    const auto acked = load.acked();
    ASSERT_GT(load.acks(), 100u) << "the load ran";
    start_daemon();  // same instance id: sends its own rows at once; same database
    ASSERT_TRUE(nothing_lost(acked, 60s)) << "lost: " << lost(acked, received()) << "\n"
                                          << daemon_->log();
    std::cout << "[ kill test ] acknowledged " << load.acks() << " callbacks; lost "
              << lost(acked, received()) << " acknowledged badges\n";
  }
}

TEST_F(Fanout, ASecondInstanceTakesOverTheRowsOfOneThatDied) {
  start_region();
  const auto customer = onboard();
  const auto devices = bound_devices(customer, "t", 3);
  sim_->control("POST", "/faults", json{{"silent", true}}.dump());
  for (std::size_t i = 0; i < devices.size(); ++i) {
    ASSERT_TRUE(ok(post(devices[i], unread_event("wm-1", static_cast<int>(20 + i)))));
  }
  daemon_->signal(SIGKILL);
  ASSERT_TRUE(daemon_->wait(10s).has_value());
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner = 'fanout-a'"), 3);
  sim_.reset();
  start_sim();
  sim_port_ = sim_->h2_port();
  start_daemon({{"dispatch", {{"instance_id", "fanout-b"}}}});
  std::map<std::string, int> want;
  for (std::size_t i = 0; i < devices.size(); ++i)
    want[devices[i].token] = static_cast<int>(20 + i);
  EXPECT_TRUE(wait_for_badges(want, 30s)) << daemon_->log();
  EXPECT_TRUE(daemon_->wait_for_log("dispatch.took_over", 1s).has_value());
}

// The same job on a MariaDB server of its own, restarted under load.
class FanoutPrivateDb : public Fanout {
 protected:
  void SetUp() override {
    Fanout::SetUp();
    server_.start();
    password_file_ = server_.password_file().string();
  }
  store::ConnectionOptions db_options() const override { return server_.options(); }
  PrivateMariadb server_;
};

TEST_F(FanoutPrivateDb, MariadbRestartedUnderLoadGives503sThenRecoversWithNothingLost) {
  start_region();
  const auto customer = onboard();
  const auto devices = bound_devices(customer, "r", 20);
  Load load(port_, devices);
  std::this_thread::sleep_for(2s);
  server_.stop();
  std::this_thread::sleep_for(2s);
  server_.start();
  std::this_thread::sleep_for(4s);
  load.stop();
  const auto refused = load.refused();
  EXPECT_GT(refused.count(503), 0u) << "the listener said 503 while the database was away";
  const auto acked = load.acked();
  EXPECT_TRUE(nothing_lost(acked, 60s)) << "lost: " << lost(acked, received()) << "\n"
                                        << daemon_->log();
  std::cout << "[ db restart ] acknowledged " << load.acks() << " callbacks; 503s "
            << (refused.count(503) ? refused.at(503) : 0) << "; lost " << lost(acked, received())
            << "\n";
}

// ---------------------------------------------------------------- Microsoft Graph (issue 20)

constexpr const char* kClientState = "c3RhdGUtb2YtZGV2aWNlLTE";  // as in tests/data/graph

// A graph-samples body, as Graph would POST it for the app's subscription.
std::string graph_sample(const std::string& name) {
  return read_file(source_dir() / "tests/data/graph" / name);
}

struct GraphDevice {
  std::string capability, notification_path, lifecycle_path;
  std::string notification_url, lifecycle_url;
};

std::string path_of(const std::string& url) {
  const auto host_end = url.find('/', std::string("https://").size());
  return host_end == std::string::npos ? "" : url.substr(host_end);
}

class FanoutGraph : public Fanout {
 protected:
  static bool wait_until(const std::function<bool()>& done, std::chrono::seconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(100ms);
    }
    return true;
  }
  GraphDevice register_graph(const std::string& mailbox, const std::string& token,
                             std::optional<int> unread = std::nullopt) {
    json body = {{"customer_id", customer_public_},
                 {"registration_key", registration_key_},
                 {"mailbox", mailbox},
                 {"device_token", token},
                 {"environment", "production"},
                 {"source", "graph"},
                 {"client_state", kClientState},
                 {"tenant_id", "84bd8158-6d4d-4958-8b9f-9d6445542f95"}};
    if (unread) body["unread"] = *unread;
    const auto reply = post_registration(port_, body);
    EXPECT_EQ(reply.status, 201) << reply.body;
    const auto j = json::parse(reply.body, nullptr, false);
    GraphDevice d;
    if (!j.is_object()) return d;
    d.capability = j.value("capability", "");
    d.notification_url = j.value("notification_url", "");
    d.lifecycle_url = j.value("lifecycle_notification_url", "");
    d.notification_path = path_of(j.value("notification_url", ""));
    d.lifecycle_path = path_of(j.value("lifecycle_notification_url", ""));
    EXPECT_EQ(d.notification_path, "/graph/v1/notify/" + d.capability);
    EXPECT_EQ(d.lifecycle_path, "/graph/v1/lifecycle/" + d.capability);
    EXPECT_EQ(j.value("resource", ""), "me/mailFolders('inbox')/messages?$filter=isRead eq false");
    EXPECT_EQ(j.value("change_type", ""), "created,deleted");
    EXPECT_EQ(j.value("expiration_max_minutes", 0), 10080);
    EXPECT_FALSE(j.contains("listener_url"));
    return d;
  }
  HttpReply graph_post(const std::string& path, const std::string& body,
                       const std::string& type = "application/json; charset=utf-8") {
    return https_request(port_, "POST", path, body, {{"Content-Type", type}});
  }
  HttpReply validate(const std::string& path, const std::string& token_query) {
    return https_request(port_, "POST", path + "?validationToken=" + token_query, "",
                         {{"Content-Type", "text/plain"}});
  }
};

TEST_F(FanoutGraph, AGraphAccountAndAnEwsAccountBadgeOneDeviceWithTheirSum) {
  start_region();
  onboard();
  const GraphSimProcess graph;
  const std::string token(64, 'd');
  // The phone has an on-premises account (EWS) and an Exchange Online one (Graph).
  const auto onprem = register_device("alice@onprem.example.com", token);
  const auto online = register_graph("alice@online.example.com", token, 2);
  bind(onprem);

  // The app creates the subscription at Graph, which validates both URLs first (the token has
  // spaces and a colon: the listener must decode it).
  int status = 0;
  const json sub =
      graph.subscribe(online.notification_url, online.lifecycle_url, kClientState, &status);
  ASSERT_EQ(status, 201) << sub.dump() << graph.log() << daemon_->log();
  const std::string id = sub["id"];
  EXPECT_EQ(graph.stats()["validations"]["ok"], 2);
  EXPECT_LT(sub["validation_ms"].get<double>(), 1000.0);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE last_heard_at IS NOT NULL AND "
                   "source = 'graph'"),
            0)
      << "a validation writes nothing";
  // Graph also encodes a space as '+'.
  const auto v = validate(online.notification_path, "Validation%3a+Testing+reachability");
  EXPECT_EQ(v.status, 200) << v.body;
  EXPECT_EQ(v.body, "Validation: Testing reachability");
  EXPECT_EQ(v.header("Content-Type").rfind("text/plain", 0), 0u);
  EXPECT_EQ(v.header("X-Content-Type-Options"), "nosniff");
  // A URL no registration has fails Graph's validation: the subscription is not created.
  status = 0;
  const json refused =
      graph.subscribe(online.notification_url.substr(0, online.notification_url.rfind('/') + 1) +
                          std::string(44, 'A'),
                      "", kClientState, &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(refused["error"]["code"], "ValidationError") << refused.dump();

  const auto delivered = [](const json& d) {
    return d["outcome"] == "delivered" && d["last_status"] == 202 && d["attempts"] == 1;
  };
  // A new unread message: 2 stated + 1.
  json d = graph.notify(id, {{"created", "m1"}});
  ASSERT_TRUE(delivered(d)) << d.dump() << daemon_->log();
  ASSERT_TRUE(wait_for_badges({{token, 3}}, 10s)) << daemon_->log();
  // The EWS account's truth: 4 unread there; the device shows both accounts.
  ASSERT_TRUE(ok(post(onprem, unread_event("wm-1", 4))));
  ASSERT_TRUE(wait_for_badges({{token, 7}}, 10s));
  // A batch: the first message again (resent), a second one, and its update: +1.
  d = graph.notify(id, {{"created", "m1"}, {"created", "m2"}, {"updated", "m2"}});
  ASSERT_TRUE(delivered(d)) << d.dump();
  ASSERT_TRUE(wait_for_badges({{token, 8}}, 10s));
  // The first message read: -1; the same notification again changes nothing.
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(delivered(graph.notify(id, {{"deleted", "m1"}})));
  ASSERT_TRUE(wait_for_badges({{token, 7}}, 10s));
  EXPECT_EQ(scalar("SELECT unread_count FROM registrations WHERE source = 'graph'"), 3);

  // Someone who learned the URL but not the clientState moves nothing (and is still told 202).
  std::string forged = graph_sample("01-created-unread-message.json");
  forged.replace(forged.find(kClientState), std::string(kClientState).size(), "guessed-state-x");
  auto r = graph_post(online.notification_path, forged);
  EXPECT_EQ(r.status, 202);
  // The app resyncs its count: 10 unread in the online Inbox.
  const auto resync = https_request(
      port_, "PUT", "/v1/registrations/self/unread", R"({"unread":10})",
      {{"Content-Type", "application/json"}, {"Authorization", "Bearer " + online.capability}});
  ASSERT_EQ(resync.status, 200) << resync.body;
  ASSERT_TRUE(wait_for_badges({{token, 14}}, 10s));
  EXPECT_EQ(scalar("SELECT unread_count FROM registrations WHERE source = 'graph'"), 10)
      << "the forged notification was dropped";

  // A lifecycle event goes to the lifecycle URL and moves no badge.
  d = graph.lifecycle(id, "reauthorizationRequired");
  EXPECT_TRUE(delivered(d)) << d.dump();
  const auto metrics = https_request(port_, "GET", "/metrics", "", {});
  EXPECT_NE(metrics.body.find("mailpush_graph_items_total{result=\"wrong_client_state\"} 1"),
            std::string::npos)
      << metrics.body.substr(0, 200);
  EXPECT_NE(metrics.body.find("mailpush_graph_items_total{result=\"reauthorization_required\"} 1"),
            std::string::npos);
  // Graph judged the endpoint: every answer well within 3 s.
  const json stats = graph.stats();
  EXPECT_EQ(stats["over_3s"], 0);
  EXPECT_EQ(stats["retries"], 0);
  EXPECT_EQ(stats["endpoints"].begin().value()["class"], "ok") << stats.dump();

  // The EWS URL does not take Graph's secret, nor the Graph URL the EWS one.
  EXPECT_EQ(graph_post("/graph/v1/notify/" + onprem.registration.secret,
                       graph_sample("01-created-unread-message.json"))
                .status,
            404);
  const auto ews_on_graph =
      https_request(port_, "POST", "/ews/v1/notify/" + online.capability,
                    notification("sub-x", new_mail_event("wm-9")),
                    {{"Content-Type", "text/xml; charset=utf-8"}, {"SOAPAction", kSoapAction}});
  EXPECT_NE(ews_on_graph.body.find(">Unsubscribe<"), std::string::npos) << ews_on_graph.body;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(received()[token].back(), 14);

  const auto log = daemon_->log();
  EXPECT_EQ(log.find(online.capability), std::string::npos) << "no capability in the log";
  EXPECT_EQ(log.find(kClientState), std::string::npos) << "no clientState in the log";
  EXPECT_EQ(log.find(token), std::string::npos);
}

TEST_F(FanoutGraph, LifecycleEventsWakeTheAppWithABackgroundPushAtMostOnceAWhile) {
  start_region();
  onboard();
  const GraphSimProcess graph;
  const std::string token(64, '7');
  const auto online = register_graph("dana@online.example.com", token, 1);
  int status = 0;
  const json sub =
      graph.subscribe(online.notification_url, online.lifecycle_url, kClientState, &status);
  ASSERT_EQ(status, 201) << sub.dump();
  const std::string id = sub["id"];
  // Background pushes apns-sim accepted for the token, with their headers.
  const auto wakes = [&] {
    std::vector<json> out;
    const json accepted = sim_->control("GET", "/accepted");  // a named value: the loop reads it
    for (const auto& r : accepted["records"]) {
      const auto payload = json::parse(r["payload"].get<std::string>(), nullptr, false);
      if (r["token"] == token && !payload["aps"].contains("badge")) out.push_back(r);
    }
    return out;
  };
  json d = graph.lifecycle(id, "reauthorizationRequired");
  ASSERT_EQ(d["last_status"], 202) << d.dump();
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (wakes().empty() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(100ms);
  }
  const auto first = wakes();
  ASSERT_EQ(first.size(), 1u) << daemon_->log();
  EXPECT_EQ(first[0]["headers"]["apns-push-type"], "background");
  EXPECT_EQ(first[0]["headers"]["apns-priority"], "5");
  EXPECT_FALSE(first[0]["headers"].contains("apns-collapse-id"));
  EXPECT_EQ(first[0]["payload"], R"({"aps":{"content-available":1}})");
  EXPECT_TRUE(wait_for_badges({{token, 1}}, 10s)) << "the badge goes with it";
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE wake_reason IS NULL AND "
                   "wake_sent_at IS NOT NULL"),
            1);

  // Within the interval: missed, then subscriptionRemoved; recorded, no second wake.
  d = graph.lifecycle(id, "missed");
  ASSERT_EQ(d["last_status"], 202) << d.dump();
  d = graph.lifecycle(id, "subscriptionRemoved");
  ASSERT_EQ(d["last_status"], 202) << d.dump();
  EXPECT_EQ(d["removed"], true) << "Graph sends nothing more for a removed subscription";
  ASSERT_TRUE(wait_until([&] {
    return scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL") == 0;
  }));
  EXPECT_EQ(wakes().size(), 1u) << "at most one wake per registration per interval";
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE subscription_id IS NULL AND "
                   "source = 'graph'"),
            1)
      << "the removed subscription is unbound";
  const auto metrics = https_request(port_, "GET", "/metrics", "", {});
  EXPECT_NE(
      metrics.body.find("mailpush_dispatch_wakes_total{reason=\"reauthorize\",result=\"sent\"} 1"),
      std::string::npos);
  EXPECT_NE(metrics.body.find(
                "mailpush_dispatch_wakes_total{reason=\"resubscribe\",result=\"limited\"} 1"),
            std::string::npos)
      << metrics.body;
  // The app subscribes again; Graph validates the same URLs again.
  status = 0;
  graph.subscribe(online.notification_url, online.lifecycle_url, kClientState, &status);
  EXPECT_EQ(status, 201);
}

TEST_F(FanoutGraph, AValidatedSubscriptionIsConfirmedSoAQuietMailboxIsNotEndedAsUnconfirmed) {
  start_region();
  onboard();
  const GraphSimProcess graph;
  const auto quiet = register_graph("quiet@online.example.com", std::string(64, 'c'));
  int status = 0;
  graph.subscribe(quiet.notification_url, quiet.lifecycle_url, kClientState, &status);
  ASSERT_EQ(status, 201);
  // Not in the validation's answer (the flush runs every heard_flush_s, 30 s here)...
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE last_heard_at IS NOT NULL"), 0);
  // ...but before the daemon stops: the registration is confirmed, so the upkeep does not end it
  // as one no subscription ever confirmed, however long its mailbox gets no mail.
  daemon_->signal(SIGTERM);
  ASSERT_EQ(daemon_->wait(20s), std::optional<int>(0)) << daemon_->log();
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE last_heard_at IS NOT NULL AND "
                   "source = 'graph' AND state = 'active'"),
            1);
  EXPECT_NE(daemon_->log().find("\"graph.confirmed\""), std::string::npos);
}

TEST_F(FanoutGraph, HostileGraphRequestsGetAClearRefusalAndRecordNothing) {
  start_region();
  onboard();
  const auto online = register_graph("bob@online.example.com", std::string(64, 'e'));
  const std::string p = online.notification_path;
  // Validation of a URL no registration has: 404, so Graph does not create the subscription.
  EXPECT_EQ(validate("/graph/v1/notify/" + std::string(44, 'A'), "abc").status, 404);
  // Tokens that cannot be echoed safely.
  for (const char* bad :
       {"%3Cscript%3Ealert(1)%3C%2Fscript%3E", "a%0D%0ASet-Cookie:%20x=1", "", "%C0%AF", "%zz"}) {
    const auto v = validate(p, bad);
    EXPECT_EQ(v.status, 400) << bad;
    EXPECT_EQ(v.body.find("script"), std::string::npos);
  }
  EXPECT_EQ(validate(p, std::string(1025, 'a')).status, 400);
  // Bodies.
  EXPECT_EQ(graph_post(p, "{\"value\":[", "application/json").status, 400);
  EXPECT_EQ(graph_post(p, "<value/>", "text/xml").status, 415);
  EXPECT_EQ(graph_post(p, std::string(5000, '[') + std::string(5000, ']')).status, 400);
  EXPECT_EQ(graph_post(p, R"({"value":[{"subscriptionId":7,"changeType":"created"}]})").status,
            400);
  EXPECT_EQ(graph_post(p, "{\"value\":[{\"subscriptionId\":\"\xC0\xAF\"}]}").status, 400);
  std::string many = R"({"value":[)";
  for (int i = 0; i < 1001; ++i) {
    many += std::string(i ? "," : "") + R"({"subscriptionId":"s","changeType":"updated"})";
  }
  EXPECT_EQ(graph_post(p, many + "]}").status, 400);
  EXPECT_EQ(graph_post(p, "{\"value\":[]}" + std::string(300 * 1024, ' ')).status, 413);
  // A subscription id no GUID is that long: refused alone, never written with other notifications.
  EXPECT_EQ(graph_post(p, R"({"value":[{"subscriptionId":")" + std::string(200, 's') +
                              R"(","changeType":"created","clientState":")" + kClientState +
                              R"(","resourceData":{"id":"m-long"}}]})")
                .status,
            400);
  // The resync needs the capability and a count.
  EXPECT_EQ(https_request(port_, "PUT", "/v1/registrations/self/unread", R"({"unread":1})",
                          {{"Content-Type", "application/json"}})
                .status,
            401);
  EXPECT_EQ(https_request(port_, "PUT", "/v1/registrations/self/unread", R"({"unread":-1})",
                          {{"Content-Type", "application/json"},
                           {"Authorization", "Bearer " + online.capability}})
                .status,
            400);
  EXPECT_EQ(https_request(port_, "PUT", "/v1/registrations/self/unread", R"({"unread":1})",
                          {{"Content-Type", "application/json"},
                           {"Authorization", "Bearer " + std::string(44, 'B')}})
                .status,
            404);
  // Nothing was recorded and the daemon is well.
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations WHERE last_heard_at IS NOT NULL OR "
                   "unread_count <> 0 OR badge_owner IS NOT NULL"),
            0);
  EXPECT_EQ(graph_post(p, graph_sample("01-created-unread-message.json")).status, 202);
  EXPECT_TRUE(wait_for_badges({{std::string(64, 'e'), 1}}, 10s));
}

TEST_F(FanoutGraph, TheRegistrationApiChecksGraphFields) {
  start_region();
  onboard();
  const json base = {{"customer_id", customer_public_},
                     {"registration_key", registration_key_},
                     {"mailbox", "carol@online.example.com"},
                     {"device_token", std::string(64, 'f')},
                     {"environment", "production"}};
  const auto refused = [&](json patch, const std::string& field) {
    json body = base;
    body.merge_patch(patch);
    const auto reply = post_registration(port_, body);
    EXPECT_EQ(reply.status, 400) << patch.dump() << " " << reply.body;
    EXPECT_EQ(json::parse(reply.body, nullptr, false).value("field", ""), field) << reply.body;
  };
  refused({{"source", "imap"}}, "source");
  refused({{"source", "graph"}}, "client_state");
  refused({{"source", "graph"}, {"client_state", "short"}}, "client_state");
  refused({{"source", "graph"}, {"client_state", std::string(129, 'x')}}, "client_state");
  refused({{"source", "graph"}, {"client_state", std::string(20, 'x')}, {"unread", -1}}, "unread");
  refused({{"source", "graph"}, {"client_state", std::string(20, 'x')}, {"unread", "3"}}, "unread");
  refused({{"source", "graph"}, {"client_state", std::string(20, 'x')}, {"folder_id", "AQ"}},
          "folder_id");
  refused({{"client_state", std::string(20, 'x')}}, "client_state");
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM registrations"), 0);
}

TEST_F(FanoutGraph, KilledWithSigkillUnderGraphLoadLosesNoAcknowledgedNotification) {
  // The per-registration limit is off: the load posts faster than a mailbox gets mail.
  const json limits = {{"limits", {{"callbacks_per_second_per_registration", 0}}}};
  start_region(limits);
  onboard();
  // Graph retries what was not answered 2xx (here sooner and for longer than Graph's defaults,
  // so that the run ends within seconds of the restart).
  const GraphSimProcess graph({"--retry-base-ms", "200", "--retry-cap-ms", "1000", "--max-attempts",
                               "60", "--answer-timeout-ms", "3000"});
  std::map<std::string, std::string> token_of;  // subscription id → device token
  for (int i = 0; i < 12; ++i) {
    const std::string token = hex_encode(random_bytes(32));
    const auto d = register_graph("k" + std::to_string(i) + "@online.example.com", token);
    int status = 0;
    const json sub = graph.subscribe(d.notification_url, d.lifecycle_url, kClientState, &status);
    ASSERT_EQ(status, 201) << sub.dump();
    token_of[sub["id"]] = token;
  }
  // 8 s of created notifications at 200 a second, each a new message for a random subscription;
  // the daemon is killed after 3 s and started again on the same port 1 s later.
  json report;
  std::thread load([&] {
    report = graph.control("POST", "/load", {{"rate", 200}, {"seconds", 8}, {"drain_seconds", 60}},
                           nullptr, 120s);
  });
  std::this_thread::sleep_for(3s);
  const std::uint16_t port = port_;
  daemon_->signal(SIGKILL);
  const bool died = daemon_->wait(10s).has_value();
  std::this_thread::sleep_for(1s);
  json restart = limits;
  restart["listener"] = {{"port", port}};
  start_daemon(restart);
  load.join();
  ASSERT_TRUE(died);
  ASSERT_EQ(port_, port);
  EXPECT_GT(report.value("retries", 0), 0) << "the outage was retried: " << report.dump();
  EXPECT_EQ(report["given_up"], 0) << report.dump();
  EXPECT_EQ(report["still_in_flight"], 0) << report.dump();
  // Every notification was eventually answered 202, and every message is counted exactly once:
  // none acknowledged was lost, none resent was counted twice.
  std::map<std::string, int> want;
  std::uint64_t accepted = 0;
  const json subs = graph.control("GET", "/v1.0/subscriptions");
  for (const auto& s : subs["value"]) {
    const std::string& token = token_of.at(s["id"].get<std::string>());
    const auto sent = s["items_sent"].get<std::int64_t>();
    EXPECT_EQ(s["items_accepted"].get<std::int64_t>(), sent) << s.dump();
    accepted += s["items_accepted"].get<std::uint64_t>();
    const auto count = scalar(
        "SELECT r.unread_count FROM registrations r JOIN devices d ON d.id = r.device_id WHERE "
        "d.token_hex = '" +
        token + "'");
    EXPECT_EQ(count, sent) << s.dump();
    if (count > 0) want[token] = static_cast<int>(count);
  }
  EXPECT_EQ(accepted, 1600u);
  EXPECT_TRUE(wait_for_badges(want, 60s)) << daemon_->log();
  std::cout << "[ kill test ] " << report.dump() << "\n";
}

}  // namespace
}  // namespace mp::test
