// The EWS listener end to end: mailpushd over HTTPS against the real MariaDB, with real and
// hand-built SendNotification bodies. Checks the OK / Unsubscribe / 503 / 403 rules and that
// what was answered OK is in the database.
#include <gtest/gtest.h>
#include <signal.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <thread>

#include "store/migrations.hpp"
#include "test_env.hpp"
#include "test_ews_bodies.hpp"

namespace mp::test {
namespace {

using namespace std::chrono_literals;

// What the listener answered: HTTP status and SubscriptionStatus (empty when none).
struct Answer {
  int status = 0;
  std::string subscription_status;
  std::string body;
  std::string retry_after;
};

class EwsListener : public ::testing::Test {
 protected:
  void SetUp() override {
    db_.start();
    dir_ = make_temp_dir("ews");
    store::Connection conn(db_.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(store::migrate(conn).ok());
    customer_ = insert_test_customer(conn, "dev-" + std::to_string(::getpid()) + "a");
    open_customer_ =
        insert_test_customer(conn, "dev-" + std::to_string(::getpid()) + "b", "192.0.2.0/24");
    start_daemon(R"({"listener": {"trusted_proxies": ["127.0.0.1/32"]}})");
  }

  void TearDown() override {
    if (daemon_) {
      daemon_->signal(SIGTERM);
      EXPECT_EQ(daemon_->wait(15s), std::optional<int>(0)) << daemon_->log();
    }
  }

  void start_daemon(const std::string& extra) {
    nlohmann::json patch = {{"database",
                             {{"host", "127.0.0.1"},
                              {"port", db_.port()},
                              {"socket", nullptr},
                              {"name", PrivateMariadb::kDatabase},
                              {"password_file", db_.password_file().string()},
                              {"connect_timeout_ms", 1000},
                              {"migrate_on_start", true}}}};
    patch.merge_patch(nlohmann::json::parse(extra));
    const auto region = write_region_file(dir_, patch.dump());
    // A log of its own per start: the port is read from it.
    daemon_ = std::make_unique<ChildProcess>(
        binary_dir() / "src/app/mailpushd", std::vector<std::string>{"--region", region.string()},
        dir_ / ("mailpushd-" + std::to_string(++starts_) + ".log"));
    port_ = listening_port(*daemon_, 30s);
    ASSERT_NE(port_, 0) << daemon_->log();
  }

  // Stops the fixture's daemon and starts one with `extra` merged into the region file.
  void restart_daemon(const std::string& extra) {
    daemon_->signal(SIGTERM);
    ASSERT_EQ(daemon_->wait(15s), std::optional<int>(0)) << daemon_->log();
    start_daemon(extra);
  }

  TestRegistration registration(const std::string& mailbox, std::int64_t customer = 0) {
    store::Connection conn(db_.options());
    EXPECT_TRUE(conn.connect().ok());
    return insert_test_registration(conn, customer ? customer : customer_, mailbox);
  }

  std::string query_one(const std::string& sql, std::int64_t id) {
    store::Connection conn(db_.options());
    EXPECT_TRUE(conn.connect().ok());
    auto rows = conn.query(sql, {store::Value{id}});
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : "";
  }

  // Runs `sql` with the registration id as its one parameter.
  void execute(const std::string& sql, std::int64_t id) {
    store::Connection conn(db_.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(conn.execute(sql, {store::Value{id}}).ok()) << sql;
  }
  void set_last_heard_2020(std::int64_t id) {
    execute("UPDATE registrations SET last_heard_at = '2020-01-01' WHERE id = ?", id);
  }
  // Whether the registration's last-heard time was written after set_last_heard_2020, within
  // `wait` (heartbeats are written in bulk).
  bool heard_again(std::int64_t id, std::chrono::milliseconds wait = 0ms) {
    const auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
      if (query_one("SELECT last_heard_at FROM registrations WHERE id = ?", id) > "2026") {
        return true;
      }
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(100ms);
    }
  }

  Answer post(const std::string& secret, const std::string& body,
              std::vector<std::pair<std::string, std::string>> headers = {}) {
    if (headers.empty()) {
      headers = {{"Content-Type", "text/xml; charset=utf-8"},
                 {"SOAPAction", "\"" + kSoapAction + "\""}};
    }
    const auto reply = https_request(port_, "POST", "/ews/v1/notify/" + secret, body, headers);
    Answer a{reply.status, "", reply.body, reply.header("Retry-After")};
    for (const char* s : {"Unsubscribe", "OK"}) {
      if (reply.body.find(std::string(">") + s + "</") != std::string::npos) {
        a.subscription_status = s;
        break;
      }
    }
    return a;
  }

  PrivateMariadb db_;
  std::filesystem::path dir_;
  std::unique_ptr<ChildProcess> daemon_;
  int starts_ = 0;
  std::uint16_t port_ = 0;
  std::int64_t customer_ = 0;
  std::int64_t open_customer_ = 0;
};

TEST_F(EwsListener, UnknownSecretsAreToldToUnsubscribe) {
  auto a =
      post("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", notification("S1", status_event("w1")));
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.subscription_status, "Unsubscribe");
  a = post("short", notification("S1", status_event("w1")));
  EXPECT_EQ(a.subscription_status, "Unsubscribe");
}

TEST_F(EwsListener, StatusBindsNewMailCountsUnreadCountSets) {
  const auto reg = registration("alice@example.com");
  auto a = post(reg.secret, notification("SUB-A", status_event("w0")));
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.subscription_status, "OK");
  EXPECT_EQ(query_one("SELECT subscription_id FROM registrations WHERE id = ?", reg.id), "SUB-A");

