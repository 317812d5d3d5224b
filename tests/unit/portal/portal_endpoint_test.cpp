// Tests of PortalEndpoint's own rules against an in-memory PortalStore (no database): upload
// checks and refusals, who may create, renew, change and delete a customer, the failed-attempt
// limiter, the answers to a store that is unavailable or fails, and that no password, key or
// code reaches an answer or a log line. The whole portal on MariaDB:
// tests/integration/portal_test.cpp.
#include "portal/portal_endpoint.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <exception>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "test_apns_sim.hpp"
#include "test_keys.hpp"
#include "test_multipart_form.hpp"
#include "test_portal_store.hpp"

namespace mp::portal {
namespace {

namespace bhttp = boost::beast::http;
using nlohmann::json;

const std::string kAdminToken = "adm_unit-test-token-0123456789abcdef";
const std::string kInvite = "inv_unit-test-invite-code-0123456789";
const std::string kPeer = "192.0.2.10";

using test::Form;

struct Answer {
  int status = 0;
  json body;
  std::string raw;  // the whole body as sent
  std::string retry_after;
  std::string cache_control;
};

// The test push certificates (certs/make-apns-test-certs.sh).
std::string p12(const std::string& name) {
  return test::read_file(test::apns_test_certs() / (name + ".p12"));
}
std::string password(const std::string& name) {
  return test::read_file(test::apns_test_certs() / (name + ".p12.password"));
}

class PortalRules : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_sink([this](std::string_view line) {
      std::lock_guard lock(log_mutex_);
      log_ += std::string(line) + "\n";
    });
    auto ring =
        keys::KeyRing::from_text("kek kek-unit-1 " + keys::test::random_key_base64() + " active\n");
    ASSERT_TRUE(ring.ok()) << ring.error().message;
    ring_.emplace(std::move(ring).value());
  }
  void TearDown() override { log::set_sink(nullptr); }

  PortalOptions options() const {
    PortalOptions o;
    o.region = "dev";
    o.customer_id_prefix = "dev";
    o.other_regions = {{"use1", "portal.use1.example"}};
    o.trust_anchors_pem = {test::read_file(test::apns_test_certs() / "apple-ca.crt")};
    o.admin_token_hashes = {sha384(kAdminToken)};
    o.failed_attempts_per_15_minutes = 1000;
    return o;
  }

  // The endpoint under test; `with_ring` false: the region has no key file.
  void start(PortalOptions o, bool with_ring = true) {
    endpoint_ = std::make_unique<PortalEndpoint>(std::move(o), store_,
                                                 with_ring ? &*ring_ : nullptr, registry_);
    router_ = http::Router{};
    endpoint_->add_routes(router_);
  }
  void start() { start(options()); }

  Answer send(bhttp::verb method, const std::string& target, const std::string& body = {},
              const std::string& bearer = {}, const std::string& peer = kPeer) {
    http::Request req{method, target, 11};
    req.set(bhttp::field::host, "portal.dev.example");
    if (!body.empty()) req.set(bhttp::field::content_type, Form::content_type());
    if (!bearer.empty()) req.set(bhttp::field::authorization, "Bearer " + bearer);
    req.body() = body;
    req.prepare_payload();
    const auto match = router_.match(method, target);
    EXPECT_NE(match.handler, nullptr) << target;
    if (match.handler == nullptr) return {};
    http::RequestContext ctx;
    ctx.peer = boost::asio::ip::make_address(peer);
    ctx.route = match.route;
    ctx.path_rest = match.path_rest;
    boost::asio::io_context ioc;
    std::optional<http::Response> res;
    boost::asio::co_spawn(ioc, (*match.handler)(req, ctx),
                          [&res](std::exception_ptr e, http::Response r) {
                            if (e) std::rethrow_exception(e);
                            res = std::move(r);
                          });
    ioc.run();
    EXPECT_TRUE(res.has_value());
    if (!res) return {};
    Answer a;
    a.status = static_cast<int>(res->result_int());
    a.raw = res->body();
    a.body = json::parse(a.raw, nullptr, false);
    a.retry_after = std::string((*res)[bhttp::field::retry_after]);
    a.cache_control = std::string((*res)[bhttp::field::cache_control]);
    answers_ += a.raw + "\n";
    return a;
  }

