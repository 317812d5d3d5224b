// The registration API end to end: a real mailpushd over HTTPS on the real MariaDB, the customer
// onboarded through the portal API with the test push certificates. Register, call the listener
// URL like Exchange, refresh with the capability, add devices, move tokens, unregister
// (Unsubscribe), register again (a new URL); without or with a wrong capability nothing changes
// and no existing URL is shown; ids are no handle; every refusal with its status and reason,
// nothing written for hostile input, and no key, address, token or capability in the log.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.hpp"
#include "store/migrations.hpp"
#include "store/outbox.hpp"
#include "test_apns_sim.hpp"
#include "test_env.hpp"
#include "test_registrations.hpp"

namespace mp::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kAdminToken = "adm_registration-test-token-0123456789";
const std::string kSoapAction =
    "\"http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification\"";
const std::string kMailbox = "Alice.Liddell@Example.COM";
const std::string kToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
// kToken's 32 bytes in standard base64: the classic mistake the relay turns into hex.
const std::string kTokenBase64 = "obLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTpLXG1+j5A=";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

class RegistrationApi : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("registration");
    certs_ = apns_test_certs();
    store::Connection conn(db_.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(store::migrate(conn).ok());
    ASSERT_EQ(run_command({(source_dir() / "scripts/make-kek.sh").string(), (dir_ / "kek").string(),
                           "kek-test-1"}),
              0);
    write_file(dir_ / "admin-tokens", hex_encode(sha384(kAdminToken)) + "\n");
    secret_file_ = make_region_secret(dir_);
  }

  void TearDown() override {
    if (daemon_) {
      daemon_->signal(SIGTERM);
      EXPECT_EQ(daemon_->wait(15s), std::optional<int>(0)) << daemon_->log();
    }
  }

  json region_patch(const json& registration) const {
    return {{"database",
             {{"host", db_.options().host},
              {"port", db_.options().port},
              {"socket", nullptr},
              {"name", db_.name()},
              {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")},
              {"migrate_on_start", false}}},
            {"portal",
             {{"kek_file", (dir_ / "kek").string()},
              {"admin_token_file", (dir_ / "admin-tokens").string()},
              {"trust_anchors", (certs_ / "apple-ca.crt").string()}}},
            {"registration", registration}};
  }

  // `log`: a second run in one test needs a log of its own (listening_port reads the port from
  // the log, and would find the first run's).
  std::unique_ptr<ChildProcess> launch(const json& registration,
                                       const std::string& log = "mailpushd.log") {
    const auto region = write_region_file(dir_, region_patch(registration).dump());
    return std::make_unique<ChildProcess>(binary_dir() / "src/app/mailpushd",
                                          std::vector<std::string>{"--region", region.string()},
                                          dir_ / log);
  }

  // Starts mailpushd with the region secret and `extra` registration settings, and onboards a
  // customer through the portal.
  void start(json extra = json::object()) {
    json registration = {{"secret_file", secret_file_.string()},
                         {"status_frequency_minutes", 15},
                         {"other_regions", {{"use1", "register.use1.mailpush.example"}}}};
    registration.update(extra);
    daemon_ = launch(registration);
    port_ = listening_port(*daemon_, 30s);
    ASSERT_NE(port_, 0) << daemon_->log();
    customer_ = onboard_customer(port_, kAdminToken, certs_);
  }

  json registration(const std::string& token, const std::string& mailbox = kMailbox) const {
    return {{"customer_id", customer_.customer_id},
            {"registration_key", customer_.registration_key},
            {"mailbox", mailbox},
            {"device_token", token},
            {"environment", "production"}};
  }

  // What the listener answers Exchange at `url`: "OK", "Unsubscribe", or the HTTP status.
  std::string callback(const std::string& url) {
    return callback(
        url, read_file(source_dir() / "tests/data/ews/05-exchangelib-test-status-s-prefix.xml"));
  }
  std::string callback(const std::string& url, const std::string& body) {
    const std::string path = url.substr(url.find("/ews/v1/notify/"));
    const auto reply =
        https_request(port_, "POST", path, body,
                      {{"Content-Type", "text/xml; charset=utf-8"}, {"SOAPAction", kSoapAction}});
    for (const char* status : {"Unsubscribe", "OK"}) {
      if (reply.body.find(std::string(">") + status + "</") != std::string::npos) return status;
    }
    return std::to_string(reply.status);
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
  std::filesystem::path dir_, certs_, secret_file_;
  std::unique_ptr<ChildProcess> daemon_;
  std::uint16_t port_ = 0;
  OnboardedCustomer customer_;
};

TEST_F(RegistrationApi, RegisterSubscribeRefreshMoveUnregisterAndRegisterAgain) {
  start();
  // Registered: a capability, the listener URL that holds it, and what to subscribe with.
  const auto first = post_registration(port_, registration(kToken));
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(first.header("Cache-Control"), "no-store");
  const json r1 = body_of(first);
  const std::string url = r1["listener_url"];
  const std::string cap = r1["capability"];
  EXPECT_EQ(url, "https://localhost:" + std::to_string(port_) + "/ews/v1/notify/" + cap);
  EXPECT_EQ(cap.size(), 44u);
  EXPECT_FALSE(r1.contains("registration_id")) << "no id is shown";
  EXPECT_EQ(r1["status_frequency_minutes"], 15);
  EXPECT_EQ(r1["event_types"], json::array({"NewMailEvent", "ModifiedEvent"}));
  EXPECT_EQ(r1["device"], "a1b2c3d4…(64)");
  EXPECT_EQ(r1["change"], "created");
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations WHERE secret_hash = UNHEX('" +
                  hex_encode(sha384(cap)) + "')"),
            1)
      << "only the capability's SHA-384 is stored";

  // Exchange's first callback (StatusEvent) at that URL is answered OK.
  EXPECT_EQ(callback(url), "OK");

  // Refreshed by the app with its capability (any case, any blanks in the address; the token
  // as base64, the classic mistake the relay turns into hex): the same URL.
  const auto again =
      post_registration(port_, registration(kTokenBase64, "  alice.liddell@example.com"), cap);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(body_of(again)["listener_url"], url);
  EXPECT_EQ(body_of(again)["change"], "unchanged");
  EXPECT_EQ(body_of(again)["device"], "a1b2c3d4…(64)");
  EXPECT_NE(body_of(again)["notes"].dump().find("base64"), std::string::npos) << again.body;
  EXPECT_EQ(count("SELECT COUNT(*) FROM devices"), 1);
  EXPECT_EQ(callback(url), "OK");

  // A second device of the mailbox has its own registration and URL.
  const std::string token2 = hex_encode(random_bytes(32));
  const auto other_device = post_registration(port_, registration(token2));
  ASSERT_EQ(other_device.status, 201) << other_device.body;
  const json r2 = body_of(other_device);
  const std::string cap2 = r2["capability"];
  EXPECT_NE(r2["listener_url"], url);
  EXPECT_EQ(count("SELECT COUNT(*) FROM mailboxes"), 1);
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations WHERE state = 'active'"), 2);

  // The app's token changed: the registration moves with its capability, the URL stays. The
  // old token and the registration key (in every copy of the app) move nothing.
  const std::string token3 = hex_encode(random_bytes(32));
  for (const std::string& wrong : {std::string(), std::string("not-a-capability"), cap2 + "x"}) {
    const auto refused = move_registration(port_, wrong, token3);
    EXPECT_EQ(refused.status, 404) << refused.body;
    EXPECT_EQ(body_of(refused)["error"], "not_found");
  }
  const auto moved = move_registration(port_, cap2, token3);
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(body_of(moved)["change"], "moved");
  EXPECT_EQ(count("SELECT COUNT(*) FROM devices d JOIN registrations r ON r.device_id = d.id "
                  "WHERE d.token_hex = '" +
                  token3 + "'"),
            1);
  EXPECT_EQ(callback(r2["listener_url"]), "OK");

  // Unregister with the capability: Exchange is told to Unsubscribe; a second delete, a delete
  // without a capability or with a wrong one, all get the same 404; an id gets 410.
  for (const std::string& wrong : {std::string(), cap + "x", std::string(44, 'A')}) {
    const auto refused = delete_registration(port_, wrong);
    EXPECT_EQ(refused.status, 404) << refused.body;
  }
  EXPECT_EQ(callback(url), "OK") << "nothing ended";
  const auto gone = delete_registration(port_, cap);
  ASSERT_EQ(gone.status, 200) << gone.body;
  EXPECT_EQ(body_of(gone)["state"], "deleted");
  EXPECT_EQ(callback(url), "Unsubscribe");
  const auto twice = delete_registration(port_, cap);
  EXPECT_EQ(twice.status, 404) << twice.body;
  EXPECT_EQ(body_of(twice)["error"], "not_found");
  const auto by_id = https_request(
      port_, "DELETE", "/v1/registrations/2",
      json{{"customer_id", customer_.customer_id}, {"registration_key", customer_.registration_key}}
          .dump(),
      {{"Content-Type", "application/json"}});
  EXPECT_EQ(by_id.status, 410) << by_id.body;
  EXPECT_EQ(callback(r2["listener_url"]), "OK") << "registration 2 is still there";

  // Registered again: a new URL; the old one stays dead.
  const auto back = post_registration(port_, registration(kToken), cap);
  ASSERT_EQ(back.status, 201) << back.body;
  EXPECT_EQ(body_of(back)["change"], "created");
  const std::string new_url = body_of(back)["listener_url"];
  EXPECT_NE(new_url, url);
  EXPECT_EQ(callback(url), "Unsubscribe");
  EXPECT_EQ(callback(new_url), "OK");

  // Audit rows for each change (created, created, moved, deleted, created); counted per result.
  EXPECT_EQ(count("SELECT COUNT(*) FROM audit_log WHERE actor = 'registration-api'"), 5);
  const auto metrics = https_request(port_, "GET", "/metrics").body;
  EXPECT_NE(metrics.find("mailpush_registration_requests_total{result=\"created\"} 3"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("mailpush_registration_requests_total{result=\"deleted\"} 1"),
            std::string::npos);

  // Nothing secret reached the log: keys, the address, full tokens, callback secrets.
  daemon_->signal(SIGTERM);
  EXPECT_EQ(daemon_->wait(15s), std::optional<int>(0));
  const std::string log = daemon_->log();
  daemon_.reset();
  EXPECT_NE(log.find("\"registration.registered\""), std::string::npos) << log;
  for (const std::string& secret :
       {customer_.registration_key, customer_.admin_key, kToken, kTokenBase64, token2, token3, cap,
        cap2, secret_of_listener_url(new_url)}) {
    EXPECT_EQ(log.find(secret), std::string::npos) << "leaked: " << secret.substr(0, 8) << "…";
  }
  EXPECT_EQ(lower(log).find("alice.liddell"), std::string::npos) << "the mailbox address leaked";
  EXPECT_EQ(log.find(kToken.substr(8, 24)), std::string::npos) << "more than a token prefix";
}

TEST_F(RegistrationApi, ARepeatWithoutTheCapabilityNeverShowsTheExistingUrl) {
  start();
  // The owner registers; someone who learned the address and the token (and has the key, as
  // every copy of the app does) registers the same pair.
  const auto owner = post_registration(port_, registration(kToken));
  ASSERT_EQ(owner.status, 201) << owner.body;
  const std::string owner_url = body_of(owner)["listener_url"];
  EXPECT_EQ(callback(owner_url), "OK");
  std::vector<std::string> seen = {owner_url};
  for (const std::string& presented :
       {std::string(), std::string(44, 'A'), std::string("Bearer-garbage")}) {
    const auto repeat = post_registration(port_, registration(kToken), presented);
    ASSERT_EQ(repeat.status, 201) << repeat.body;
    const json r = body_of(repeat);
    EXPECT_EQ(r["change"], "replaced");
    for (const auto& old : seen) EXPECT_NE(r["listener_url"], old) << "an existing URL shown";
    EXPECT_NE(r["notes"].dump().find("another capability"), std::string::npos) << repeat.body;
    seen.push_back(r["listener_url"]);
  }
  // Each replaced URL answers Unsubscribe, so Exchange drops its subscription; only the newest
  // holds.
  for (std::size_t i = 0; i + 1 < seen.size(); ++i) EXPECT_EQ(callback(seen[i]), "Unsubscribe");
  EXPECT_EQ(callback(seen.back()), "OK");
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 1);
}

