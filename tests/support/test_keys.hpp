// Shared by the keys and scripts tests: random key-file lines and the no-secret-in-message check.
#pragma once

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.hpp"

namespace mp::keys::test {

// Keys are made at run time: the repository holds no key material, not even a test key.
inline Bytes random_key_bytes(std::size_t n = 32) {
  Bytes key(n);
  if (n > 0) {
    EXPECT_EQ(RAND_bytes(key.data(), static_cast<int>(n)), 1);
  }
  return key;
}

// OpenSSL's encoder, so the tests do not share the parser's base64 code.
inline std::string base64(const Bytes& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

inline std::string random_key_base64(std::size_t n = 32) {
  return base64(random_key_bytes(n));
}

// Asserts that `text` shows no trace of any of `secrets`: neither whole nor their first 12
// characters (a random 12-character base64 run cannot appear in a message by chance).
inline void expect_no_secret(std::string_view text, const std::vector<std::string>& secrets) {
  for (const std::string& secret : secrets) {
    ASSERT_GE(secret.size(), 12u);
    EXPECT_EQ(text.find(secret.substr(0, 12)), std::string_view::npos)
        << "a secret leaked into: " << text;
  }
}

}  // namespace mp::keys::test