  // A create form for `name`.p12 with its password, the App ID, region dev.
  static Form create_form(const std::string& name = "mail",
                          const std::string& app_id = "com.example.mail") {
    Form f;
    f.file("certificate", p12(name))
        .field("password", password(name))
        .field("app_id", app_id)
        .field("region", "dev")
        .field("display_name", "Example Mail");
    return f;
  }
  Answer create(const Form& f, const std::string& bearer = kAdminToken,
                const std::string& peer = kPeer) {
    return send(bhttp::verb::post, "/portal/v1/customers", f.body(), bearer, peer);
  }
  // The create form with the one-time invite kInvite, as the portal page sends it.
  static Form invite_form() {
    Form f = create_form();
    f.field("invite_code", kInvite);
    return f;
  }
  // Starts the endpoint and creates a customer with the invite.
  Answer create_with_invite() {
    store_.add_invite(kInvite);
    start();
    return create(invite_form(), "");
  }

  // A customer created by the region admin: its Customer ID and admin key.
  struct Created {
    std::string customer_id;
    std::string admin_key;
  };
  Created create_customer(const std::string& name = "mail",
                          const std::string& app_id = "com.example.mail") {
    const Answer a = create(create_form(name, app_id));
    EXPECT_EQ(a.status, 201) << a.raw;
    if (a.status != 201) return {};
    return {a.body.at("customer_id").get<std::string>(), a.body.at("admin_key").get<std::string>()};
  }

  std::string log() const {
    std::lock_guard lock(log_mutex_);
    return log_;
  }

  test::FakePortalStore store_;
  std::optional<keys::KeyRing> ring_;
  prometheus::Registry registry_;
  http::Router router_;
  std::unique_ptr<PortalEndpoint> endpoint_;
  std::string answers_;  // every answer's body, for the no-secret checks
  mutable std::mutex log_mutex_;
  std::string log_;
};

TEST_F(PortalRules, CreateWithAnInviteStoresHashesAndASealedCredentialAndUsesTheInvite) {
  const Answer a = create_with_invite();
  ASSERT_EQ(a.status, 201) << a.raw;
  EXPECT_EQ(a.cache_control, "no-store");
  const std::string id = a.body.at("customer_id");
  EXPECT_EQ(id.rfind("dev-", 0), 0u) << id;
  EXPECT_EQ(a.body.at("certificate").at("topic"), "com.example.mail");
  EXPECT_EQ(a.body.at("certificate").at("environments"), "development,production");

  const auto* c = store_.customer(id);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->row.app_id, "com.example.mail");
  EXPECT_EQ(c->row.display_name, "Example Mail");
  EXPECT_EQ(c->admin_key_hash, sha384(a.body.at("admin_key").get<std::string>()));
  EXPECT_EQ(c->registration_key_hash, sha384(a.body.at("registration_key").get<std::string>()));
  const auto creds = store_.credentials_of(c->row.id);
  ASSERT_EQ(creds.size(), 1u);
  EXPECT_EQ(creds[0]->row.state, "active");
  EXPECT_EQ(creds[0]->stored.kek_id, "kek-unit-1");
  EXPECT_FALSE(creds[0]->stored.sealed_material.empty());
  EXPECT_EQ(hex_encode(creds[0]->stored.fingerprint_sha256),
            a.body.at("certificate").at("fingerprint_sha256").get<std::string>());
  ASSERT_EQ(store_.invites().size(), 1u);
  EXPECT_EQ(store_.invites()[0].used_by, std::optional<std::int64_t>(c->row.id));
  ASSERT_EQ(store_.audit().size(), 1u);
  EXPECT_EQ(store_.audit()[0].actor, "portal:invite");
  EXPECT_EQ(store_.audit()[0].source_address, kPeer);

  // The code is used now: a second customer with it is refused, and nothing is stored.
  const Answer again = create(invite_form(), "");
  EXPECT_EQ(again.status, 403) << again.raw;
  EXPECT_EQ(again.body.at("error"), "invalid_invite");
  EXPECT_EQ(store_.customer_count(), 1u);
}