TEST_F(RegistrationApi, QuotasAndRefusedCredentialsPerAddressAreClear) {
  start({{"max_per_device", 2}, {"refusals_per_address_per_minute", 5}});
  ASSERT_EQ(post_registration(port_, registration(kToken, "a@example.com")).status, 201);
  ASSERT_EQ(post_registration(port_, registration(kToken, "b@example.com")).status, 201);
  const auto full = post_registration(port_, registration(kToken, "c@example.com"));
  EXPECT_EQ(full.status, 403) << full.body;
  EXPECT_EQ(body_of(full)["error"], "quota_device");
  EXPECT_NE(body_of(full)["message"].get<std::string>().find("max_per_device"), std::string::npos);

  // Five refused credentials from this address, then 429 with Retry-After for it.
  json wrong = registration(kToken);
  wrong["registration_key"] = "rk_guess";
  for (int i = 0; i < 3; ++i) EXPECT_EQ(post_registration(port_, wrong).status, 401);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(delete_registration(port_, "guess").status, 404);
  const auto limited = delete_registration(port_, std::string(44, 'B'));
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_FALSE(limited.header("Retry-After").empty());
  EXPECT_EQ(post_registration(port_, wrong).status, 429);
}

TEST_F(RegistrationApi, RefusalsNameTheProblemAndWriteNothing) {
  start();
  const auto refused = [&](const json& body, int status, const std::string& error,
                           const std::string& field = "") {
    const auto reply = post_registration(port_, body);
    EXPECT_EQ(reply.status, status) << body.dump() << " -> " << reply.body;
    const json b = body_of(reply);
    EXPECT_EQ(b.value("error", ""), error) << reply.body;
    if (!field.empty()) {
      EXPECT_EQ(b.value("field", ""), field) << reply.body;
    }
    EXPECT_FALSE(b.value("message", "").empty()) << reply.body;
    return b;
  };
  json body = registration("");
  auto empty = refused(body, 400, "invalid_device_token", "device_token");
  EXPECT_NE(empty["message"].get<std::string>().find("empty"), std::string::npos);
  body = registration("a1b2c3");
  body["device_token"] = "a1b2c";
  refused(body, 400, "invalid_device_token", "device_token");
  body = registration(kToken);
  body["environment"] = "sandbox";
  refused(body, 400, "invalid_environment", "environment");
  refused(registration(kToken, "not-an-address"), 400, "invalid_mailbox", "mailbox");
  for (const json& folder :
       {json("AAMk Inbox"), json(std::string(513, 'A')), json(""), json(42), json("AAMk\u00e9")}) {
    body = registration(kToken);
    body["folder_id"] = folder;
    refused(body, 400, "invalid_folder_id", "folder_id");
  }

  body = registration(kToken);
  body["registration_key"] = "rk_wrong";
  const json wrong = refused(body, 401, "invalid_credentials");
  body = registration(kToken);
  body["customer_id"] = "dev-zzzzzzzzzzzzzzzzzzzz";
  const json unknown = refused(body, 401, "invalid_credentials");
  EXPECT_EQ(wrong, unknown) << "no oracle for Customer IDs";

  body["customer_id"] = "use1-abcdefghij0123456789";
  const json elsewhere = refused(body, 421, "wrong_region");
  EXPECT_EQ(elsewhere["region_host"], "register.use1.mailpush.example");
  EXPECT_NE(elsewhere["message"].get<std::string>().find("register.use1.mailpush.example"),
            std::string::npos);
  body["customer_id"] = "qq7-abcdefghij0123456789";
  refused(body, 421, "unknown_region");

  // Hostile bodies: huge fields, wrong types, not UTF-8, not JSON, too large.
  refused(registration(kToken, std::string(15000, 'a') + "@example.com"), 400, "invalid_mailbox");
  refused(registration(std::string(15000, 'f')), 400, "invalid_device_token");
  body = registration(kToken);
  body["device_token"] = json::array({kToken});
  refused(body, 400, "invalid_device_token", "device_token");
  body = registration(kToken);
  body["customer_id"] = 12345;
  refused(body, 400, "invalid_customer_id", "customer_id");
  for (const std::string& raw :
       {std::string("{\"customer_id\": \"") + customer_.customer_id + "\xff\xfe\"}",
        std::string("customer_id=") + customer_.customer_id, std::string("[]"), std::string("")}) {
    const auto reply = post_registration_raw(port_, raw);
    EXPECT_EQ(reply.status, 400) << reply.body;
    EXPECT_EQ(body_of(reply)["error"], "invalid_json") << reply.body;
  }
  const auto large =
      post_registration_raw(port_, "{\"mailbox\": \"" + std::string(17 * 1024, 'a') + "\"}");
  EXPECT_EQ(large.status, 413) << large.body;
  const auto form = post_registration_raw(port_, registration(kToken).dump(), "text/plain");
  EXPECT_EQ(form.status, 415) << form.body;

  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM devices"), 0);
  EXPECT_EQ(count("SELECT COUNT(*) FROM mailboxes"), 0);

  // A disabled customer is refused with 403 until its administrator enables it.
  const auto disabled =
      https_request(port_, "POST", "/portal/v1/customers/" + customer_.customer_id + "/disable", "",
                    {{"Authorization", "Bearer " + customer_.admin_key}});
  ASSERT_EQ(disabled.status, 200) << disabled.body;
  refused(registration(kToken), 403, "customer_disabled");
}

