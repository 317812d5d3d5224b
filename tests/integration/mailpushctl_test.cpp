// mailpushctl as a real process: migrate and status against real databases, with exit codes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/crypto.hpp"
#include "keys/envelope.hpp"
#include "keys/key_ring.hpp"
#include "store/customers.hpp"
#include "store/mariadb.hpp"
#include "store/migrations.hpp"
#include "test_env.hpp"

namespace mp::test {
namespace {

std::filesystem::path ctl_binary() {
  return binary_dir() / "src/app/mailpushctl";
}

std::filesystem::path region_for(const ScratchDatabase& db, const std::filesystem::path& dir,
                                 const nlohmann::json& extra = nlohmann::json::object()) {
  nlohmann::json patch = {{"database",
                           {{"host", db.options().host},
                            {"port", db.options().port},
                            {"socket", nullptr},
                            {"name", db.name()},
                            {"password_file", std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")}}}};
  patch.update(extra);
  return write_region_file(dir, patch.dump());
}

int ctl(const std::filesystem::path& region, std::vector<std::string> args, std::string* out) {
  std::vector<std::string> argv{ctl_binary().string(), "--region", region.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, out);
}

TEST(Mailpushctl, MigrateThenStatus) {
  ScratchDatabase db;
  const auto region = region_for(db, make_temp_dir("ctl"));
  std::string out;
  EXPECT_EQ(ctl(region, {"status"}, &out), 5) << out;  // migrations pending
  EXPECT_NE(out.find("needs migration"), std::string::npos) << out;

  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  EXPECT_NE(out.find("migrated"), std::string::npos) << out;
  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  EXPECT_NE(out.find("up to date"), std::string::npos) << out;

  ASSERT_EQ(ctl(region, {"--json", "status"}, &out), 0) << out;
  const auto status = nlohmann::json::parse(out);
  EXPECT_EQ(status["ready"], true);
  EXPECT_EQ(status["schema"]["current_version"], store::latest_schema_version());
  EXPECT_EQ(status["counts"]["outbox_queued"], 0);
  EXPECT_EQ(status["database"]["reachable"], true);
  EXPECT_TRUE(status["instances"].is_array());
}

TEST(Mailpushctl, RefusesASchemaNewerThanTheBinary) {
  ScratchDatabase db;
  const auto region = region_for(db, make_temp_dir("ctl-newer"));
  std::string out;
  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  store::Connection conn(db.options());
  ASSERT_TRUE(conn.connect().ok());
  ASSERT_TRUE(conn.execute("INSERT INTO schema_migrations (version, name, checksum) "
                           "VALUES (999, 'future', REPEAT('0', 64))")
                  .ok());
  EXPECT_EQ(ctl(region, {"migrate"}, &out), 4);
  EXPECT_NE(out.find("newer"), std::string::npos) << out;
  EXPECT_EQ(ctl(region, {"status"}, &out), 4);
}

TEST(Mailpushctl, InviteCodesAreShownOnceAndStoredHashed) {
  ScratchDatabase db;
  const auto region = region_for(db, make_temp_dir("ctl-invite"));
  std::string out;
  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  ASSERT_EQ(ctl(region, {"--json", "customers", "invite", "--valid-for", "2d", "--note", "Example"},
                &out),
            0)
      << out;
  const auto invite = nlohmann::json::parse(out);
  const std::string code = invite["code"];
  EXPECT_EQ(code.rfind("inv_", 0), 0u);
  EXPECT_EQ(invite["valid_for_seconds"], 2 * 86400);

  store::Connection conn(db.options());
  ASSERT_TRUE(conn.connect().ok());
  const Bytes hash = sha384(code);
  auto rows = conn.query(
      "SELECT note, TIMESTAMPDIFF(HOUR, UTC_TIMESTAMP(), expires_at) FROM portal_invites "
      "WHERE code_hash = ?",
      {store::Value{store::Blob{std::string(hash.begin(), hash.end())}}});
  ASSERT_TRUE(rows.ok() && rows->size() == 1u);
  EXPECT_EQ((*rows)[0].text(0), "Example");
  EXPECT_GE((*rows)[0].i64(1), 47);
  EXPECT_LE((*rows)[0].i64(1), 48);
  auto clear = conn.query("SELECT COUNT(*) FROM portal_invites WHERE code_hash = ?",
                          {store::Value{store::Blob{code}}});
  ASSERT_TRUE(clear.ok());
  EXPECT_EQ((*clear)[0].i64(0), 0) << "the code itself is not stored";
  auto audit = store::tail_audit(conn, 1);
  ASSERT_TRUE(audit.ok() && !audit->empty());
  EXPECT_EQ(audit->front().action, "invite.create");
  EXPECT_EQ(audit->front().actor.rfind("mailpushctl:", 0), 0u);
  EXPECT_EQ(audit->front().detail.find(code), std::string::npos);

  // Text output shows the code once; out-of-range lifetimes are usage errors.
  ASSERT_EQ(ctl(region, {"customers", "invite"}, &out), 0) << out;
  EXPECT_NE(out.find("inv_"), std::string::npos);
  EXPECT_EQ(ctl(region, {"customers", "invite", "--valid-for", "90d"}, &out), 2);
  EXPECT_EQ(ctl(region, {"customers", "invite", "--valid-for", "soon"}, &out), 2);
}

TEST(Mailpushctl, CertsListShowsWhatExpiresFirst) {
  ScratchDatabase db;
  const auto region = region_for(db, make_temp_dir("ctl-certs"));
  std::string out;
  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;
  store::Connection conn(db.options());
  ASSERT_TRUE(conn.connect().ok());
  auto add = [&](const std::string& id, const std::string& not_after_sql) {
    store::NewCustomer c;
    c.customer_id = id;
    c.app_id = "com.example.mail";
    c.registration_key_hash = random_bytes(48);
    c.admin_key_hash = random_bytes(48);
    store::NewCredential k;
    k.topic = "com.example.mail";
    k.production = true;
    k.fingerprint_sha256 = random_bytes(32);
    k.not_before = "2025-01-01 00:00:00";
    auto when = conn.query("SELECT DATE_FORMAT(" + not_after_sql + ", '%Y-%m-%d %H:%i:%s')");
    ASSERT_TRUE(when.ok());
    k.not_after = (*when)[0].text(0);
    k.kek_id = "k";
    k.wrapped_data_key = "w";
    k.sealed_material = "s";
    ASSERT_TRUE(store::create_customer(conn, c, k, {"test", ""}).ok());
  };
  add("dev-later", "UTC_TIMESTAMP() + INTERVAL 200 DAY");
  add("dev-soon", "UTC_TIMESTAMP() + INTERVAL 10 DAY + INTERVAL 1 HOUR");
  // An hour inside the day: the listing runs a second or two later, and expired days round up.
  add("dev-gone", "UTC_TIMESTAMP() - INTERVAL 3 DAY + INTERVAL 1 HOUR");

  ASSERT_EQ(ctl(region, {"--json", "certs", "list"}, &out), 0) << out;
  auto all = nlohmann::json::parse(out)["credentials"];
  ASSERT_EQ(all.size(), 3u) << out;
  EXPECT_EQ(all[0]["customer_id"], "dev-gone");
  EXPECT_EQ(all[0]["days_left"], -3);
  EXPECT_EQ(all[1]["customer_id"], "dev-soon");
  EXPECT_EQ(all[1]["days_left"], 10);
  EXPECT_EQ(all[2]["customer_id"], "dev-later");

  ASSERT_EQ(ctl(region, {"--json", "certs", "list", "--expiring-within", "30d"}, &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["credentials"].size(), 2u) << out;
  ASSERT_EQ(ctl(region, {"certs", "list", "--expiring-within", "30d"}, &out), 0) << out;
  EXPECT_NE(out.find("EXPIRED 3 days ago"), std::string::npos) << out;
  EXPECT_NE(out.find("10 days left  (renew now)"), std::string::npos) << out;
  EXPECT_EQ(ctl(region, {"certs", "list", "--expiring-within", "a while"}, &out), 2);

  ASSERT_EQ(ctl(region, {"--json", "customers", "list"}, &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["customers"].size(), 3u);
}

TEST(Mailpushctl, KekRotateRewrapsEveryCredentialUnderTheNewKey) {
  ScratchDatabase db;
  const auto dir = make_temp_dir("ctl-kek");
  const auto kek = dir / "kek";
  const std::string make_kek = (source_dir() / "scripts/make-kek.sh").string();
  ASSERT_EQ(run_command({make_kek, kek.string(), "kek-old"}), 0);
  const auto region = region_for(db, dir, {{"portal", {{"kek_file", kek.string()}}}});
  std::string out;
  ASSERT_EQ(ctl(region, {"migrate"}, &out), 0) << out;

  store::Connection conn(db.options());
  ASSERT_TRUE(conn.connect().ok());
  auto old_ring = keys::KeyRing::load_file(kek);
  ASSERT_TRUE(old_ring.ok()) << old_ring.error().message;
  const std::string material = "certificate and key, sealed";
  for (const std::string id : {"dev-a", "dev-b"}) {
    auto sealed = keys::seal(*old_ring, material, "credential:" + id);
    ASSERT_TRUE(sealed.ok());
    store::NewCustomer c;
    c.customer_id = id;
    c.registration_key_hash = random_bytes(48);
    c.admin_key_hash = random_bytes(48);
    store::NewCredential k;
    k.topic = "com.example.mail";
    k.production = true;
    k.fingerprint_sha256 = random_bytes(32);
    k.not_before = "2026-01-01 00:00:00";
    k.not_after = "2027-01-01 00:00:00";
    k.kek_id = sealed->kek_id;
    k.wrapped_data_key = sealed->wrapped_data_key;
    k.sealed_material = sealed->sealed_material;
    ASSERT_TRUE(store::create_customer(conn, c, k, {"test", ""}).ok());
  }
  ASSERT_EQ(run_command({make_kek, "--add", kek.string(), "kek-new"}), 0);
  ASSERT_EQ(ctl(region, {"--json", "kek", "status"}, &out), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["credentials_by_kek"]["kek-old"], 2) << out;
  EXPECT_EQ(nlohmann::json::parse(out)["active_kek"], "kek-new");

  ASSERT_EQ(ctl(region, {"--json", "kek", "rotate"}, &out), 0) << out;
  const auto rotated = nlohmann::json::parse(out);
  EXPECT_EQ(rotated["rewrapped"], 2);
  EXPECT_EQ(rotated["credentials_by_kek"]["kek-new"], 2);
  EXPECT_FALSE(rotated["credentials_by_kek"].contains("kek-old"));
  ASSERT_EQ(ctl(region, {"kek", "rotate"}, &out), 0) << out;
  EXPECT_NE(out.find("0 re-wrapped"), std::string::npos) << out;
  EXPECT_NE(out.find("can now be removed"), std::string::npos) << out;

  // Only the new key is needed now; the old one alone opens nothing.
  std::string only_new, only_old;
  for (std::size_t start = 0; start < read_file(kek).size();) {
    const std::string text = read_file(kek);
    const auto end = std::min(text.find('\n', start), text.size());
    const std::string line = text.substr(start, end - start);
    if (line.find("kek-new") != std::string::npos) only_new = line + "\n";
    if (line.find("kek-old") != std::string::npos)
      only_old = line.substr(0, line.find(" active")) + "\n";
    start = end + 1;
  }
  auto new_ring = keys::KeyRing::from_text(only_new);
  auto stale_ring = keys::KeyRing::from_text(only_old);
  ASSERT_TRUE(new_ring.ok() && stale_ring.ok());
  auto rows = store::all_wrapped_keys(conn);
  ASSERT_TRUE(rows.ok() && rows->size() == 2u);
  auto sealed_rows = conn.query(
      "SELECT c.customer_id, k.sealed_material FROM credentials k JOIN "
      "customers c ON c.id = k.customer_id ORDER BY k.id");
  ASSERT_TRUE(sealed_rows.ok());
  for (std::size_t i = 0; i < 2; ++i) {
    const keys::Sealed sealed{(*rows)[i].kek_id, (*rows)[i].wrapped_data_key,
                              (*sealed_rows)[i].text(1)};
    const std::string aad = "credential:" + (*sealed_rows)[i].text(0);
    auto opened = keys::open(*new_ring, sealed, aad);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(opened->view(), material);
    EXPECT_FALSE(keys::open(*stale_ring, sealed, aad).ok());
  }
  auto audit = store::tail_audit(conn, 1);
  ASSERT_TRUE(audit.ok() && !audit->empty());
  EXPECT_EQ(audit->front().action, "kek.rotate");
  EXPECT_EQ(audit->front().detail.find(read_file(kek).substr(20, 20)), std::string::npos);
}

TEST(Mailpushctl, UnreachableDatabaseExitsThree) {
  const auto dir = make_temp_dir("ctl-down");
  const auto region = write_region_file(
      dir, R"({"database": {"host": "127.0.0.1", "port": )" + std::to_string(free_tcp_port()) +
               R"(, "socket": null, "connect_timeout_ms": 1000, "password_file": ")" +
               std::string(std::getenv("MAILPUSH_TEST_DB_PASSWORD_FILE")) + R"("}})");
  std::string out;
  EXPECT_EQ(ctl(region, {"migrate"}, &out), 3);
  EXPECT_NE(out.find("unreachable"), std::string::npos) << out;
  EXPECT_EQ(ctl(region, {"--json", "status"}, &out), 3);
  EXPECT_EQ(nlohmann::json::parse(out)["database"]["reachable"], false);
}

TEST(Mailpushctl, UsageAndConfigErrorsHaveTheirOwnExitCodes) {
  std::string out;
  EXPECT_EQ(
      run_command({ctl_binary().string(), "--region", (source_dir() / "regions/dev.json").string()},
                  &out),
      2);
  EXPECT_EQ(run_command({ctl_binary().string(), "--version"}, &out), 0);
  EXPECT_NE(out.find("mailpushctl "), std::string::npos);
  const auto dir = make_temp_dir("ctl-badcfg");
  const auto region = write_region_file(dir, R"({"database": {"pasword_file": "x"}})");
  EXPECT_EQ(run_command({ctl_binary().string(), "--region", region.string(), "status"}, &out), 78);
  EXPECT_NE(out.find("database.pasword_file: unknown field"), std::string::npos) << out;
}

}  // namespace
}  // namespace mp::test