TEST_F(PortalRules, CreateNeedsTheAdminTokenOrAnInviteCode) {
  store_.add_invite("inv_expired-code-000000000000", true);
  start();
  const Answer none = create(create_form(), "");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.body.at("error"), "missing_invite");
  const Answer bad_token = create(create_form(), "adm_not-the-token");
  EXPECT_EQ(bad_token.status, 401);
  EXPECT_EQ(bad_token.body.at("error"), "invalid_token");
  Form expired = create_form();
  expired.field("invite_code", "inv_expired-code-000000000000");
  const Answer old = create(expired, "");
  EXPECT_EQ(old.status, 403);
  EXPECT_EQ(old.body.at("error"), "invalid_invite");
  EXPECT_EQ(store_.customer_count(), 0u);
}

TEST_F(PortalRules, AnInviteUsedBetweenTheCheckAndTheWriteIsRefused) {
  store_.add_invite(kInvite);
  start();
  store_.use_invites_before_create();
  const Answer a = create(invite_form(), "");
  EXPECT_EQ(a.status, 403) << a.raw;
  EXPECT_EQ(a.body.at("error"), "invalid_invite");
  EXPECT_EQ(store_.customer_count(), 0u);
}

TEST_F(PortalRules, UploadsThatAreNotThisAppsValidPushCertificateAreRefusedWithTheirReason) {
  start();
  const std::string pw = password("mail");
  std::vector<test::RefusedForm> cases;
  auto with = [](const std::string& data, const std::string& pass,
                 const std::string& app_id = "com.example.mail") {
    Form f;
    f.file("certificate", data)
        .field("password", pass)
        .field("app_id", app_id)
        .field("region", "dev");
    return f;
  };
  cases.push_back({"wrong password", with(p12("mail"), "not-" + pw), 422, "wrong_password"});
  cases.push_back({"not a .p12", with(std::string(3000, '\x5a'), pw), 422, "not_pkcs12"});
  cases.push_back(
      {"another app's certificate", with(p12("other"), password("other")), 409, "topic_mismatch"});
  cases.push_back({"the App ID of another certificate", with(p12("mail"), pw, "com.example.other"),
                   409, "topic_mismatch"});
  cases.push_back({"expired", with(p12("mail-expired"), password("mail-expired")), 422, "expired"});
  cases.push_back({"too large", with(std::string(70 * 1024, 'x'), pw), 413, "too_large"});
  cases.push_back(
      {"an invalid App ID", with(p12("mail"), pw, "com example"), 400, "invalid_app_id"});
  {
    Form f;
    f.field("password", pw).field("app_id", "com.example.mail").field("region", "dev");
    cases.push_back({"no certificate", f, 400, "missing_certificate"});
  }
  {
    Form f;
    f.file("certificate", p12("mail")).field("app_id", "com.example.mail").field("region", "dev");
    cases.push_back({"no password", f, 400, "missing_password"});
  }
  {
    Form f = with(p12("mail"), pw);
    f.field("colour", "blue");
    cases.push_back({"an unknown field", f, 400, "unknown_field"});
  }
  {
    Form f;
    f.file("certificate", p12("mail")).field("password", pw).field("app_id", "com.example.mail");
    f.field("region", "use1");
    cases.push_back({"another region", f, 421, "wrong_region"});
  }
  {
    Form f;
    f.file("certificate", p12("mail")).field("password", pw).field("app_id", "com.example.mail");
    f.field("region", "mars-1");
    cases.push_back({"an unknown region", f, 400, "unknown_region"});
  }
  {
    Form f = with(p12("mail"), pw);
    f.field("region", "use1");
    cases.push_back({"a field sent twice", f, 400, "malformed_form"});
  }
  cases.push_back({"a truncated .p12", with(p12("mail").substr(0, 500), pw), 422, "not_pkcs12"});
  for (const std::string name : {"mail-not-yet-valid", "mail-wrong-ca"}) {
    cases.push_back({name, with(p12(name), password(name)), 422,
                     name == "mail-wrong-ca" ? "unknown_issuer" : "not_yet_valid"});
  }
  cases.push_back({"an App ID with SQL in it",
                   with(p12("mail"), pw, "com.example.mail'; DROP TABLE customers; --"), 400,
                   "invalid_app_id"});
  cases.push_back({"a non-ASCII App ID", with(p12("mail"), pw, "com.ex\xc3\xa4mple.mail"), 400,
                   "invalid_app_id"});
  for (const auto& c : cases) {
    const Answer a = create(c.form);
    EXPECT_EQ(a.status, c.status) << c.what << ": " << a.raw;
    EXPECT_EQ(a.body.value("error", ""), c.error) << c.what;
    EXPECT_FALSE(a.body.value("message", "").empty()) << c.what;
    EXPECT_EQ(a.raw.find(pw), std::string::npos) << c.what << ": the password is never echoed";
  }
  EXPECT_EQ(store_.customer_count(), 0u) << "nothing refused is stored";
  EXPECT_EQ(store_.calls(), 0u) << "the admin token needs no store call; refusals none either";
  EXPECT_EQ(log().find(pw), std::string::npos);
}