TEST_F(RegistrationApi, ACustomerOverItsLimitGets429WithRetryAfter) {
  start({{"per_customer_per_minute", 3}});
  for (int i = 0; i < 3; ++i) {
    const auto ok = post_registration(port_, registration(kToken));
    ASSERT_TRUE(ok.status == 200 || ok.status == 201) << ok.body;
  }
  const auto limited = post_registration(port_, registration(kToken));
  EXPECT_EQ(limited.status, 429) << limited.body;
  EXPECT_EQ(body_of(limited)["error"], "rate_limited");
  const int retry = std::stoi(limited.header("Retry-After"));
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 20);
}

TEST_F(RegistrationApi, WithoutASecretThe503SaysWhyAndABadSecretFileStopsTheStart) {
  daemon_ = launch(json::object());
  port_ = listening_port(*daemon_, 30s);
  ASSERT_NE(port_, 0) << daemon_->log();
  EXPECT_TRUE(daemon_->wait_for_log("\"registration.not_configured\"", 5s).has_value())
      << daemon_->log();
  customer_ = onboard_customer(port_, kAdminToken, certs_);
  const auto reply = post_registration(port_, registration(kToken));
  EXPECT_EQ(reply.status, 503) << reply.body;
  EXPECT_EQ(body_of(reply)["error"], "not_configured");
  EXPECT_FALSE(reply.header("Retry-After").empty());
  daemon_->signal(SIGTERM);
  EXPECT_EQ(daemon_->wait(15s), std::optional<int>(0));
  daemon_.reset();

  // A secret file others can read is a configuration error, named.
  ASSERT_EQ(::chmod(secret_file_.c_str(), 0644), 0);
  auto bad = launch({{"secret_file", secret_file_.string()}});
  EXPECT_EQ(bad->wait(30s), std::optional<int>(78)) << bad->log();
  const std::string log = bad->log();
  EXPECT_NE(log.find("registration.secret_file"), std::string::npos) << log;
  EXPECT_NE(log.find("chmod 600"), std::string::npos) << log;
  const std::string text = read_file(secret_file_);
  EXPECT_EQ(log.find(text.substr(text.find("region-secret ") + 14, 20)), std::string::npos)
      << "the secret leaked into the log";
}

