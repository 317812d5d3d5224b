// Tests of RegionSecret: address normalisation, the two derivations (deterministic, separated,
// keyed), parsing and every refusal without a secret byte, the file checks, and
// scripts/make-region-secret.sh.
#include "keys/region_secret.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "test_env.hpp"
#include "test_keys.hpp"

namespace mp::keys {
namespace {

namespace fs = std::filesystem;
using test::expect_no_secret;
using test::random_key_base64;

RegionSecret secret_from(const std::string& base64) {
  auto s = RegionSecret::from_text("region-secret " + base64 + "\n");
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return std::move(s).value();
}

TEST(MailboxAddress, IsTrimmedAndLowercasedInAsciiOnly) {
  EXPECT_EQ(normalize_mailbox_address("  Alice.Smith@Example.COM\r\n").value(),
            "alice.smith@example.com");
  EXPECT_EQ(normalize_mailbox_address("\tbob@example.com").value(), "bob@example.com");
  // Non-ASCII letters are kept as they are (Exchange compares SMTP addresses, ASCII in practice).
  EXPECT_EQ(normalize_mailbox_address("Jürgen@Example.de").value(), "jürgen@example.de");
  EXPECT_EQ(normalize_mailbox_address("a@b").value(), "a@b");
}

TEST(MailboxAddress, RefusalsSayWhyWithoutTheAddress) {
  const std::string secret_looking = "Zq9Xv2Lm8Np4Rt6W";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty"},
      {"   \t ", "empty"},
      {secret_looking + "example.com", "name@domain"},
      {"@" + secret_looking, "name@domain"},
      {secret_looking + "@", "name@domain"},
      {secret_looking + " x@example.com", "space"},
      {secret_looking + "\x01@example.com", "control character"},
      {secret_looking + "\x7f@example.com", "control character"},
      {secret_looking + "@exa\nmple.com", "control character"},
      {std::string(300, 'a') + "@" + std::string(30, 'b') + ".com", "longer than 320"},
  };
  for (const auto& [address, why] : cases) {
    auto n = normalize_mailbox_address(address);
    ASSERT_FALSE(n.ok()) << address;
    EXPECT_EQ(n.error().code, Errc::invalid_argument);
    EXPECT_NE(n.error().message.find(why), std::string::npos) << n.error().message;
    EXPECT_EQ(n.error().message.find(secret_looking), std::string::npos) << n.error().message;
  }
  // 320 characters exactly is accepted.
  EXPECT_TRUE(normalize_mailbox_address(std::string(64, 'a') + "@" + std::string(255, 'b')).ok());
}

TEST(RegionSecretTest, MailboxHmacIsKeyedAndIgnoresCaseAndBlanks) {
  const RegionSecret a = secret_from(random_key_base64());
  const RegionSecret b = secret_from(random_key_base64());
  const Bytes one = a.mailbox_hmac("alice@example.com").value();
  EXPECT_EQ(one.size(), kMailboxHmacBytes);
  EXPECT_EQ(a.mailbox_hmac(" ALICE@Example.com ").value(), one);
  EXPECT_NE(a.mailbox_hmac("alice2@example.com").value(), one);
  EXPECT_NE(b.mailbox_hmac("alice@example.com").value(), one) << "keyed by the region secret";
  EXPECT_FALSE(a.mailbox_hmac("no-at-sign").ok());
}

TEST(RegionSecretTest, CallbackSecretsAreDeterministicDistinctAndUrlSafe) {
  const std::string base64 = random_key_base64();
  const RegionSecret a = secret_from(base64);
  const RegionSecret again = secret_from(base64);
  const RegionSecret other = secret_from(random_key_base64());

  const std::string s = a.callback_secret(42, 0);
  EXPECT_EQ(s.size(), 43u) << "32 bytes in base64url without padding";
  EXPECT_EQ(s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos)
      << s;
  EXPECT_EQ(again.callback_secret(42, 0), s) << "the same URL for a repeated registration";
  EXPECT_NE(other.callback_secret(42, 0), s);
  EXPECT_EQ(a.callback_secret_hash(42, 0), sha384(s));

  std::set<std::string> seen;
  for (std::int64_t id : {1, 2, 42, 256, 1 << 20}) {
    for (std::uint32_t generation : {0u, 1u, 2u, 256u}) {
      EXPECT_TRUE(seen.insert(a.callback_secret(id, generation)).second) << id << "/" << generation;
    }
  }
  // The two derived keys are separated: no callback secret equals a mailbox HMAC's encoding.
  EXPECT_NE(base64url_encode(a.mailbox_hmac("a@b").value()), a.callback_secret(0, 0));
}

TEST(RegionSecretTest, CapabilitiesAreRandomAndOnlyTheRegionThatIssuedThemRecognisesThem) {
  const std::string base64 = random_key_base64();
  const RegionSecret a = secret_from(base64);
  const RegionSecret same_region = secret_from(base64);
  const RegionSecret other = secret_from(random_key_base64());
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string c = a.issue_capability();
    ASSERT_EQ(c.size(), kCapabilityChars);
    EXPECT_EQ(
        c.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
        std::string::npos)
        << c;
    EXPECT_TRUE(seen.insert(c).second) << "never issued twice";
    EXPECT_TRUE(a.issued(c));
    EXPECT_TRUE(same_region.issued(c)) << "every instance of the region recognises it";
    EXPECT_FALSE(other.issued(c));
  }
  // Made-up and altered secrets are told apart without any lookup.
  std::string c = a.issue_capability();
  std::string altered = c;
  altered[5] = altered[5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(a.issued(altered));
  altered = c;
  altered.back() = altered.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(a.issued(altered));
  EXPECT_FALSE(a.issued(c.substr(0, 43)));
  EXPECT_FALSE(a.issued(""));
  EXPECT_FALSE(a.issued(a.callback_secret(1, 0))) << "the old derivation is not a capability";
}

TEST(RegionSecretTest, TicketKeyMaterialChangesEachPeriodAndIsTheSameOnEveryInstance) {
  const std::string base64 = random_key_base64();
  const RegionSecret a = secret_from(base64);
  const RegionSecret b = secret_from(base64);
  const auto k1 = a.ticket_key_material(100);
  ASSERT_EQ(k1.bytes().size(), 80u);
  const auto k1_again = b.ticket_key_material(100);
  EXPECT_TRUE(std::equal(k1.bytes().begin(), k1.bytes().end(), k1_again.bytes().begin()));
  const auto k2 = a.ticket_key_material(101);
  EXPECT_FALSE(std::equal(k1.bytes().begin(), k1.bytes().end(), k2.bytes().begin()));
}

TEST(RegionSecretTest, ParsesCommentsBlankLinesAndCrlf) {
  const std::string key = random_key_base64(48);
  auto s = RegionSecret::from_text("# region secret\n\n  region-secret\t" + key +
                                   "  # made by hand\r\n# end");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->callback_secret(1, 0), secret_from(key).callback_secret(1, 0));
}