TEST_F(PortalRules, WithoutAKeyFileUploadsAre503ButStatusWorks) {
  start();
  const Created c = create_customer();
  start(options(), false);
  const Answer a = create(create_form());
  EXPECT_EQ(a.status, 503);
  EXPECT_EQ(a.body.at("error"), "not_configured");
  EXPECT_EQ(a.retry_after, "3600");
  Form renew;
  renew.file("certificate", p12("mail")).field("password", password("mail"));
  const Answer r = send(bhttp::verb::post, "/portal/v1/customers/" + c.customer_id + "/certificate",
                        renew.body(), c.admin_key);
  EXPECT_EQ(r.status, 503);
  const Answer s = send(bhttp::verb::get, "/portal/v1/customers/" + c.customer_id, {}, c.admin_key);
  EXPECT_EQ(s.status, 200) << s.raw;
  EXPECT_EQ(store_.customer_count(), 1u);
}

TEST_F(PortalRules, StatusShowsTheCustomerAndItsCertificateToItsKeyAndTheAdminOnly) {
  start();
  const Created c = create_customer();
  const Created other = create_customer("other", "com.example.other");
  const std::string path = "/portal/v1/customers/" + c.customer_id;
  const Answer a = send(bhttp::verb::get, path, {}, c.admin_key);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body.at("customer_id"), c.customer_id);
  EXPECT_EQ(a.body.at("region"), "dev");
  EXPECT_EQ(a.body.at("state"), "active");
  EXPECT_EQ(a.body.at("certificate").at("topic"), "com.example.mail");
  EXPECT_EQ(a.body.at("certificate").at("state"), "active");
  EXPECT_GT(a.body.at("certificate").at("days_left").get<int>(), 30);
  EXPECT_EQ(a.body.at("certificates").size(), 1u);

  EXPECT_EQ(send(bhttp::verb::get, path, {}, kAdminToken).status, 200);
  const Answer wrong = send(bhttp::verb::get, path, {}, other.admin_key);
  EXPECT_EQ(wrong.status, 403) << "another customer's key opens only its own customer";
  EXPECT_EQ(wrong.body.at("error"), "invalid_key");
  EXPECT_EQ(send(bhttp::verb::get, path, {}, "ak_made-up").status, 403);
  const Answer unknown =
      send(bhttp::verb::get, "/portal/v1/customers/dev-nosuchcustomer0000000", {}, kAdminToken);
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(send(bhttp::verb::get, path, {}, "").status, 401);
  EXPECT_EQ(send(bhttp::verb::get, "/portal/v1/customers/NOT_AN_ID", {}, kAdminToken).status, 404);
}