  a = post(reg.secret, notification("SUB-A", new_mail_event("w1") + new_mail_event("w2")));
  EXPECT_EQ(a.subscription_status, "OK");
  EXPECT_EQ(query_one("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "2");
  a = post(reg.secret, notification("SUB-A", unread_event("w3", 7) + new_mail_event("w4")));
  EXPECT_EQ(a.subscription_status, "OK");
  EXPECT_EQ(query_one("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "8");
  EXPECT_FALSE(query_one("SELECT last_heard_at FROM registrations WHERE id = ?", reg.id).empty());
  // One after the other, each callback was its own group commit; operators see them counted.
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_db_batch_writes_count 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("mailpush_db_batch_writes_sum 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("mailpush_db_batch_seconds_count 3\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("mailpush_db_batch_failures_total 0\n"), std::string::npos) << metrics;
}

TEST_F(EwsListener, ResubscribingRebindsAndTheOldSubscriptionIsEnded) {
  const auto reg = registration("bob@example.com");
  EXPECT_EQ(post(reg.secret, notification("OLD", status_event("w0"))).subscription_status, "OK");
  EXPECT_EQ(post(reg.secret, notification("NEW", status_event("n0"))).subscription_status, "OK");
  EXPECT_EQ(query_one("SELECT subscription_id FROM registrations WHERE id = ?", reg.id), "NEW");
  EXPECT_EQ(post(reg.secret, notification("OLD", new_mail_event("w1"))).subscription_status,
            "Unsubscribe");
  EXPECT_EQ(query_one("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "0")
      << "events from the superseded subscription are not counted twice";
  EXPECT_EQ(post(reg.secret, notification("NEW", new_mail_event("n1"))).subscription_status, "OK");
  EXPECT_EQ(query_one("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "1");
}

TEST_F(EwsListener, ADeletedRegistrationIsToldToUnsubscribeEvenWhenCached) {
  const auto reg = registration("carol@example.com");
  EXPECT_EQ(post(reg.secret, notification("S", status_event("w0"))).subscription_status, "OK");
  store::Connection conn(db_.options());
  ASSERT_TRUE(conn.connect().ok());
  ASSERT_TRUE(conn.execute("UPDATE registrations SET state = 'deleted' WHERE id = ?",
                           {store::Value{reg.id}})
                  .ok());
  EXPECT_EQ(post(reg.secret, notification("S", new_mail_event("w1"))).subscription_status,
            "Unsubscribe");
  EXPECT_EQ(query_one("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "0");
}

// Registrations that exist when mailpushd starts are cached before their first callback: a
// restarted listener does not read each of them from the database again.
TEST_F(EwsListener, RegistrationsAreCachedAtStart) {
  const auto bound = registration("preload-a@example.com");
  ASSERT_EQ(post(bound.secret, notification("SUB-P", status_event("w0"))).subscription_status,
            "OK");
  const auto unbound = registration("preload-b@example.com");
  daemon_->signal(SIGTERM);
  ASSERT_EQ(daemon_->wait(15s), std::optional<int>(0)) << daemon_->log();
  start_daemon(R"({"listener": {"trusted_proxies": ["127.0.0.1/32"]}})");

  std::string metrics;
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (metrics.find("mailpush_registration_cache_preload_seconds ") == std::string::npos) {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "no preload: " << metrics;
    std::this_thread::sleep_for(50ms);
    metrics = https_request(port_, "GET", "/metrics").body;
  }
  EXPECT_NE(metrics.find("mailpush_registration_cache_entries 2\n"), std::string::npos) << metrics;

  // The bound one records from the cache alone; the unbound one reads its record once, to bind.
  EXPECT_EQ(post(bound.secret, notification("SUB-P", new_mail_event("w1"))).subscription_status,
            "OK");
  EXPECT_EQ(post(unbound.secret, notification("SUB-Q", status_event("w0"))).subscription_status,
            "OK");
  metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_registration_cache_lookups_total{result=\"hit\"} 2\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("mailpush_registration_cache_lookups_total{result=\"miss\"} 1\n"),
            std::string::npos)
      << metrics;
  EXPECT_EQ(query_one("SELECT unread_count FROM registrations WHERE id = ?", bound.id), "1");
  EXPECT_EQ(query_one("SELECT subscription_id FROM registrations WHERE id = ?", unbound.id),
            "SUB-Q");
}

TEST_F(EwsListener, DatabaseDownMeans503NeverOkNeverUnsubscribe) {
  const auto reg = registration("dave@example.com");
  EXPECT_EQ(post(reg.secret, notification("S", status_event("w0"))).subscription_status, "OK");
  db_.stop();
  auto a = post(reg.secret, notification("S", new_mail_event("w1")));
  EXPECT_EQ(a.status, 503) << a.body;
  EXPECT_EQ(a.subscription_status, "");
  EXPECT_EQ(a.retry_after, "30");
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_EQ(metrics.find("mailpush_db_batch_failures_total 0\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("mailpush_db_batch_failures_total "), std::string::npos) << metrics;
  // An unknown secret is not answered Unsubscribe either while the database cannot say.
  a = post("BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", notification("S", status_event("w1")));
  EXPECT_EQ(a.status, 503);
  db_.start();
  // Exchange retries the same events: recorded once the database is back.
  Answer back;
  for (int i = 0; i < 50 && back.subscription_status != "OK"; ++i) {
    back = post(reg.secret, notification("S", new_mail_event("w1")));
    if (back.subscription_status != "OK") std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(back.subscription_status, "OK") << back.body;
  EXPECT_EQ(query_one("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "1");
}

// Heartbeats are answered without a durable write; their last-heard times are written in bulk
// every listener.heard_flush_s and when the daemon stops.
TEST_F(EwsListener, HeartbeatsAreWrittenInBulkAndWhenTheDaemonStops) {
  restart_daemon(R"({"listener": {"heard_flush_s": 300}})");
  const auto reg = registration("heartbeat@example.com");
  ASSERT_EQ(post(reg.secret, notification("S-HB", status_event("w0"))).subscription_status, "OK");
  set_last_heard_2020(reg.id);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(post(reg.secret, notification("S-HB", status_event("w1"))).subscription_status, "OK");
  }
  EXPECT_FALSE(heard_again(reg.id)) << "not written before OK";
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_ews_heartbeats_total{result=\"deferred\"} 3\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("mailpush_db_batch_writes_count 1\n"), std::string::npos)
      << "only the first callback (the bind) was a group commit: " << metrics;
  daemon_->signal(SIGTERM);
  ASSERT_EQ(daemon_->wait(15s), std::optional<int>(0)) << daemon_->log();
  EXPECT_TRUE(heard_again(reg.id)) << "written when the daemon stopped";

  start_daemon(R"({"listener": {"heard_flush_s": 1}})");
  set_last_heard_2020(reg.id);
  ASSERT_EQ(post(reg.secret, notification("S-HB", status_event("w2"))).subscription_status, "OK");
  EXPECT_TRUE(heard_again(reg.id, 10s)) << "not written within the interval";
}

// A registration ended elsewhere while its entry is cached: its heartbeats are answered OK from
// memory until the next bulk write finds it gone, then Unsubscribe.
TEST_F(EwsListener, AnEndedRegistrationsHeartbeatIsUnsubscribedAfterTheNextWrite) {
  restart_daemon(R"({"listener": {"heard_flush_s": 1}})");
  const auto reg = registration("ended-heartbeat@example.com");
  ASSERT_EQ(post(reg.secret, notification("S-E", status_event("w0"))).subscription_status, "OK");
  execute("UPDATE registrations SET state = 'deleted' WHERE id = ?", reg.id);
  std::string status =
      post(reg.secret, notification("S-E", status_event("w1"))).subscription_status;
  EXPECT_EQ(status, "OK") << "answered from the cache until the write";
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (status == "OK" && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(200ms);
    status = post(reg.secret, notification("S-E", status_event("w2"))).subscription_status;
  }
  EXPECT_EQ(status, "Unsubscribe");
}

// With the database down, a heartbeat of a cached registration is still answered OK (it needs no
// write before the answer); its time is written once the database is back.
TEST_F(EwsListener, HeartbeatsOutliveADatabaseOutage) {
  restart_daemon(R"({"listener": {"heard_flush_s": 1}})");
  const auto reg = registration("outage-heartbeat@example.com");
  ASSERT_EQ(post(reg.secret, notification("S-O", status_event("w0"))).subscription_status, "OK");
  set_last_heard_2020(reg.id);
  db_.stop();
  EXPECT_EQ(post(reg.secret, notification("S-O", status_event("w1"))).subscription_status, "OK");
  EXPECT_EQ(post(reg.secret, notification("S-O", new_mail_event("w2"))).status, 503)
      << "a count still needs its commit";
  std::this_thread::sleep_for(1500ms);  // at least one failed bulk write
  db_.start();
  EXPECT_TRUE(heard_again(reg.id, 15s)) << "not written after the outage";
}

TEST_F(EwsListener, CallerAllowListWithTrustedProxy) {
  const auto reg = registration("erin@example.com", open_customer_);
  const std::vector<std::pair<std::string, std::string>> base = {
      {"Content-Type", "text/xml; charset=utf-8"}, {"SOAPAction", kSoapAction}};
  auto direct = post(reg.secret, notification("S", status_event("w")), base);
  EXPECT_EQ(direct.status, 403) << "127.0.0.1 is not in 192.0.2.0/24";
  auto via_proxy = base;
  via_proxy.emplace_back("X-Forwarded-For", "198.51.100.9, 192.0.2.10");
  EXPECT_EQ(post(reg.secret, notification("S", status_event("w")), via_proxy).subscription_status,
            "OK");
  auto two_lines = base;  // the proxy added its own line after the one the client forged
  two_lines.emplace_back("X-Forwarded-For", "192.0.2.10");
  two_lines.emplace_back("X-Forwarded-For", "198.51.100.9");
  EXPECT_EQ(post(reg.secret, notification("S", status_event("w")), two_lines).status, 403);
  auto spoofed = base;
  spoofed.emplace_back("X-Forwarded-For", "192.0.2.10, 198.51.100.9");
  EXPECT_EQ(post(reg.secret, notification("S", status_event("w")), spoofed).status, 403)
      << "the rightmost untrusted hop is the caller";
}

TEST_F(EwsListener, RealExchangeBodiesAreAccepted) {
  const auto reg = registration("frank@example.com");
  for (const char* file :
       {"01-rooms-doc-exo-two-modified-repaired.xml", "03-workmail-docs-status-repaired.xml",
        "05-exchangelib-test-status-s-prefix.xml"}) {
    const auto body = read_file(source_dir() / "tests/data/ews" / file);
    // Exchange Online sends SOAPAction unquoted, with Accept-Encoding and Accept.
    auto a = post(reg.secret, body,
                  {{"content-type", "text/xml; charset=utf-8"},
                   {"Soapaction", kSoapAction},
                   {"Accept", "text/xml"},
                   {"Accept-Encoding", "gzip"}});
    EXPECT_EQ(a.status, 200) << file << ": " << a.body;
    // Each sample carries its own subscription id: the app "resubscribed" each time.
    EXPECT_EQ(a.subscription_status, "OK") << file;
  }
  const auto error_body =
      read_file(source_dir() / "tests/data/ews/04-tistory-ex2007sp1-error-readeventsfailed.xml");
  EXPECT_EQ(post(reg.secret, error_body).status, 200);
}

TEST_F(EwsListener, HostileAndWrongRequestsGetClearRefusals) {
  const auto reg = registration("gina@example.com");
  auto a = post(reg.secret, notification("S", status_event("w")),
                {{"Content-Type", "application/json"}});
  EXPECT_EQ(a.status, 415);
  a = post(reg.secret, notification("S", status_event("w")),
           {{"Content-Type", "text/xml"}, {"SOAPAction", "urn:something-else"}});
  EXPECT_EQ(a.status, 400);
  const std::string bomb =
      R"(<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><l>&b;</l>)";
  a = post(reg.secret, bomb);
  EXPECT_EQ(a.status, 400);
  EXPECT_NE(a.body.find("Fault"), std::string::npos);
  a = post(reg.secret,
           "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Bo");
  EXPECT_EQ(a.status, 400);
  {
    // Refused on the Content-Length alone, before the body is sent.
    RawTlsConnection big(port_);
    big.send("POST /ews/v1/notify/" + reg.secret +
             " HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
             "text/xml\r\nContent-Length: 2097152\r\n\r\n");
    EXPECT_EQ(big.read_response(5s).status, 413);
  }
  EXPECT_EQ(https_request(port_, "GET", "/ews/v1/notify/" + reg.secret).status, 405);
  a = post(reg.secret, notification(std::string(600, 'S'), status_event("w")));
  EXPECT_EQ(a.status, 400) << "an id longer than any Exchange sends is refused alone";
  EXPECT_NE(a.body.find("SubscriptionId"), std::string::npos);
  // Nothing was recorded by any of them.
  EXPECT_EQ(
      query_one("SELECT COALESCE(subscription_id, '') FROM registrations WHERE id = ?", reg.id),
      "");
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_ews_refused_total{reason=\"doctype\"} 1"), std::string::npos)
      << metrics;
  EXPECT_EQ(daemon_->log().find(reg.secret), std::string::npos)
      << "the secret never reaches the log";
}

TEST_F(EwsListener, AnOversizedXmlValueIsRefusedAndNothingRecorded) {
  // The finding: a 900 KB attribute value was accepted (and parsed) under the body limit.
  const auto reg = registration("ivy@example.com");
  std::string body = notification("S", status_event("w"));
  body.insert(body.find("<m:Notification>") + 16,
              "<m:Padding a=\"" + std::string(900 * 1024, 'x') + "\"/>");
  auto a = post(reg.secret, body);
  EXPECT_EQ(a.status, 400) << a.body;
  EXPECT_NE(a.body.find("8192"), std::string::npos) << a.body;
  std::string text_body = notification("S", status_event(std::string(9000, 'w')));
  a = post(reg.secret, text_body);
  EXPECT_EQ(a.status, 400) << "a text node over 8 KiB too";
  EXPECT_EQ(
      query_one("SELECT COALESCE(subscription_id, '') FROM registrations WHERE id = ?", reg.id),
      "");
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_ews_refused_total{reason=\"value_too_long\"} 2"),
            std::string::npos)
      << metrics;
}

TEST_F(EwsListener, MadeUpSecretsAreAnsweredFromTheHeaderAndLimitedPerAddress) {
  // The findings: each made-up secret cost a body read, an XML parse and a database query,
  // without a limit per address.
  restart_daemon(R"({"listener": {"trusted_proxies": ["127.0.0.1/32"]},
                    "limits": {"unknown_secret_burst_per_address": 20,
                              "unknown_secrets_per_second_per_address": 1}})");
  const auto reg = registration("jack@example.com");
  const std::string body = notification("S", status_event("w"));
  ASSERT_EQ(post(reg.secret, body).subscription_status, "OK");  // now in the listener's cache
  int unsubscribed = 0;
  int limited = 0;
  for (int i = 0; i < 40; ++i) {
    char secret[44];
    std::snprintf(secret, sizeof secret, "Made-up-secret-%027d", i);
    const auto a = post(secret, body);
    if (a.status == 200 && a.subscription_status == "Unsubscribe") ++unsubscribed;
    if (a.status == 503) {
      ++limited;
      EXPECT_EQ(a.retry_after, "10");
    }
  }
  EXPECT_GE(unsubscribed, 20) << "the burst";
  EXPECT_LE(unsubscribed, 25) << "then one a second";
  EXPECT_EQ(limited, 40 - unsubscribed) << "the rest 503 until the address has waited";
  // Another caller (a different X-Forwarded-For behind the trusted proxy) is not limited, and
  // the limited address's real (cached) registration still records. (One it has not sent yet
  // gets 503 until the address has waited, like the made-up ones: Exchange retries it.)
  auto other = post("Made-up-secret-from-elsewhere-0000000000000", body,
                    {{"Content-Type", "text/xml; charset=utf-8"},
                     {"SOAPAction", "\"" + kSoapAction + "\""},
                     {"X-Forwarded-For", "198.51.100.77"}});
  EXPECT_EQ(other.subscription_status, "Unsubscribe");
  EXPECT_EQ(post(reg.secret, body).subscription_status, "OK");
  // A made-up secret with a large body is answered without reading it.
  RawTlsConnection big(port_);
  big.send(
      "POST /ews/v1/notify/Made-up-secret-with-a-large-body-000000000 HTTP/1.1\r\n"
      "Host: localhost\r\nContent-Type: text/xml\r\nX-Forwarded-For: 198.51.100.78\r\n"
      "Content-Length: 900000\r\n\r\n");
  const auto reply = big.read_response(5s);
  EXPECT_EQ(reply.status, 200);
  EXPECT_NE(reply.body.find(">Unsubscribe<"), std::string::npos);
  EXPECT_TRUE(big.closed_by_peer(5s));
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_ews_callbacks_total{result=\"rate_limited\"} " +
                         std::to_string(limited)),
            std::string::npos)
      << metrics;
  EXPECT_EQ(metrics.find("mailpush_ews_refused_total{reason=\"malformed_xml\"}"), std::string::npos)
      << "no made-up request's body was parsed";
}

TEST_F(EwsListener, SlowHeadersAndBytesThatAreNotHttpAreCutOff) {
  restart_daemon(R"({"limits": {"header_timeout_ms": 1000, "idle_timeout_ms": 60000}})");
  {
    RawTlsConnection slow(port_);
    const auto started = std::chrono::steady_clock::now();
    const std::string header = "POST /ews/v1/notify/x HTTP/1.1\r\nHost: localhost\r\nX-A: b";
    bool cut = false;
    for (char ch : header) {
      try {
        slow.send(std::string(1, ch));
      } catch (const std::exception&) {
        cut = true;
        break;
      }
      std::this_thread::sleep_for(150ms);
    }
    EXPECT_TRUE(cut || slow.closed_by_peer(3s));
    EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "not the 60 s idle timeout";
  }
  {
    RawTlsConnection garbage(port_);
    const auto started = std::chrono::steady_clock::now();
    garbage.send(std::string("\x00\x01\x02 not http", 13));
    EXPECT_EQ(garbage.read_response(3s).status, 400);
    EXPECT_TRUE(garbage.closed_by_peer(3s));
    EXPECT_LT(std::chrono::steady_clock::now() - started, 4s);
  }
}

TEST_F(EwsListener, OneAddressCannotTakeEveryConnection) {
  restart_daemon(R"({"listener": {"trusted_proxies": []},
                   "limits": {"max_connections_per_address": 3}})");
  auto a = std::make_unique<RawTlsConnection>(port_);
  auto b = std::make_unique<RawTlsConnection>(port_);
  auto c = std::make_unique<RawTlsConnection>(port_);
  bool refused = false;
  try {
    RawTlsConnection d(port_);
    d.send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    refused = d.read_response(2s).status == 0;
  } catch (const std::exception&) {
    refused = true;
  }
  EXPECT_TRUE(refused) << "the fourth connection from one address is closed at once";
  a->send("GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(a->read_response(2s).status, 200);
  b.reset();
  c.reset();
  std::string metrics;
  for (int i = 0; i < 20 && metrics.empty(); ++i) {
    std::this_thread::sleep_for(100ms);  // until the server has seen b and c go
    try {
      metrics = https_request(port_, "GET", "/metrics").body;
    } catch (const std::exception&) {
    }
  }
  EXPECT_NE(metrics.find("mailpush_http_connections_rejected_total{reason=\"per_address\"} 1"),
            std::string::npos)
      << metrics;
}

TEST_F(EwsListener, ExpectContinueIsAnswered) {
  const auto reg = registration("henry@example.com");
  const auto body = notification("S", status_event("w"));
  RawTlsConnection c(port_);
  c.send("POST /ews/v1/notify/" + reg.secret +
         " HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; "
         "charset=utf-8\r\nSOAPAction: \"" +
         kSoapAction + "\"\r\nExpect: 100-continue\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n");
  EXPECT_EQ(c.read_response(5s).status, 100);
  c.send(body);
  const auto reply = c.read_response(5s);
  EXPECT_EQ(reply.status, 200);
  EXPECT_NE(reply.body.find(">OK<"), std::string::npos);
}

// Exchange servers reconnect often; a resumed TLS session spares them a full handshake.
TEST_F(EwsListener, TlsSessionsAreResumed) {
  namespace asio = boost::asio;
  namespace bhttp = boost::beast::http;
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.load_verify_file(dev_tls().ca_cert.string());
  ctx.set_verify_mode(asio::ssl::verify_peer);
  SSL_SESSION* session = nullptr;
  for (int round = 0; round < 2; ++round) {
    asio::io_context ioc;
    asio::ssl::stream<asio::ip::tcp::socket> stream(ioc, ctx);
    SSL_set_tlsext_host_name(stream.native_handle(), "localhost");
    if (session) SSL_set_session(stream.native_handle(), session);
    stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port_});
    stream.handshake(asio::ssl::stream_base::client);
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/healthz", 11};
    req.set(bhttp::field::host, "localhost");
    req.keep_alive(false);
    bhttp::write(stream, req);
    boost::beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    bhttp::read(stream, buffer, res);  // also reads the TLS 1.3 session ticket
    EXPECT_EQ(res.result_int(), 200);
    if (round == 1) {
      EXPECT_EQ(SSL_session_reused(stream.native_handle()), 1);
    }
    if (session) SSL_SESSION_free(session);
    session = round == 0 ? SSL_get1_session(stream.native_handle()) : nullptr;
    ASSERT_TRUE(round == 1 || session != nullptr);
    boost::system::error_code ignored;
    stream.shutdown(ignored);
  }
}

TEST_F(EwsListener, SilentSubscriptionsAreReportedByMailpushctl) {
  const auto reg = registration("ivan@example.com");
  store::Connection conn(db_.options());
  ASSERT_TRUE(conn.connect().ok());
  ASSERT_TRUE(conn.execute("UPDATE registrations SET status_frequency_minutes = 1, "
                           "created_at = UTC_TIMESTAMP(6) - INTERVAL 10 MINUTE WHERE id = ?",
                           {store::Value{reg.id}})
                  .ok());
  const auto region = dir_ / "region.json";
  std::string out;
  ASSERT_EQ(run_command({(binary_dir() / "src/app/mailpushctl").string(), "--region",
                         region.string(), "--json", "subscriptions", "--silent"},
                        &out),
            0)
      << out;
  const auto list = nlohmann::json::parse(out);
  ASSERT_EQ(list["silent"].size(), 1u) << out;
  EXPECT_EQ(list["silent"][0]["registration_id"], reg.id);
  EXPECT_EQ(out.find(reg.secret), std::string::npos);
  ASSERT_EQ(run_command({(binary_dir() / "src/app/mailpushctl").string(), "--region",
                         region.string(), "subscriptions", "--silent"},
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("1 silent"), std::string::npos) << out;

  // Heard from again: no longer silent.
  EXPECT_EQ(post(reg.secret, notification("S", status_event("w"))).subscription_status, "OK");
  ASSERT_EQ(run_command({(binary_dir() / "src/app/mailpushctl").string(), "--region",
                         region.string(), "--json", "subscriptions", "--silent"},
                        &out),
            0)
      << out;
  EXPECT_TRUE(nlohmann::json::parse(out)["silent"].empty()) << out;
}

}  // namespace
}  // namespace mp::test