TEST(RegionSecretTest, RefusalsNameTheLineAndNeverTheSecret) {
  const std::string key = random_key_base64();
  const std::string short_key = random_key_base64(16);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "holds no region-secret line"},
      {"# only a comment\n", "holds no region-secret line"},
      {"secret " + key + "\n", "line 1: expected 'region-secret"},
      {"region-secret " + key + " extra\n", "line 1: expected 'region-secret"},
      {"region-secret " + key + "\nregion-secret " + key + "\n", "line 2: a second"},
      {"region-secret " + key.substr(0, 30) + "\n", "not valid base64"},
      {"region-secret " + short_key + "\n", "is 16 bytes"},
      {"region-secret " + test::base64(Bytes(32, 0)) + "\n", "all zero"},
  };
  for (const auto& [text, needle] : cases) {
    auto s = RegionSecret::from_text(text);
    ASSERT_FALSE(s.ok()) << needle;
    EXPECT_EQ(s.error().code, Errc::invalid_argument);
    EXPECT_NE(s.error().message.find(needle), std::string::npos) << s.error().message;
    expect_no_secret(s.error().message, {key, short_key});
  }
}

class RegionSecretFileTest : public ::testing::Test {
 protected:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path write(const std::string& text, fs::perms perms) {
    const fs::path path = dir_ / ("secret-" + std::to_string(n_++));
    mp::test::write_file(path, text);
    fs::permissions(path, perms);
    return path;
  }
  unsigned mode_of(const fs::path& path) const {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st.st_mode & 07777;
  }
  // Runs scripts/make-region-secret.sh under umask 000; returns its exit code.
  int make(const std::string& args) {
    const fs::path log = dir_ / "output.txt";
    const std::string command =
        "cd '" + dir_.string() + "' && umask 000 && '" +
        (fs::path(MAILPUSH_SOURCE_DIR) / "scripts/make-region-secret.sh").string() + "' " + args +
        " > '" + log.string() + "' 2>&1";
    const int status = std::system(command.c_str());
    output_ = mp::test::read_file(log);
    fs::remove(log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  fs::path dir_ = mp::test::make_temp_dir("region-secret");
  int n_ = 0;
  std::string output_;
};

TEST_F(RegionSecretFileTest, LoadsAPrivateFileAndRefusesOthersWithTheFix) {
  const std::string key = random_key_base64();
  const fs::path ok = write("region-secret " + key + "\n", fs::perms(0600));
  auto loaded = RegionSecret::load_file(ok);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->callback_secret(7, 1), secret_from(key).callback_secret(7, 1));

  const fs::path open = write("region-secret " + key + "\n", fs::perms(0644));
  auto refused = RegionSecret::load_file(open);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("chmod 600 " + open.string()), std::string::npos)
      << refused.error().message;
  expect_no_secret(refused.error().message, {key});