TEST_F(PortalRules, RenewalReplacesTheActiveCertificateAndAuditsIt) {
  start();
  const Created c = create_customer();
  const auto* customer = store_.customer(c.customer_id);
  ASSERT_NE(customer, nullptr);
  Form renew;
  renew.file("certificate", p12("mail-legacy")).field("password", password("mail-legacy"));
  const Answer a = send(bhttp::verb::post, "/portal/v1/customers/" + c.customer_id + "/certificate",
                        renew.body(), c.admin_key);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body.at("certificate").at("state"), "active");
  const auto creds = store_.credentials_of(customer->row.id);
  ASSERT_EQ(creds.size(), 2u);
  EXPECT_EQ(creds[0]->row.state, "retired");
  EXPECT_EQ(creds[1]->row.state, "active");
  EXPECT_EQ(hex_encode(creds[1]->stored.fingerprint_sha256),
            a.body.at("certificate").at("fingerprint_sha256").get<std::string>());
  ASSERT_EQ(store_.audit().size(), 2u);
  EXPECT_EQ(store_.audit()[1].action, "credential.renew");
  EXPECT_EQ(store_.audit()[1].actor, "portal:customer-admin");

  // The status lists both, the new one as the certificate.
  const Answer s = send(bhttp::verb::get, "/portal/v1/customers/" + c.customer_id, {}, c.admin_key);
  EXPECT_EQ(s.body.at("certificates").size(), 2u);
  EXPECT_EQ(s.body.at("certificate").at("fingerprint_sha256"),
            a.body.at("certificate").at("fingerprint_sha256"));
}

TEST_F(PortalRules, RenewalRefusesAnotherAppAndAnEnvironmentSwitchUnlessAllowed) {
  start();
  const Created c = create_customer();
  const auto* customer = store_.customer(c.customer_id);
  ASSERT_NE(customer, nullptr);
  const std::string path = "/portal/v1/customers/" + c.customer_id + "/certificate";
  Form other;
  other.file("certificate", p12("other")).field("password", password("other"));
  const Answer a = send(bhttp::verb::post, path, other.body(), c.admin_key);
  EXPECT_EQ(a.status, 409) << a.raw;
  EXPECT_EQ(a.body.at("error"), "topic_mismatch");

  Form dev_only;
  dev_only.file("certificate", p12("mail-dev")).field("password", password("mail-dev"));
  const Answer b = send(bhttp::verb::post, path, dev_only.body(), c.admin_key);
  EXPECT_EQ(b.status, 409) << b.raw;
  EXPECT_EQ(b.body.at("error"), "environment_changed");
  ASSERT_EQ(store_.credentials_of(customer->row.id).size(), 1u) << "nothing refused is stored";
  EXPECT_EQ(store_.credentials_of(customer->row.id)[0]->row.state, "active");

  dev_only.field("allow_environment_change", "true");
  const Answer ok = send(bhttp::verb::post, path, dev_only.body(), c.admin_key);
  EXPECT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body.at("certificate").at("environments"), "development");
  EXPECT_EQ(store_.credentials_of(customer->row.id).size(), 2u);
}

TEST_F(PortalRules, DisableAndEnableChangeTheStateOnceEach) {
  start();
  const Created c = create_customer();
  const std::string path = "/portal/v1/customers/" + c.customer_id;
  const Answer off = send(bhttp::verb::post, path + "/disable", {}, c.admin_key);
  ASSERT_EQ(off.status, 200) << off.raw;
  EXPECT_EQ(off.body.at("state"), "disabled");
  EXPECT_EQ(off.body.at("changed"), true);
  EXPECT_EQ(store_.customer(c.customer_id)->row.state, "disabled");
  const Answer again = send(bhttp::verb::post, path + "/disable", {}, kAdminToken);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(again.body.at("changed"), false);
  const Answer on = send(bhttp::verb::post, path + "/enable", {}, c.admin_key);
  EXPECT_EQ(on.body.at("state"), "active");
  EXPECT_EQ(on.body.at("changed"), true);
  EXPECT_EQ(store_.customer(c.customer_id)->row.state, "active");
  EXPECT_EQ(send(bhttp::verb::post, path + "/explode", {}, c.admin_key).status, 404);
  ASSERT_EQ(store_.audit().size(), 3u) << "a create and two changes; the no-op is not audited";
  EXPECT_EQ(store_.audit()[2].action, "customer.state");
}

