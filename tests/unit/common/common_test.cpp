// Tests of src/common: results, hashing and hex, constant-time compare, redaction, JSON logging.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/redact.hpp"
#include "common/result.hpp"
#include "common/version.hpp"

namespace mp {
namespace {

TEST(Result, HoldsValueOrError) {
  Result<int> good = 42;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 42);
  Result<int> bad = make_error(Errc::not_found, "no such customer");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::not_found);
  EXPECT_EQ(bad.error().message, "no such customer");
  Status fine;
  EXPECT_TRUE(fine.ok());
  Status failed = make_error(Errc::unavailable, "down");
  EXPECT_FALSE(failed.ok());
  EXPECT_STREQ(errc_name(failed.error().code), "unavailable");
}

TEST(Crypto, Base64UrlAndBase32MatchTheRfcVectors) {
  // RFC 4648 section 10, without padding; base64url uses - and _.
  const std::pair<std::string, std::pair<std::string, std::string>> vectors[] = {
      {"", {"", ""}},
      {"f", {"Zg", "my"}},
      {"fo", {"Zm8", "mzxq"}},
      {"foo", {"Zm9v", "mzxw6"}},
      {"foob", {"Zm9vYg", "mzxw6yq"}},
      {"fooba", {"Zm9vYmE", "mzxw6ytb"}},
      {"foobar", {"Zm9vYmFy", "mzxw6ytboi"}},
  };
  for (const auto& [in, out] : vectors) {
    EXPECT_EQ(base64url_encode(as_bytes(in)), out.first) << in;
    EXPECT_EQ(base32_lower_encode(as_bytes(in)), out.second) << in;
  }
  const std::uint8_t high[] = {0xfb, 0xff};
  EXPECT_EQ(base64url_encode(high), "-_8");
}

TEST(Crypto, RandomTokensAreUrlSafeAndDistinct) {
  const std::string a = random_token("ak_", 32);
  const std::string b = random_token("ak_", 32);
  EXPECT_EQ(a.size(), 3u + 43u);
  EXPECT_EQ(a.rfind("ak_", 0), 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"),
            std::string::npos);
}

TEST(Crypto, HexRoundTripsAndRejectsBadInput) {
  const Bytes data{0x00, 0x7f, 0xab, 0xff};
  EXPECT_EQ(hex_encode(data), "007fabff");
  auto back = hex_decode("007FabFF");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, data);
  EXPECT_FALSE(hex_decode("abc").ok());
  auto bad = hex_decode("zz00");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("offset 0"), std::string::npos);
}

TEST(Crypto, KnownDigests) {
  EXPECT_EQ(hex_encode(sha256("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(hex_encode(sha384("abc")),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
            "8086072ba1e7cc2358baeca134c825a7");
  // RFC 4231 test case 2.
  EXPECT_EQ(hex_encode(hmac_sha256(as_bytes("Jefe"), "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, RandomBytesDiffer) {
  const auto a = random_bytes(16);
  const auto b = random_bytes(16);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, b);
}

TEST(Crypto, ConstantTimeEqual) {
  const auto a = sha384("secret-1");
  auto b = a;
  EXPECT_TRUE(constant_time_equal(a, b));
  b.back() ^= 1;
  EXPECT_FALSE(constant_time_equal(a, b));
  EXPECT_FALSE(constant_time_equal(a, sha256("secret-1")));
}

TEST(Redact, KeepsAPrefixAndTheLengthOnly) {
  const std::string token(64, 'a');
  EXPECT_EQ(redact(token), "aaaaaaaa…(64)");
  EXPECT_EQ(redact("short"), "…(5)");
  EXPECT_EQ(redact(""), "…(0)");
}

class LogCapture : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_sink([this](std::string_view line) { lines.emplace_back(line); });
  }
  void TearDown() override {
    log::set_sink(nullptr);
    log::set_level(log::Level::info);
  }
  std::vector<std::string> lines;
};

TEST_F(LogCapture, WritesOneJsonObjectPerLine) {
  log::set_static_field("region", "test-region");
  log::info("unit.event", {{"count", 3}, {"note", "line\nbreak"}});
  ASSERT_EQ(lines.size(), 1u);
  ASSERT_EQ(lines[0].back(), '\n');
  EXPECT_EQ(lines[0].find('\n'), lines[0].size() - 1) << "the record must be a single line";
  const auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["event"], "unit.event");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["count"], 3);
  EXPECT_EQ(j["region"], "test-region");
  EXPECT_TRUE(j["ts"].get<std::string>().ends_with("Z"));
}

TEST_F(LogCapture, FiltersByLevelAndSurvivesInvalidUtf8) {
  log::set_level(log::Level::warn);
  log::info("dropped");
  log::debug("dropped");
  log::warn("kept", {{"bytes", std::string("\xff\xfe bad")}});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(nlohmann::json::accept(lines[0]));
  log::Level l{};
  EXPECT_TRUE(log::parse_level("error", l));
  EXPECT_EQ(l, log::Level::error);
  EXPECT_FALSE(log::parse_level("verbose", l));
}

TEST_F(LogCapture, ThrottleHoldsAFloodBackAndCountsWhatItHeld) {
  log::Throttle throttle(20, 3);  // bursts of 3, then 20 a second
  for (int i = 0; i < 50; ++i) throttle.write(log::Level::info, "unit.flood", {{"i", i}});
  ASSERT_EQ(lines.size(), 3u) << "the burst only";
  std::this_thread::sleep_for(std::chrono::milliseconds(120));  // at least two more tokens
  throttle.write(log::Level::info, "unit.flood", {{"i", 50}});
  ASSERT_EQ(lines.size(), 4u);
  const auto j = nlohmann::json::parse(lines[3]);
  EXPECT_EQ(j["i"], 50);
  EXPECT_EQ(j["suppressed"], 47) << "the lines held back are counted";
  throttle.write(log::Level::debug, "unit.flood", {});
  EXPECT_EQ(lines.size(), 4u) << "a level that is off writes nothing and costs no token";
}

TEST(Version, NamesProgramVersionAndCommit) {
  const std::string line = version_line("mailpushd");
  EXPECT_EQ(line.rfind("mailpushd ", 0), 0u);
  EXPECT_NE(line.find(version()), std::string::npos);
  EXPECT_NE(line.find("commit"), std::string::npos);
}

}  // namespace
}  // namespace mp
