// What bench/fanout_bench.sh, fanout_load and fanout_check agree on: the layout of the data the
// benchmark loads into MariaDB with bulk SQL (seed_sql in fanout_bench.sh), so that the tools can
// rebuild every secret, subscription id and device token from a mailbox number alone.
//
// Mailbox i (1…N) has devices_of(i) = 1 + (i - 1) % 3 devices (1, 2, 3 cycling: 2 on average),
// slot s = 0…devices_of(i) - 1. Device s of mailbox i and its registration share one id,
// registration_id(i, s) = 3 (i - 1) + s + 1 (ids of the missing slots are simply not used).
//
//   device token     hex(SHA-256("fanout-bench-token-<i>-<s>"))       64 lower-case hex digits
//   callback secret  "fanout-bench-secret-" + the registration id on 10 digits (30 characters)
//   secret_hash      SHA-384(secret)
//   subscription id  "fanout-sub-<registration id>"  (bound in the database by the seed)
//   address_hmac     SHA-256("fanout-bench-mailbox-<i>")
//
// The same formulas are written in SQL in fanout_bench.sh (MariaDB's SHA2() gives lower-case hex).
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace fanout {

inline unsigned devices_of(std::uint64_t mailbox) {
  return 1 + static_cast<unsigned>((mailbox - 1) % 3);
}

inline std::uint64_t registration_id(std::uint64_t mailbox, unsigned slot) {
  return 3 * (mailbox - 1) + slot + 1;
}

inline std::string secret(std::uint64_t registration) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "fanout-bench-secret-%010llu",
                static_cast<unsigned long long>(registration));
  return buf;
}

inline std::string subscription(std::uint64_t registration) {
  return "fanout-sub-" + std::to_string(registration);
}

inline std::string sha256_hex(const std::string& text) {
  unsigned char digest[32];
  unsigned int len = 0;
  if (EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr) != 1 || len != 32)
    throw std::runtime_error("SHA-256 failed");
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (unsigned char c : digest) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

inline std::string token(std::uint64_t mailbox, unsigned slot) {
  return sha256_hex("fanout-bench-token-" + std::to_string(mailbox) + "-" + std::to_string(slot));
}

// splitmix64: the load generator's draws are a pure function of (seed, n).
inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace fanout
