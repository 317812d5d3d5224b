// Tests of normalize_device_token and display_token: accepted forms, refusals, and no token leak.
#include "apns/device_token.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/crypto.hpp"

namespace mp::apns {
namespace {

// 32 bytes chosen so that standard base64 has both '+' and '/', URL-safe both '-' and '_'.
constexpr const char* kHex = "fbff3e7d0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829300fe";
constexpr const char* kHexUpper =
    "FBFF3E7D0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F6071829300FE";
constexpr const char* kBase64Std = "+/8+fQobLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTAP4=";
constexpr const char* kBase64Url = "-_8-fQobLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTAP4=";

// OpenSSL's encoder, so the tests do not share the decoder's logic.
std::string base64(const Bytes& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Bytes counting_bytes(std::size_t n) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(0xa0 + i);
  return b;
}

std::string without_padding(std::string s) {
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

struct Accepted {
  const char* name;
  std::string raw;
  std::string hex;
};

class NormalizeAccepts : public testing::TestWithParam<Accepted> {};

TEST_P(NormalizeAccepts, ToLowercaseHex) {
  const Result<std::string> got = normalize_device_token(GetParam().raw);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, GetParam().hex);
}

INSTANTIATE_TEST_SUITE_P(
    Forms, NormalizeAccepts,
    testing::Values(
        Accepted{"lower_hex", kHex, kHex}, Accepted{"upper_hex", kHexUpper, kHex},
        Accepted{"mixed_case_hex",
                 "FbFf3E7d0A1b2C3d4E5f60718293A4b5C6d7E8f90A1b2C3d4E5f6071829300Fe", kHex},
        Accepted{"surrounding_whitespace", std::string(" \t") + kHex + "\r\n", kHex},
        Accepted{"nsdata_description",
                 "<fbff3e7d 0a1b2c3d 4e5f6071 8293a4b5 c6d7e8f9 0a1b2c3d 4e5f6071 829300fe>", kHex},
        Accepted{"nsdata_description_upper_padded",
                 "  <FBFF3E7D 0A1B2C3D 4E5F6071 8293A4B5 C6D7E8F9 0A1B2C3D 4E5F6071 829300FE>\n",
                 kHex},
        Accepted{"base64_standard_padded", kBase64Std, kHex},
        Accepted{"base64_standard_unpadded", without_padding(kBase64Std), kHex},
        Accepted{"base64_url_safe_padded", kBase64Url, kHex},
        Accepted{"base64_url_safe_unpadded", without_padding(kBase64Url), kHex},
        Accepted{"base64_with_whitespace_around", std::string("  ") + kBase64Std + "\n", kHex},
        Accepted{"base64_two_padding_chars", "AAECAwQFBgcICQ==", "00010203040506070809"},
        Accepted{"hex_100_bytes", hex_encode(counting_bytes(100)), hex_encode(counting_bytes(100))},
        Accepted{"base64_100_bytes", base64(counting_bytes(100)), hex_encode(counting_bytes(100))},
        Accepted{"base64_8_bytes", base64(counting_bytes(8)), hex_encode(counting_bytes(8))},
        Accepted{"short_even_hex", "abcd", "abcd"}),
    [](const testing::TestParamInfo<Accepted>& info) { return std::string(info.param.name); });

struct Refused {
  const char* name;
  std::string raw;
  const char* reason_part;  // a piece of the reason a person acts on
};

class NormalizeRefuses : public testing::TestWithParam<Refused> {};

TEST_P(NormalizeRefuses, WithAnActionableReason) {
  const Result<std::string> got = normalize_device_token(GetParam().raw);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.error().code, Errc::invalid_argument);
  EXPECT_NE(got.error().message.find(GetParam().reason_part), std::string::npos)
      << got.error().message;
  EXPECT_NE(got.error().message.find("as hex"), std::string::npos) << got.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Forms, NormalizeRefuses,
    testing::Values(
        Refused{"empty", "", "empty"}, Refused{"whitespace_only", " \t\r\n ", "empty"},
        Refused{"empty_brackets", "< >", "empty"},
        Refused{"odd_length_hex", std::string(kHex) + "a", "odd number of digits (65)"},
        Refused{"hex_101_bytes", hex_encode(counting_bytes(101)), "202 hex digits"},
        Refused{"base64_101_bytes", base64(counting_bytes(101)), "decodes to 101 bytes"},
        Refused{"base64_7_bytes", base64(counting_bytes(7)), "decodes to 7 bytes"},
        Refused{"neither", "device-token-here!", "character 18 is neither"},
        Refused{"inner_angle_bracket", "<abcd>ef>", "character 6 is neither"},
        Refused{"mixed_alphabets", "+/8-fQobLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTAP4", "mixes"},
        Refused{"misplaced_padding", "AAEC=AwQFBgc", "padding"},
        Refused{"three_padding_chars", "AAECAwQFBgcICQ===", "padding"},
        Refused{"impossible_base64_length", "AAECAwQFBgcICQoLD", "cannot be base64"},
        Refused{"non_canonical_base64", "AAECAwQFBgcICR==", "not what an encoder writes"},
        Refused{"ios13_description",
                "{length = 32, bytes = 0xfbff3e7d 0a1b2c3d ... 4e5f6071 829300fe}", "iOS 13"},
        Refused{"hex_of_hex", hex_encode(as_bytes(kHex)), "hex-encoded twice"},
        Refused{"base64_of_hex",
                "ZmJmZjNlN2QwYTFiMmMzZDRlNWY2MDcxODI5M2E0YjVjNmQ3ZThmOTBhMWIyYzNkNGU1ZjYwNzE4MjkzMD"
                "BmZQ==",
                "base64 of the token's hex text"},
        Refused{"huge", std::string(5000, 'a'), "5000 characters"}),
    [](const testing::TestParamInfo<Refused>& info) { return std::string(info.param.name); });

// The ambiguity rule: only hex digits means hex, even when the text is also valid base64.
TEST(NormalizeDeviceToken, HexWinsOverBase64) {
  const std::string both = "deadbeefcafebabe";  // 16 chars: hex of 8 bytes, base64 of 12 bytes
  const Result<std::string> got = normalize_device_token(both);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, both);
  // An odd-length hex text is refused as hex, not reinterpreted as unpadded base64.
  const Result<std::string> odd = normalize_device_token(std::string(43, 'a'));
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.error().message.find("odd number"), std::string::npos);
}