TEST_F(PortalRules, DeleteEndsTheCustomerForEveryCaller) {
  start();
  const Created c = create_customer();
  const std::string path = "/portal/v1/customers/" + c.customer_id;
  const Answer a = send(bhttp::verb::delete_, path, {}, c.admin_key);
  ASSERT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body.at("state"), "deleted");
  EXPECT_EQ(store_.customer(c.customer_id)->row.state, "deleted");
  EXPECT_EQ(send(bhttp::verb::get, path, {}, c.admin_key).status, 403);
  EXPECT_EQ(send(bhttp::verb::get, path, {}, kAdminToken).status, 404);
  EXPECT_EQ(send(bhttp::verb::post, path + "/enable", {}, kAdminToken).status, 404);
  EXPECT_EQ(store_.customer(c.customer_id)->row.state, "deleted") << "never back";
}

TEST_F(PortalRules, FailedAttemptsFromOneAddressAreLimitedAndOthersAreNot) {
  PortalOptions o = options();
  o.failed_attempts_per_15_minutes = 3;
  start(o);
  const Created c = create_customer();
  const std::string path = "/portal/v1/customers/" + c.customer_id;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(send(bhttp::verb::get, path, {}, "ak_guess-" + std::to_string(i)).status, 403);
  }
  const Answer blocked = send(bhttp::verb::get, path, {}, c.admin_key);
  EXPECT_EQ(blocked.status, 429) << "even the right key waits: " << blocked.raw;
  EXPECT_EQ(blocked.body.at("error"), "too_many_failures");
  EXPECT_FALSE(blocked.retry_after.empty());
  EXPECT_GT(std::stoi(blocked.retry_after), 0);
  EXPECT_EQ(send(bhttp::verb::get, path, {}, c.admin_key, "192.0.2.11").status, 200);

  // IPv6 callers count per /64; a wrong password counts as a failure too.
  for (int i = 0; i < 3; ++i) {
    Form f;
    f.file("certificate", p12("mail"))
        .field("password", "wrong")
        .field("app_id", "com.example.mail")
        .field("region", "dev");
    EXPECT_EQ(create(f, kAdminToken, "2001:db8:1:2::" + std::to_string(i + 1)).status, 422);
  }
  EXPECT_EQ(send(bhttp::verb::get, path, {}, c.admin_key, "2001:db8:1:2:ffff::9").status, 429);
  EXPECT_EQ(send(bhttp::verb::get, path, {}, c.admin_key, "2001:db8:1:3::1").status, 200);
}

