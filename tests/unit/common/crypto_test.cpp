// Tests of src/common/crypto: base64url and base32 (RFC 4648), random tokens, hex, digests and
// HMAC against published vectors, constant-time compare.
#include "common/crypto.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>

namespace mp {
namespace {

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

}  // namespace
}  // namespace mp