// A SendNotification on subscription SUB-FOLDERS with `events`.
std::string notification(const std::string& events) {
  return R"(<?xml version="1.0" encoding="utf-8"?>)"
         R"(<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" )"
         R"(xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" )"
         R"(xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><soap:Body>)"
         R"(<m:SendNotification><m:ResponseMessages><m:SendNotificationResponseMessage )"
         R"(ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification>)"
         R"(<t:SubscriptionId>SUB-FOLDERS</t:SubscriptionId><t:PreviousWatermark>AQAAAA==)"
         R"(</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>)" +
         events +
         R"(</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages>)"
         R"(</m:SendNotification></soap:Body></soap:Envelope>)";
}

std::string unread_in(const std::string& folder, int unread) {
  return R"(<t:ModifiedEvent><t:Watermark>AQAAAB==</t:Watermark><t:TimeStamp>)"
         R"(2026-12-06T10:00:00Z</t:TimeStamp><t:FolderId Id=")" +
         folder +
         R"(" ChangeKey="AQAAAA=="/><t:ParentFolderId Id="AAMkRoot" )"
         R"(ChangeKey="AQAAAA=="/><t:UnreadCount>)" +
         std::to_string(unread) + "</t:UnreadCount></t:ModifiedEvent>";
}

std::string new_mail_in(const std::string& folder, const std::string& item) {
  return R"(<t:NewMailEvent><t:Watermark>AQAAAC==</t:Watermark><t:TimeStamp>)"
         R"(2026-12-06T10:00:01Z</t:TimeStamp><t:ItemId Id=")" +
         item + R"(" ChangeKey="CQAAAA=="/><t:ParentFolderId Id=")" + folder +
         R"(" ChangeKey="AQAAAA=="/></t:NewMailEvent>)";
}

