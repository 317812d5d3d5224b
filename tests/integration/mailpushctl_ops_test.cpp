// mailpushctl's operator commands as a real process against a real MariaDB (and apns-sim and
// mailpushd where a command talks to them): customers show/disable/enable, devices show,
// registrations show, outbox stats/retry-dead, audit tail, status, certs expiring/test, and
// doctor finding each seeded fault.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "certs/push_certificate.hpp"
#include "common/crypto.hpp"
#include "credentials/credential_material.hpp"
#include "keys/envelope.hpp"
#include "keys/key_ring.hpp"
#include "keys/region_secret.hpp"
#include "store/customers.hpp"
#include "store/mariadb.hpp"
#include "store/migrations.hpp"
#include "store/outbox.hpp"
#include "store/registrations.hpp"
#include "test_apns_sim.hpp"
#include "test_certificates.hpp"
#include "test_env.hpp"
#include "test_registrations.hpp"

namespace mp::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

int ctl(const fs::path& region, std::vector<std::string> args, std::string* out) {
  std::vector<std::string> argv{(binary_dir() / "src/app/mailpushctl").string(), "--region",
                                region.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, out);
}

json parse(const std::string& out) {
  auto j = json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out;
  return j;
}

std::string base64_encode(const Bytes& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string sql_time(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// A migrated scratch database, a key file, a region secret and a region file pointing at them
// (and at `sim` for APNs when given).
class CtlRegion {
 public:
  explicit CtlRegion(const std::string& tag, const ApnsSimProcess* sim = nullptr,
                     json extra = json::object())
      : dir_(make_temp_dir(tag)) {
    kek_ = dir_ / "kek";
    EXPECT_EQ(run_command({(source_dir() / "scripts/make-kek.sh").string(), kek_.string(), "k1"}),
              0);
    secret_file_ = make_region_secret(dir_);
    json patch = {{"database",
                   {{"host", db_.options().host},
                    {"port", db_.options().port},
                    {"socket", nullptr},
                    {"name", db_.name()},
                    {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")}}},
                  {"portal", {{"kek_file", kek_.string()}}},
                  {"registration", {{"secret_file", secret_file_.string()}}}};
    if (sim != nullptr) {
      patch["apns"] = {{"production", {{"host", "127.0.0.1"}, {"port", sim->h2_port()}}},
                       {"sandbox", {{"host", "127.0.0.1"}, {"port", sim->h2_port()}}},
                       {"ca_file", (apns_test_certs() / "apple-ca.crt").string()}};
    }
    patch.merge_patch(extra);
    region_ = write_region_file(dir_, patch.dump());
    std::string out;
    EXPECT_EQ(ctl(region_, {"migrate"}, &out), 0) << out;
    conn_ = std::make_unique<store::Connection>(db_.options());
    EXPECT_TRUE(conn_->connect().ok());
    auto ring = keys::KeyRing::load_file(kek_);
    EXPECT_TRUE(ring.ok());
    ring_.emplace(std::move(*ring));
    auto secret = keys::RegionSecret::load_file(secret_file_);
    EXPECT_TRUE(secret.ok());
    secret_.emplace(std::move(*secret));
  }

  const fs::path& region() const { return region_; }
  const fs::path& dir() const { return dir_; }
  store::Connection& conn() { return *conn_; }
  const keys::RegionSecret& secret() const { return *secret_; }
  // Rewrites the region file with `patch` merged in.
  void patch_region(const json& patch) {
    auto region = json::parse(read_file(region_));
    region.merge_patch(patch);
    write_file(region_, region.dump(2));
  }

  // A customer with an active credential made from the test certificate `cert` (mail,
  // mail-dev, mail-prod, ...), sealed with the region's key file as the portal does.
  std::int64_t customer_with_cert(const std::string& id, const std::string& cert = "mail") {
    certs::InspectOptions options;
    options.trust_anchors_pem = {read_file(apns_test_certs() / "apple-ca.crt")};
    options.now = std::chrono::system_clock::now();
    auto inspected = certs::inspect_pem(read_file(apns_test_certs() / (cert + ".crt")),
                                        read_file(apns_test_certs() / (cert + ".key")), options);
    EXPECT_TRUE(std::holds_alternative<certs::PushCertificate>(inspected));
    const auto& pc = std::get<certs::PushCertificate>(inspected);
    const auto material = credentials::pack_material(pc);
    auto sealed = keys::seal(*ring_, material.view(),
                             credentials::credential_aad(id, pc.fingerprint_sha256_hex));
    EXPECT_TRUE(sealed.ok());
    store::NewCustomer c;
    c.customer_id = id;
    c.display_name = "Customer " + id;
    c.app_id = pc.topic;
    c.registration_key_hash = sha384(random_token("r_", 16));
    c.admin_key_hash = sha384(random_token("a_", 16));
    store::NewCredential k;
    k.topic = pc.topic;
    k.development = pc.development;
    k.production = pc.production;
    k.subject = pc.subject;
    k.issuer = pc.issuer;
    k.serial_hex = pc.serial_hex;
    k.fingerprint_sha256 = *hex_decode(pc.fingerprint_sha256_hex);
    k.not_before = sql_time(pc.not_before);
    k.not_after = sql_time(pc.not_after);
    k.kek_id = sealed->kek_id;
    k.wrapped_data_key = sealed->wrapped_data_key;
    k.sealed_material = sealed->sealed_material;
    auto created = store::create_customer(*conn_, c, k, {"test", ""});
    EXPECT_TRUE(created.ok()) << (created.ok() ? "" : created.error().message);
    return created.ok() ? created->id : 0;
  }

  // Registers `token_hex` for `mailbox` of the customer, as the registration API would.
  std::int64_t register_device(std::int64_t customer, const std::string& mailbox,
                               const std::string& token_hex,
                               const std::string& environment = "production") {
    store::NewRegistration r;
    r.customer_id = customer;
    r.mailbox_hmac = *secret_->mailbox_hmac(mailbox);
    r.token_hex = token_hex;
    r.environment = environment;
    r.secret_hash = sha384(random_token("s_", 16));
    auto id = store::insert_registration(*conn_, r);
    EXPECT_TRUE(id.ok()) << (id.ok() ? "" : id.error().message);
    return id.ok() ? *id : 0;
  }

 private:
  ScratchDatabase db_;
  fs::path dir_, kek_, secret_file_, region_;
  std::unique_ptr<store::Connection> conn_;
  std::optional<keys::KeyRing> ring_;
  std::optional<keys::RegionSecret> secret_;
};

const std::string kToken1 = "a1b2c3d4" + std::string(56, '1');
const std::string kToken2 = "a1b2ffff" + std::string(56, '2');

std::int64_t scalar(store::Connection& conn, const std::string& sql) {
  auto rows = conn.query(sql);
  EXPECT_TRUE(rows.ok() && !rows->empty());
  return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : -1;
}

TEST(MailpushctlOps, CustomersShowDisableAndEnableAreAudited) {
  CtlRegion r("ctl-customers");
  const auto customer = r.customer_with_cert("dev-shop1");
  r.register_device(customer, "alice@example.com", kToken1);
  r.register_device(customer, "bob@example.com", kToken2, "development");
  std::string out;

  ASSERT_EQ(ctl(r.region(), {"--json", "customers", "show", "dev-shop1"}, &out), 0) << out;
  auto shown = parse(out);
  EXPECT_EQ(shown["state"], "active");
  EXPECT_EQ(shown["devices"]["active_production"], 1);
  EXPECT_EQ(shown["devices"]["active_development"], 1);
  EXPECT_EQ(shown["registrations"]["active"], 2);
  EXPECT_EQ(shown["mailboxes"], 2);
  ASSERT_EQ(shown["credentials"].size(), 1u);
  EXPECT_EQ(shown["credentials"][0]["topic"], "com.example.mail");
  ASSERT_EQ(ctl(r.region(), {"customers", "show", "dev-shop1"}, &out), 0) << out;
  EXPECT_NE(out.find("1 production, 1 development active"), std::string::npos) << out;

  EXPECT_EQ(ctl(r.region(), {"customers", "show", "dev-nosuch"}, &out), 6) << out;
  EXPECT_NE(out.find("no customer dev-nosuch"), std::string::npos) << out;

  // Disabling needs --yes; then it is disabled, audited, and enable undoes it.
  EXPECT_EQ(ctl(r.region(), {"customers", "disable", "dev-shop1"}, &out), 2) << out;
  EXPECT_NE(out.find("--yes"), std::string::npos) << out;
  EXPECT_EQ(scalar(r.conn(),
                   "SELECT state = 'active' FROM customers WHERE id = " + std::to_string(customer)),
            1);
  ASSERT_EQ(ctl(r.region(), {"customers", "disable", "dev-shop1", "--yes"}, &out), 0) << out;
  EXPECT_NE(out.find("now disabled"), std::string::npos) << out;
  ASSERT_EQ(ctl(r.region(), {"customers", "disable", "dev-shop1", "--yes"}, &out), 0) << out;
  EXPECT_NE(out.find("already disabled"), std::string::npos) << out;
  ASSERT_EQ(ctl(r.region(), {"--json", "customers", "list"}, &out), 0) << out;
  EXPECT_EQ(parse(out)["customers"][0]["state"], "disabled");

  ASSERT_EQ(ctl(r.region(), {"--json", "audit", "tail", "-n", "5"}, &out), 0) << out;
  auto audit = parse(out)["audit"];
  bool seen = false;
  for (const auto& a : audit) {
    if (a["action"] == "customer.state" && a["detail"]["state"] == "disabled") {
      seen = true;
      EXPECT_EQ(a["customer_id"], "dev-shop1");
      EXPECT_EQ(a["actor"].get<std::string>().rfind("mailpushctl:", 0), 0u);
    }
  }
  EXPECT_TRUE(seen) << out;
  ASSERT_EQ(ctl(r.region(), {"audit", "tail"}, &out), 0) << out;
  EXPECT_NE(out.find("customer.state"), std::string::npos) << out;

  ASSERT_EQ(ctl(r.region(), {"customers", "enable", "dev-shop1"}, &out), 0) << out;
  EXPECT_EQ(scalar(r.conn(),
                   "SELECT state = 'active' FROM customers WHERE id = " + std::to_string(customer)),
            1);
}

TEST(MailpushctlOps, DevicesShowFindsByPrefixAndNeverPrintsAWholeToken) {
  CtlRegion r("ctl-devices");
  const auto customer = r.customer_with_cert("dev-shop2");
  r.register_device(customer, "alice@example.com", kToken1);
  r.register_device(customer, "alice@example.com", kToken2);
  std::string out;

  ASSERT_EQ(ctl(r.region(), {"--json", "devices", "show", "dev-shop2", "A1B2"}, &out), 0) << out;
  const auto both = parse(out)["devices"];
  EXPECT_EQ(both.size(), 2u) << out;
  ASSERT_EQ(ctl(r.region(), {"devices", "show", "dev-shop2", "a1b2c3d4"}, &out), 0) << out;
  EXPECT_NE(out.find("a1b2c3d4"), std::string::npos) << out;
  EXPECT_NE(out.find("production  active"), std::string::npos) << out;
  EXPECT_EQ(out.find(kToken1), std::string::npos) << "a whole token was printed: " << out;
  EXPECT_EQ(out.find(kToken1.substr(0, 24)), std::string::npos) << out;

  EXPECT_EQ(ctl(r.region(), {"devices", "show", "dev-shop2", "a1b"}, &out), 2) << out;
  EXPECT_EQ(ctl(r.region(), {"devices", "show", "dev-shop2", "a1b2%"}, &out), 2) << out;
  EXPECT_EQ(ctl(r.region(), {"devices", "show", "dev-shop2", "ffff0000"}, &out), 6) << out;
  EXPECT_EQ(ctl(r.region(), {"devices", "show", "dev-other", "a1b2"}, &out), 6) << out;
}

TEST(MailpushctlOps, RegistrationsShowLooksUpTheMailboxThroughTheHmac) {
  CtlRegion r("ctl-registrations");
  const auto customer = r.customer_with_cert("dev-shop3");
  const auto id = r.register_device(customer, "Alice@Example.com", kToken1);
  r.register_device(customer, "bob@example.com", kToken2);
  ASSERT_TRUE(
      r.conn()
          .execute("UPDATE registrations SET unread_count = 5 WHERE id = ?", {store::Value{id}})
          .ok());
  std::string out;

  ASSERT_EQ(
      ctl(r.region(), {"--json", "registrations", "show", "--mailbox", " alice@EXAMPLE.com"}, &out),
      0)
      << out;
  const auto regs = parse(out)["registrations"];
  ASSERT_EQ(regs.size(), 1u) << out;
  EXPECT_EQ(regs[0]["registration_id"], id);
  EXPECT_EQ(regs[0]["customer_id"], "dev-shop3");
  EXPECT_EQ(regs[0]["subscription_bound"], false);
  EXPECT_EQ(regs[0]["unread_count"], 5);  // the registration's own count
  EXPECT_EQ(regs[0]["folder_stated"], false);
  EXPECT_EQ(out.find(kToken1), std::string::npos) << out;
  ASSERT_EQ(
      ctl(r.region(),
          {"registrations", "show", "--mailbox", "alice@example.com", "--customer", "dev-shop3"},
          &out),
      0)
      << out;
  EXPECT_NE(out.find("not bound yet"), std::string::npos) << out;
  EXPECT_NE(out.find("unread 5 (of any folder Exchange reports)"), std::string::npos) << out;

  EXPECT_EQ(ctl(r.region(), {"registrations", "show", "--mailbox", "carol@example.com"}, &out), 6)
      << out;
  EXPECT_EQ(ctl(r.region(), {"registrations", "show", "--mailbox", "not an address"}, &out), 2)
      << out;
  // Without the region secret nothing can be looked up, and it says why.
  r.patch_region({{"registration", {{"secret_file", nullptr}}}});
  EXPECT_EQ(ctl(r.region(), {"registrations", "show", "--mailbox", "alice@example.com"}, &out), 78)
      << out;
  EXPECT_NE(out.find("secret_file"), std::string::npos) << out;
}

TEST(MailpushctlOps, OutboxStatsAndRetryDeadRequeueWithTheCurrentBadge) {
  CtlRegion r("ctl-outbox");
  const auto customer = r.customer_with_cert("dev-shop4");
  const auto reg1 = r.register_device(customer, "alice@example.com", kToken1);
  const auto reg2 = r.register_device(customer, "bob@example.com", kToken2);
  auto& c = r.conn();
  ASSERT_TRUE(c.execute("UPDATE registrations SET unread_count = 7 WHERE customer_id = ?",
                        {store::Value{customer}})
                  .ok());
  // Three dead letters: two TooManyAttempts (one of them for a device APNs since refused), one
  // Expired; and one pending badge that failed once.
  const std::string insert =
      "INSERT INTO outbox (owner, customer_id, device_id, mailbox_id, badge, state, attempts, "
      "next_attempt_at, expires_at, last_error, created_at) SELECT 'gone-instance', "
      "r.customer_id, r.device_id, r.mailbox_id, 2, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) - "
      "INTERVAL 1 HOUR, ?, UTC_TIMESTAMP(6) - INTERVAL 2 HOUR FROM registrations r WHERE r.id = ?";
  auto add = [&](std::int64_t reg, const std::string& state, int attempts,
                 const std::string& error) {
    ASSERT_TRUE(
        c.execute(insert, {store::Value{state}, store::Value{std::int64_t{attempts}},
                           error.empty() ? store::Value{store::Null{}} : store::Value{error},
                           store::Value{reg}})
            .ok());
  };
  add(reg1, "dead", 12, "TooManyAttempts");
  add(reg2, "dead", 12, "TooManyAttempts");
  add(reg1, "dead", 3, "Expired");
  ASSERT_TRUE(c.execute("UPDATE registrations SET badge_version = badge_version + 1, badge_owner "
                        "= 'gone-instance', badge_due_at = UTC_TIMESTAMP(6), badge_queued_at = "
                        "UTC_TIMESTAMP(6) - INTERVAL 2 HOUR, badge_attempts = 1, badge_error = "
                        "'ServiceUnavailable' WHERE id = ?",
                        {store::Value{reg2}})
                  .ok());
  ASSERT_TRUE(c.execute("UPDATE devices SET state = 'invalid', invalid_reason = "
                        "'BadDeviceToken' WHERE token_hex = ?",
                        {store::Value{kToken2}})
                  .ok());
  std::string out;

  ASSERT_EQ(ctl(r.region(), {"--json", "outbox", "stats"}, &out), 0) << out;
  auto stats = parse(out);
  EXPECT_EQ(stats["queued"], 1);
  EXPECT_EQ(stats["retrying"], 1);
  EXPECT_EQ(stats["dead"], 3);
  EXPECT_GE(stats["oldest_queued_seconds"].get<int>(), 7000);
  ASSERT_EQ(stats["dead_reasons"].size(), 2u);
  EXPECT_EQ(stats["dead_reasons"][0]["reason"], "TooManyAttempts");
  EXPECT_EQ(stats["dead_reasons"][0]["dead"], 2);
  ASSERT_EQ(stats["owners"].size(), 1u);
  EXPECT_EQ(stats["owners"][0]["instance"], "gone-instance");
  EXPECT_EQ(stats["owners"][0]["alive"], false);
  ASSERT_EQ(ctl(r.region(), {"outbox", "stats"}, &out), 0) << out;
  EXPECT_NE(out.find("NOT ALIVE"), std::string::npos) << out;
  EXPECT_NE(out.find("retry-dead"), std::string::npos) << out;

  EXPECT_EQ(ctl(r.region(), {"outbox", "retry-dead"}, &out), 2) << out;
  EXPECT_EQ(scalar(c, "SELECT COUNT(*) FROM outbox WHERE state = 'dead'"), 3);

  ASSERT_EQ(ctl(r.region(),
                {"--json", "outbox", "retry-dead", "--reason", "TooManyAttempts", "--yes"}, &out),
            0)
      << out;
  auto retried = parse(out);
  EXPECT_EQ(retried["requeued"], 1);   // alice's device
  EXPECT_EQ(retried["left_dead"], 1);  // bob's device was refused since
  // Alice's device has a pending badge again, due now, owned as the letter was; what the
  // dispatcher reads for it is the badge as it is now, not the dead letter's 2.
  auto due = store::read_due_outbox(c, "gone-instance", 10, {});
  ASSERT_TRUE(due.ok()) << due.error().message;
  std::vector<store::OutboxRow> alice;
  for (const auto& row : *due) {
    if (row.id == reg1) alice.push_back(row);
  }
  ASSERT_EQ(alice.size(), 1u);
  EXPECT_EQ(alice[0].badge, 7);
  EXPECT_EQ(alice[0].attempts, 0);
  EXPECT_LT(alice[0].age_us, 60'000'000);
  EXPECT_EQ(scalar(c, "SELECT COUNT(*) FROM outbox WHERE state = 'dead'"), 2);
  EXPECT_EQ(scalar(c,
                   "SELECT COUNT(*) FROM audit_log WHERE action = 'outbox.retry_dead' AND "
                   "detail LIKE '%\"requeued\":1%'"),
            1);
  // Narrowed to another customer: nothing.
  EXPECT_EQ(ctl(r.region(), {"outbox", "retry-dead", "--customer", "dev-nosuch", "--yes"}, &out), 6)
      << out;
}

TEST(MailpushctlOps, SubscriptionsGraphListsGraphSubscriptionsByExpiry) {
  CtlRegion r("ctl-graph");
  const auto customer = r.customer_with_cert("dev-shop9");
  const auto soon = r.register_device(customer, "alice@online.example.com", kToken1);
  const auto later = r.register_device(customer, "bob@online.example.com", kToken2);
  r.register_device(customer, "carol@onprem.example.com", kToken1);  // EWS: not listed
  auto& c = r.conn();
  ASSERT_TRUE(c.execute("UPDATE registrations SET source = 'graph', graph_expires_at = "
                        "UTC_TIMESTAMP(6) + INTERVAL 3 HOUR, wake_reason = 'renew' WHERE id = ?",
                        {store::Value{soon}})
                  .ok());
  ASSERT_TRUE(c.execute("UPDATE registrations SET source = 'graph', graph_expires_at = "
                        "UTC_TIMESTAMP(6) + INTERVAL 5 DAY WHERE id = ?",
                        {store::Value{later}})
                  .ok());
  std::string out;
  ASSERT_EQ(ctl(r.region(), {"--json", "subscriptions", "--graph"}, &out), 0) << out;
  const auto j = parse(out);
  EXPECT_EQ(j["graph_active"], 2);
  EXPECT_EQ(j["graph_expiring_1d"], 1);
  EXPECT_EQ(j["graph_expired"], 0);
  ASSERT_EQ(j["graph"].size(), 2u);
  EXPECT_EQ(j["graph"][0]["registration_id"], soon) << "the soonest to expire first";
  EXPECT_EQ(j["graph"][0]["wake_pending"], "renew");
  EXPECT_EQ(j["graph"][0]["last_notified_at"], nullptr);
  EXPECT_EQ(out.find(kToken1), std::string::npos) << "tokens are shortened";
  ASSERT_EQ(ctl(r.region(), {"subscriptions", "--graph"}, &out), 0) << out;
  EXPECT_NE(out.find("2 active Graph subscriptions"), std::string::npos) << out;
  EXPECT_NE(out.find("pending: renew"), std::string::npos) << out;
}

TEST(MailpushctlOps, StatusShowsQueueAgeExpiringCertificatesAndSilentSubscriptions) {
  CtlRegion r("ctl-status");
  const auto customer = r.customer_with_cert("dev-shop5");
  r.register_device(customer, "alice@example.com", kToken1);
  auto& c = r.conn();
  ASSERT_TRUE(
      c.execute("UPDATE registrations SET created_at = UTC_TIMESTAMP(6) - INTERVAL 2 DAY").ok());
  ASSERT_TRUE(
      c.execute("UPDATE credentials SET not_after = UTC_TIMESTAMP() + INTERVAL 10 DAY").ok());
  std::string out;
  ASSERT_EQ(ctl(r.region(), {"--json", "status"}, &out), 0) << out;
  auto status = parse(out);
  EXPECT_EQ(status["counts"]["subscriptions_silent"], 1);
  EXPECT_EQ(status["counts"]["credentials_expiring_30d"], 1);
  EXPECT_EQ(status["counts"]["credentials_expired"], 0);
  EXPECT_EQ(status["counts"]["outbox_oldest_queued_seconds"], 0);
  ASSERT_EQ(ctl(r.region(), {"status"}, &out), 0) << out;
  EXPECT_NE(out.find("1 ending within 30 days"), std::string::npos) << out;
  EXPECT_NE(out.find("subscriptions --silent"), std::string::npos) << out;

  // certs expiring: exit 7 while any is listed, 0 when the window holds none.
  EXPECT_EQ(ctl(r.region(), {"certs", "expiring"}, &out), 7) << out;
  EXPECT_NE(out.find("dev-shop5"), std::string::npos) << out;
  EXPECT_EQ(ctl(r.region(), {"certs", "expiring", "--within", "7d"}, &out), 0) << out;
  EXPECT_EQ(ctl(r.region(), {"certs", "expiring", "--within", "soon"}, &out), 2) << out;
}

TEST(MailpushctlOps, CertsTestConnectsWithTheCustomersCertificate) {
  ApnsSimProcess sim;
  CtlRegion r("ctl-certs-test", &sim);
  r.customer_with_cert("dev-shop6", "mail");
  r.customer_with_cert("dev-shop7", "mail-prod");  // the simulator is development APNs
  std::string out;
  ASSERT_EQ(ctl(r.region(), {"certs", "test", "dev-shop6"}, &out), 0) << out;
  EXPECT_NE(out.find("accepted the certificate and topic"), std::string::npos) << out;
  EXPECT_EQ(ctl(r.region(), {"--json", "certs", "test", "dev-shop7"}, &out), 7) << out;
  const auto report = parse(out);
  ASSERT_EQ(report["checks"].size(), 1u) << out;
  EXPECT_EQ(report["checks"][0]["check"], "apns.environment");
  EXPECT_NE(report["checks"][0]["finding"].get<std::string>().find("BadCertificateEnvironment"),
            std::string::npos);
  EXPECT_EQ(ctl(r.region(), {"certs", "test", "dev-shop6", "--environment", "staging"}, &out), 2)
      << out;
  EXPECT_EQ(ctl(r.region(), {"certs", "test", "dev-nosuch"}, &out), 6) << out;
}

// Which checks of a doctor --json report have this verdict.
std::vector<std::string> checks_with(const json& report, const std::string& verdict) {
  std::vector<std::string> ids;
  for (const auto& c : report["checks"])
    if (c["verdict"] == verdict) ids.push_back(c["check"].get<std::string>());
  return ids;
}

const json* find_check(const json& report, const std::string& id, const std::string& verdict) {
  for (const auto& c : report["checks"])
    if (c["check"] == id && c["verdict"] == verdict) return &c;
  return nullptr;
}

TEST(MailpushctlOps, DoctorPassesAHealthyRegionWithItsListenerRunning) {
  ApnsSimProcess sim;
  CtlRegion r("ctl-doctor-ok", &sim);
  const auto customer = r.customer_with_cert("dev-shop8");
  r.register_device(customer, "alice@example.com", kToken1);
  ChildProcess daemon(binary_dir() / "src/app/mailpushd", {"--region", r.region().string()},
                      r.dir() / "mailpushd.log");
  const auto port = listening_port(daemon, std::chrono::seconds(30));
  ASSERT_NE(port, 0) << daemon.log();
  std::string out;
  const int rc = ctl(r.region(),
                     {"--json", "doctor", "--listener-port", std::to_string(port), "--listener-ca",
                      dev_tls().ca_cert.string()},
                     &out);
  const auto report = parse(out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_TRUE(checks_with(report, "fail").empty()) << out;
  for (const char* id :
       {"config", "apns.dns", "apns.tcp", "listener", "database", "apns.tls", "devices.tokens",
        "devices.environment", "credentials.expiry", "subscriptions.silent", "outbox.age",
        "instances", "database.connections", "dispatch.progress", "listener.certificate",
        "listener.certificate_file"}) {
    EXPECT_NE(find_check(report, id, "ok"), nullptr) << id << " not ok: " << out;
  }
  // Without the listener's CA it is reachable but untrusted: a warning, as Exchange would refuse.
  ASSERT_EQ(ctl(r.region(), {"--json", "doctor", "--listener-port", std::to_string(port)}, &out), 0)
      << out;
  EXPECT_NE(find_check(parse(out), "listener", "warn"), nullptr) << out;
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(std::chrono::seconds(30)), 0);
}

// The listener's own certificate: days left as served and in its files, and a renewal on disk
// that the running listener has not loaded.
TEST(MailpushctlOps, DoctorJudgesTheListenerCertificateServedAndOnDisk) {
  const fs::path tls_dir = make_temp_dir("ctl-doctor-listener-tls");
  const fs::path cert = tls_dir / "listener.crt", key = tls_dir / "listener.key";
  const auto install = [&](const TestCertificate& pair) {
    write_file(cert, pair.cert_pem);
    write_file(key, pair.key_pem);
  };
  install(make_test_certificate({.serial = 0x10, .not_after = std::chrono::hours(24 * 20)}));
  CtlRegion r(
      "ctl-doctor-listener", nullptr,
      {{"listener",
        {{"tls_cert", cert.string()}, {"tls_key", key.string()}, {"tls_poll_interval_ms", 0}}}});
  ChildProcess daemon(binary_dir() / "src/app/mailpushd", {"--region", r.region().string()},
                      r.dir() / "mailpushd.log");
  const auto port = listening_port(daemon, std::chrono::seconds(30));
  ASSERT_NE(port, 0) << daemon.log();
  // The listener must answer: the bound only ends a hang (3 s was too short under ASan with two
  // suites running at once).
  const std::vector<std::string> doctor{
      "--json", "doctor", "--listener-port", std::to_string(port), "--timeout-ms", "15000"};
  std::string out;
  ctl(r.region(), doctor, &out);
  auto report = parse(out);
  // 20 days left: both warn, with the serial and what to do.
  const json* served = find_check(report, "listener.certificate", "warn");
  ASSERT_NE(served, nullptr) << out;
  EXPECT_NE(served->dump().find("serial 10"), std::string::npos) << out;
  EXPECT_NE(served->dump().find("SIGHUP"), std::string::npos) << out;
  EXPECT_NE(find_check(report, "listener.certificate_file", "warn"), nullptr) << out;

  // A renewal written but not loaded (no poll, no SIGHUP): the file is fine, the served one is
  // not the file's.
  install(make_test_certificate({.serial = 0x11, .not_after = std::chrono::hours(24 * 200)}));
  ctl(r.region(), doctor, &out);
  report = parse(out);
  EXPECT_NE(find_check(report, "listener.certificate_file", "ok"), nullptr) << out;
  served = find_check(report, "listener.certificate", "warn");
  ASSERT_NE(served, nullptr) << out;
  EXPECT_NE(served->dump().find("the file holds serial 11"), std::string::npos) << out;
  EXPECT_NE(served->dump().find("listener.certificate_refused"), std::string::npos) << out;

  daemon.signal(SIGHUP);
  ASSERT_TRUE(daemon.wait_for_log(R"("serial":"11")", std::chrono::seconds(10)).has_value())
      << daemon.log();
  ctl(r.region(), doctor, &out);
  EXPECT_NE(find_check(parse(out), "listener.certificate", "ok"), nullptr) << out;

  // A key that is not the certificate's: the file check fails and says why.
  write_file(key, make_test_certificate({.serial = 0x12}).key_pem);
  EXPECT_EQ(ctl(r.region(), doctor, &out), 7) << out;
  report = parse(out);
  const json* file = find_check(report, "listener.certificate_file", "fail");
  ASSERT_NE(file, nullptr) << out;
  EXPECT_NE(file->dump().find("does not belong"), std::string::npos) << out;
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(std::chrono::seconds(30)), 0);
  std::error_code ec;
  fs::remove_all(tls_dir, ec);
}

TEST(MailpushctlOps, DoctorFindsEachSeededFaultAndSaysWhatToDo) {
  ApnsSimProcess sim;
  CtlRegion r("ctl-doctor-faults", &sim);
  // Fault 1: a base64 token in the database.
  const auto shop = r.customer_with_cert("dev-shop9");
  r.register_device(shop, "alice@example.com", kToken1);
  auto& c = r.conn();
  const std::string b64 = base64_encode(*hex_decode(kToken1));
  ASSERT_TRUE(c.execute("UPDATE devices SET token_hex = ? WHERE token_hex = ?",
                        {store::Value{b64}, store::Value{kToken1}})
                  .ok());
  // Fault 2: an expired credential.
  const auto expired = r.customer_with_cert("dev-old");
  r.register_device(expired, "bob@example.com", kToken2);
  ASSERT_TRUE(c.execute("UPDATE credentials SET not_after = UTC_TIMESTAMP() - INTERVAL 3 DAY "
                        "WHERE customer_id = ?",
                        {store::Value{expired}})
                  .ok());
  // Fault 3: wrong environment, twice: production devices of a development-only certificate,
  // and a production-only certificate that the (development) APNs refuses.
  const auto dev_only = r.customer_with_cert("dev-devonly", "mail-dev");
  r.register_device(dev_only, "carol@example.com", std::string(64, 'c'), "production");
  r.customer_with_cert("dev-prodonly", "mail-prod");
  // Fault 4: the production APNs port is blocked (nothing listens there).
  const auto blocked = free_tcp_port();
  r.patch_region({{"apns", {{"production", {{"port", blocked}}}}}});

  std::string out;
  ASSERT_EQ(ctl(r.region(), {"--json", "doctor", "--skip-listener", "--timeout-ms", "3000"}, &out),
            7)
      << out;
  const auto report = parse(out);
  EXPECT_EQ(report["ok"], false);

  const json* tcp = find_check(report, "apns.tcp", "fail");
  ASSERT_NE(tcp, nullptr) << out;
  EXPECT_NE((*tcp)["subject"].get<std::string>().find(std::to_string(blocked)), std::string::npos);
  EXPECT_NE((*tcp)["action"].get<std::string>().find("open outbound TCP"), std::string::npos);
  EXPECT_NE((*tcp)["action"].get<std::string>().find("2197"), std::string::npos);
  EXPECT_NE(find_check(report, "apns.tcp", "ok"), nullptr) << "the sandbox port is open: " << out;

  const json* tokens = find_check(report, "devices.tokens", "fail");
  ASSERT_NE(tokens, nullptr) << out;
  EXPECT_EQ((*tokens)["subject"], "dev-shop9");
  EXPECT_NE((*tokens)["finding"].get<std::string>().find("base64"), std::string::npos) << out;
  EXPECT_NE((*tokens)["action"].get<std::string>().find("hex"), std::string::npos);
  EXPECT_EQ(out.find(b64), std::string::npos) << "the stored token was printed: " << out;

  const json* expiry = find_check(report, "credentials.expiry", "fail");
  ASSERT_NE(expiry, nullptr) << out;
  EXPECT_NE((*expiry)["subject"].get<std::string>().find("dev-old"), std::string::npos);
  EXPECT_NE((*expiry)["action"].get<std::string>().find("renews"), std::string::npos);

  const json* env = find_check(report, "devices.environment", "fail");
  ASSERT_NE(env, nullptr) << out;
  EXPECT_EQ((*env)["subject"], "dev-devonly");
  EXPECT_NE((*env)["finding"].get<std::string>().find("registered for production"),
            std::string::npos);

  // The production-only certificate goes to the blocked production port; point production at
  // the (development) simulator again and the refusal is the environment's.
  r.patch_region({{"apns", {{"production", {{"port", sim.h2_port()}}}}}});
  ASSERT_EQ(
      ctl(r.region(), {"--json", "doctor", "--skip-listener", "--customer", "dev-prodonly"}, &out),
      7)
      << out;
  const auto second = parse(out);
  const json* refused = find_check(second, "apns.environment", "fail");
  ASSERT_NE(refused, nullptr) << out;
  EXPECT_NE((*refused)["finding"].get<std::string>().find("BadCertificateEnvironment"),
            std::string::npos);
  EXPECT_EQ(find_check(second, "apns.tcp", "fail"), nullptr) << out;
  // --customer narrows the customer checks: the other customers' faults are not reported.
  EXPECT_EQ(find_check(second, "devices.tokens", "fail"), nullptr) << out;
  EXPECT_EQ(find_check(second, "devices.environment", "fail"), nullptr) << out;
  EXPECT_EQ(find_check(second, "credentials.expiry", "fail"), nullptr) << out;
  EXPECT_NE(find_check(second, "devices.tokens", "ok"), nullptr) << out;

  // Text output: a verdict per line and the action under it.
  ASSERT_EQ(ctl(r.region(), {"doctor", "--skip-listener"}, &out), 7) << out;
  EXPECT_NE(out.find("[FAIL]"), std::string::npos) << out;
  EXPECT_NE(out.find("-> "), std::string::npos) << out;

  // A closed listener port is a failure with what Exchange needs.
  ASSERT_EQ(ctl(r.region(),
                {"--json", "doctor", "--listener-port", std::to_string(free_tcp_port()),
                 "--customer", "dev-shop9"},
                &out),
            7)
      << out;
  const auto third = parse(out);
  const json* listener = find_check(third, "listener", "fail");
  ASSERT_NE(listener, nullptr) << out;
  EXPECT_NE((*listener)["action"].get<std::string>().find("Exchange"), std::string::npos);
}

// A client that leaks prepared statements brings the server near max_prepared_stmt_count: every
// client's writes are about to fail with error 1461. A private server with a limit of 40.
TEST(MailpushctlOps, DoctorFailsWhenPreparedStatementsNearTheServersLimit) {
  PrivateMariadb server(40);
  server.start();
  CtlRegion r("ctl-doctor-stmts", nullptr,
              {{"database",
                {{"host", "127.0.0.1"},
                 {"port", server.port()},
                 {"name", PrivateMariadb::kDatabase},
                 {"password_file", server.password_file().string()}}}});
  store::Connection leaky(server.options());
  ASSERT_TRUE(leaky.connect().ok());
  for (int n = 0; n < 34; ++n) {
    ASSERT_TRUE(
        leaky.query("SELECT ? + " + std::to_string(n), {store::Value{std::int64_t{1}}}).ok());
  }
  std::string out;
  EXPECT_EQ(ctl(r.region(), {"--json", "doctor", "--skip-listener", "--timeout-ms", "1000"}, &out),
            7)
      << out;
  const auto report = parse(out);
  const auto* check = find_check(report, "database.statements", "fail");
  ASSERT_NE(check, nullptr) << out;
  EXPECT_NE((*check)["finding"].get<std::string>().find(" of 40 prepared statements"),
            std::string::npos)
      << out;
  EXPECT_NE((*check)["action"].get<std::string>().find("mailpush_db_prepared_statements"),
            std::string::npos)
      << out;
  EXPECT_NE(find_check(report, "database.connections", "ok"), nullptr) << out;

  leaky.close();
  ctl(r.region(), {"--json", "doctor", "--skip-listener", "--timeout-ms", "1000"}, &out);
  EXPECT_NE(find_check(parse(out), "database.statements", "ok"), nullptr) << out;
}

// Badges wait for an instance that is alive (fresh heartbeat) but does not send,
// while APNs accepts the test push: the dispatcher is stuck, and doctor says so.
TEST(MailpushctlOps, DoctorFindsQueuedBadgesAgingWhileApnsAnswers) {
  ApnsSimProcess sim;
  CtlRegion r("ctl-doctor-stuck", &sim);
  const auto customer = r.customer_with_cert("dev-shop10");
  const auto reg = r.register_device(customer, "alice@example.com", kToken1);
  auto& c = r.conn();
  ASSERT_TRUE(c.execute("INSERT INTO instances (instance_id, host_name, version, started_at, "
                        "heartbeat_at) VALUES ('stuck-1', 'h', 't', UTC_TIMESTAMP(6), "
                        "UTC_TIMESTAMP(6))")
                  .ok());
  ASSERT_TRUE(c.execute("UPDATE registrations SET unread_count = 3, badge_version = badge_version "
                        "+ 1, badge_owner = 'stuck-1', badge_due_at = UTC_TIMESTAMP(6), "
                        "badge_queued_at = UTC_TIMESTAMP(6) - INTERVAL 2 MINUTE WHERE id = ?",
                        {store::Value{reg}})
                  .ok());
  std::string out;
  EXPECT_EQ(ctl(r.region(), {"--json", "doctor", "--skip-listener"}, &out), 7) << out;
  const auto report = parse(out);
  EXPECT_NE(find_check(report, "apns.tls", "ok"), nullptr) << out;
  const auto* check = find_check(report, "dispatch.progress", "fail");
  ASSERT_NE(check, nullptr) << out;
  EXPECT_NE((*check)["action"].get<std::string>().find("dispatcher is not sending"),
            std::string::npos)
      << out;

  // Once the badge is sent (its mark cleared), the queue is not stuck.
  ASSERT_TRUE(c.execute("UPDATE registrations SET badge_owner = NULL, badge_due_at = NULL, "
                        "badge_queued_at = NULL")
                  .ok());
  ctl(r.region(), {"--json", "doctor", "--skip-listener"}, &out);
  EXPECT_NE(find_check(parse(out), "dispatch.progress", "ok"), nullptr) << out;
}

TEST(MailpushctlOps, DoctorForOneCustomerCountsItsSilentSubscriptionsOnly) {
  ApnsSimProcess sim;
  CtlRegion r("ctl-doctor-silent", &sim);
  const auto quiet = r.customer_with_cert("dev-quiet");
  const auto busy = r.customer_with_cert("dev-busy");
  for (int i = 0; i < 6; ++i) {
    std::string token(62, 'c');  // appended to, not `+`: GCC 12 misreads that as out of bounds
    token += '0';
    token += std::to_string(i);
    r.register_device(quiet, "q" + std::to_string(i) + "@example.com", token);
  }
  r.register_device(busy, "b@example.com", std::string(64, 'd'));
  ASSERT_TRUE(r.conn()
                  .execute("UPDATE registrations SET created_at = UTC_TIMESTAMP(6) - INTERVAL 3 "
                           "HOUR WHERE customer_id = ?",
                           {store::Value{quiet}})
                  .ok());
  std::string out;
  EXPECT_EQ(ctl(r.region(), {"--json", "doctor", "--skip-listener"}, &out), 7) << out;
  const auto region = parse(out);
  const json* silent = find_check(region, "subscriptions.silent", "fail");
  ASSERT_NE(silent, nullptr) << out;
  EXPECT_NE((*silent)["finding"].get<std::string>().find("6 of 7"), std::string::npos) << out;
  ASSERT_EQ(
      ctl(r.region(), {"--json", "doctor", "--skip-listener", "--customer", "dev-busy"}, &out), 0)
      << out;
  EXPECT_NE(find_check(parse(out), "subscriptions.silent", "ok"), nullptr) << out;
  EXPECT_EQ(ctl(r.region(), {"doctor", "--skip-listener", "--customer", "dev-nosuch"}, &out), 6)
      << out;
}

// A listener that accepts TCP but never answers (a hung process, a black-holing middlebox): the
// check gives up after --timeout-ms and says so, and the run still finishes.
TEST(MailpushctlOps, DoctorBoundsAListenerThatNeverAnswers) {
  ApnsSimProcess sim;
  CtlRegion r("ctl-doctor-hung", &sim);
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const auto hung = ntohs(addr.sin_port);
  std::string out;
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(
      ctl(r.region(),
          {"--json", "doctor", "--listener-port", std::to_string(hung), "--timeout-ms", "700"},
          &out),
      7)
      << out;
  const auto took = std::chrono::steady_clock::now() - started;
  ::close(fd);
  const auto report = parse(out);
  const json* listener = find_check(report, "listener", "fail");
  ASSERT_NE(listener, nullptr) << out;
  EXPECT_NE((*listener)["finding"].get<std::string>().find("no answer within 700 ms"),
            std::string::npos)
      << out;
  EXPECT_LT(took, std::chrono::seconds(20));
}

TEST(MailpushctlOps, DoctorReportsAnUnreachableDatabaseWithoutStopping) {
  ApnsSimProcess sim;
  CtlRegion r("ctl-doctor-db", &sim);
  r.patch_region({{"database", {{"port", free_tcp_port()}}}});
  std::string out;
  ASSERT_EQ(ctl(r.region(), {"--json", "doctor", "--skip-listener"}, &out), 7) << out;
  const auto report = parse(out);
  EXPECT_NE(find_check(report, "database", "fail"), nullptr) << out;
  EXPECT_NE(find_check(report, "apns.tcp", "ok"), nullptr) << out;
  EXPECT_NE(find_check(report, "apns.tls", "skipped"), nullptr) << out;
}

}  // namespace
}  // namespace mp::test