  auto missing = RegionSecret::load_file(dir_ / "absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::not_found);
  EXPECT_NE(missing.error().message.find("make-region-secret.sh"), std::string::npos)
      << missing.error().message;

  const fs::path bad = write("region-secret " + key.substr(0, 40) + "\n", fs::perms(0600));
  auto malformed = RegionSecret::load_file(bad);
  ASSERT_FALSE(malformed.ok());
  EXPECT_NE(malformed.error().message.find(bad.string() + ", line 1"), std::string::npos)
      << malformed.error().message;
  expect_no_secret(malformed.error().message, {key});
}

TEST_F(RegionSecretFileTest, TheScriptWritesAPrivateLoadableFileAndNeverOverwrites) {
  ASSERT_EQ(make("region-secret"), 0) << output_;
  const fs::path file = dir_ / "region-secret";
  EXPECT_EQ(mode_of(file), 0600u) << "private whatever the caller's umask";
  auto loaded = RegionSecret::load_file(file);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;

  // The secret is in the file and nowhere in the output.
  const std::string text = mp::test::read_file(file);
  const auto at = text.find("region-secret ");
  ASSERT_NE(at, std::string::npos);
  const std::string secret = text.substr(at + 14, 44);
  expect_no_secret(output_, {secret});

  const std::string before = text;
  EXPECT_NE(make("region-secret"), 0);
  EXPECT_NE(output_.find("not overwritten"), std::string::npos) << output_;
  EXPECT_EQ(mp::test::read_file(file), before);

  ASSERT_EQ(make("second"), 0) << output_;
  EXPECT_NE(RegionSecret::load_file(dir_ / "second")->callback_secret(1, 0),
            loaded->callback_secret(1, 0))
      << "each run makes a new random secret";
  EXPECT_EQ(make(""), 2) << "usage";
  EXPECT_NE(make("no-such-folder/secret"), 0);
}

}  // namespace
}  // namespace mp::keys