TEST_F(RegistrationApi, AStatedInboxCountsOnlyThatFolderAndEachRegistrationKeepsItsOwnCount) {
  start();
  json body = registration(kToken);
  body["folder_id"] = "AAMkInbox";
  const auto inbox = post_registration(port_, body);
  ASSERT_EQ(inbox.status, 201) << inbox.body;
  EXPECT_EQ(body_of(inbox)["folder_id"], "AAMkInbox");
  const std::string url = body_of(inbox)["listener_url"];
  // The same device with a second account that stated no folder: every folder counts there.
  const auto other = post_registration(port_, registration(kToken, "bob@example.com"));
  ASSERT_EQ(other.status, 201) << other.body;
  EXPECT_TRUE(body_of(other)["folder_id"].is_null());
  const std::string other_url = body_of(other)["listener_url"];
  const auto unread = [&](const std::string& listener) {
    return count("SELECT unread_count FROM registrations WHERE secret_hash = UNHEX('" +
                 hex_encode(sha384(listener.substr(listener.rfind('/') + 1))) + "')");
  };

  ASSERT_EQ(callback(url, notification(unread_in("AAMkInbox", 4))), "OK");
  EXPECT_EQ(unread(url), 4);
  // Another folder (Sent Items, a shared folder): its counts and its new items are not the badge.
  ASSERT_EQ(callback(url, notification(unread_in("AAMkSentItems", 9))), "OK");
  ASSERT_EQ(callback(url, notification(new_mail_in("AAMkJunk", "AAMkItem-junk"))), "OK");
  EXPECT_EQ(unread(url), 4);
  ASSERT_EQ(callback(url, notification(new_mail_in("AAMkInbox", "AAMkItem-1"))), "OK");
  EXPECT_EQ(unread(url), 5);
  // Sent again (our OK lost on the way): counted once.
  ASSERT_EQ(callback(url, notification(new_mail_in("AAMkInbox", "AAMkItem-1"))), "OK");
  EXPECT_EQ(unread(url), 5);

  ASSERT_EQ(callback(other_url, notification(unread_in("AAMkBobInbox", 2))), "OK");
  EXPECT_EQ(unread(other_url), 2);
  EXPECT_EQ(unread(url), 5) << "a callback moved another registration's count";
  // The device's badge, pending and as the dispatcher reads it: the sum over its registrations.
  EXPECT_EQ(count("SELECT " + store::device_badge_sql("r.device_id") +
                  " FROM registrations r WHERE r.badge_owner IS NOT NULL AND r.folder_id = "
                  "'AAMkInbox'"),
            7);
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations WHERE folder_id = 'AAMkInbox'"), 1);
}