TEST(NormalizeDeviceToken, IsIdempotent) {
  const Result<std::string> once = normalize_device_token(kBase64Url);
  ASSERT_TRUE(once.ok());
  const Result<std::string> twice = normalize_device_token(*once);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(*twice, *once);
  EXPECT_TRUE(is_normalized_device_token(*twice));
}

TEST(NormalizeDeviceToken, NoErrorMessageHoldsTheToken) {
  const std::string token = kHex;
  const std::string b64 = kBase64Std;
  const std::vector<std::string> bad = {
      token + "0",
      token + "!",
      "<" + token + " ?>",
      "{length = 32, bytes = 0x" + token + "}",
      token + token + token + token,
      b64 + "!",
      b64 + "A",
      "=" + b64,
      without_padding(b64).substr(0, 41) + "-_",
      hex_encode(as_bytes(token)),
      std::string(2000, '0') + token,
  };
  for (const std::string& raw : bad) {
    const Result<std::string> got = normalize_device_token(raw);
    ASSERT_FALSE(got.ok()) << "accepted input #" << (&raw - bad.data());
    const std::string& message = got.error().message;
    // Not the token, and not even a run of 12 of its characters, in any encoding.
    for (const std::string& secret : {token, b64, std::string(kHexUpper)}) {
      for (std::size_t i = 0; i + 12 <= secret.size(); ++i) {
        EXPECT_EQ(message.find(secret.substr(i, 12)), std::string::npos) << message;
      }
    }
  }
}

TEST(DisplayToken, ShowsAPrefixAndTheLength) {
  EXPECT_EQ(display_token(kHex), "fbff3e7d…(64)");
  EXPECT_EQ(display_token("abcd"), "…(4)");
}

TEST(IsNormalizedDeviceToken, OnlyLowercaseEvenBoundedHex) {
  EXPECT_TRUE(is_normalized_device_token(kHex));
  EXPECT_FALSE(is_normalized_device_token(kHexUpper));
  EXPECT_FALSE(is_normalized_device_token(""));
  EXPECT_FALSE(is_normalized_device_token("abc"));
  EXPECT_FALSE(is_normalized_device_token("ab/cd"));
  EXPECT_TRUE(is_normalized_device_token(std::string(200, 'a')));
  EXPECT_FALSE(is_normalized_device_token(std::string(202, 'a')));
}

}  // namespace
}  // namespace mp::apns