TEST_F(PortalRules, AnUnavailableStoreIs503AndAFailingOneIs500WithNothingChanged) {
  start();
  const Created c = create_customer();
  const std::string path = "/portal/v1/customers/" + c.customer_id;

  store_.fail_next_call(Errc::unavailable);
  const Answer created = create(create_form());
  EXPECT_EQ(created.status, 503) << created.raw;
  EXPECT_EQ(created.body.at("error"), "unavailable");
  EXPECT_EQ(created.retry_after, "30");
  EXPECT_EQ(created.raw.find("admin_key"), std::string::npos) << "no key for a customer not made";
  EXPECT_EQ(store_.customer_count(), 1u);

  store_.fail_next_call(Errc::busy);
  EXPECT_EQ(send(bhttp::verb::get, path, {}, c.admin_key).status, 503);

  store_.fail_next_call(Errc::internal);
  const Answer failed = send(bhttp::verb::post, path + "/disable", {}, c.admin_key);
  EXPECT_EQ(failed.status, 500) << failed.raw;
  EXPECT_EQ(failed.body.at("error"), "internal");
  EXPECT_EQ(failed.raw.find("fake"), std::string::npos) << "the store's message stays inside";
  EXPECT_EQ(store_.customer(c.customer_id)->row.state, "active");

  // Every call fails: a renewal, a delete, an invite check.
  store_.fail_every_call(Errc::unavailable);
  Form renew;
  renew.file("certificate", p12("mail-legacy")).field("password", password("mail-legacy"));
  EXPECT_EQ(send(bhttp::verb::post, path + "/certificate", renew.body(), c.admin_key).status, 503);
  EXPECT_EQ(send(bhttp::verb::delete_, path, {}, kAdminToken).status, 503);
  EXPECT_EQ(create(invite_form(), "").status, 503);
  store_.fail_every_call(std::nullopt);
  EXPECT_EQ(store_.customer(c.customer_id)->row.state, "active");
  EXPECT_EQ(store_.credentials_of(store_.customer(c.customer_id)->row.id).size(), 1u);
  EXPECT_EQ(send(bhttp::verb::get, path, {}, c.admin_key).status, 200) << "served again";

  // The renewal's write failing after its reads: 500, and the old certificate stays active.
  store_.fail_after(2, Errc::internal);
  const Answer renewal = send(bhttp::verb::post, path + "/certificate", renew.body(), c.admin_key);
  EXPECT_EQ(renewal.status, 500) << renewal.raw;
  const auto creds = store_.credentials_of(store_.customer(c.customer_id)->row.id);
  ASSERT_EQ(creds.size(), 1u);
  EXPECT_EQ(creds[0]->row.state, "active");
}

TEST_F(PortalRules, NoPasswordKeyOrCodeAppearsInAnyAnswerOrLogLine) {
  const Answer a = create_with_invite();
  ASSERT_EQ(a.status, 201) << a.raw;
  const std::string admin_key = a.body.at("admin_key");
  const std::string registration_key = a.body.at("registration_key");
  const std::string id = a.body.at("customer_id");
  Form wrong_pw;
  wrong_pw.file("certificate", p12("mail"))
      .field("password", "Secret-Wrong-Password-42")
      .field("app_id", "com.example.mail")
      .field("region", "dev");
  create(wrong_pw);
  Form renew;
  renew.file("certificate", p12("mail-legacy")).field("password", password("mail-legacy"));
  send(bhttp::verb::post, "/portal/v1/customers/" + id + "/certificate", renew.body(), admin_key);
  send(bhttp::verb::get, "/portal/v1/customers/" + id, {}, admin_key);
  send(bhttp::verb::get, "/portal/v1/customers/" + id, {}, "ak_wrong-key-guess-1234567");
  send(bhttp::verb::post, "/portal/v1/customers/" + id + "/disable", {}, kAdminToken);
  send(bhttp::verb::delete_, "/portal/v1/customers/" + id, {}, admin_key);

  const std::string logged = log();
  ASSERT_NE(logged.find("portal.customer_created"), std::string::npos) << "the capture works";
  ASSERT_NE(logged.find("portal.refused"), std::string::npos);
  // The keys are shown once, in the creation's answer, and never again.
  std::string later = answers_;
  later.erase(0, later.find('\n') + 1);
  for (const std::string& secret :
       {password("mail"), password("mail-legacy"), std::string("Secret-Wrong-Password-42"), kInvite,
        kAdminToken, admin_key, registration_key, std::string("ak_wrong-key-guess-1234567")}) {
    EXPECT_EQ(logged.find(secret), std::string::npos) << "a secret in the log";
    EXPECT_EQ(later.find(secret), std::string::npos) << "a secret in an answer";
  }
  // Nor the private key: no line of its PEM body.
  const std::string key_pem = test::read_file(test::apns_test_certs() / "mail.key");
  std::size_t start = 0;
  while (start < key_pem.size()) {
    const std::size_t end = std::min(key_pem.find('\n', start), key_pem.size());
    const std::string line = key_pem.substr(start, end - start);
    start = end + 1;
    if (line.size() < 40 || line.rfind("-----", 0) == 0) continue;
    EXPECT_EQ(logged.find(line), std::string::npos);
    EXPECT_EQ(answers_.find(line), std::string::npos);
  }
}

}  // namespace
}  // namespace mp::portal