TEST_F(RegistrationApi, ARegistrationExchangeNeverCalledEndsAfterTheExpiryAndFreesItsPlace) {
  start({{"max_per_customer", 1}});
  const auto first = post_registration(port_, registration(kToken));
  ASSERT_EQ(first.status, 201) << first.body;
  const std::string capability = body_of(first)["capability"];
  EXPECT_EQ(post_registration(port_, registration(kToken, "bob@example.com")).status, 403)
      << "the customer's one place is taken";
  // Stopped first (its first expiry run may come after the change below); then the registration
  // is made 30 hours old, and Exchange never called it (no app subscribed with its URL).
  daemon_->signal(SIGTERM);
  ASSERT_EQ(daemon_->wait(15s), std::optional<int>(0)) << daemon_->log();
  {
    store::Connection conn(db_.options());
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(conn.execute("UPDATE registrations SET created_at = UTC_TIMESTAMP(6) - INTERVAL "
                             "30 HOUR")
                    .ok());
  }
  // mailpushd ends such registrations every minute, the first time at its start.
  daemon_ =
      launch({{"secret_file", secret_file_.string()}, {"max_per_customer", 1}}, "mailpushd-2.log");
  port_ = listening_port(*daemon_, 30s);
  ASSERT_NE(port_, 0) << daemon_->log();
  // The counter moves after the registration ended: wait for it, then look at both.
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = https_request(port_, "GET", "/metrics").body;
    if (metrics.find("mailpush_registrations_unconfirmed_expired_total 1") != std::string::npos)
      break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(metrics.find("mailpush_registrations_unconfirmed_expired_total 1"), std::string::npos)
      << metrics;
  EXPECT_EQ(count("SELECT COUNT(*) FROM registrations WHERE state = 'active'"), 0);
  // Its place is free; and the app, refreshing with its capability, gets a new registration.
  auto refresh = post_registration(port_, registration(kToken), capability);
  EXPECT_EQ(refresh.status, 201) << refresh.body;
  EXPECT_EQ(body_of(refresh)["change"], "created") << refresh.body;
  EXPECT_NE(body_of(refresh)["capability"], capability);
}

}  // namespace
}  // namespace mp::test
