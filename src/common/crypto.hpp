// Small cryptographic building blocks: random bytes, hashes, HMAC, hex, constant-time compare.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace mp {

using Bytes = std::vector<std::uint8_t>;

// Cryptographically secure random bytes (OpenSSL RAND_bytes); aborts if the RNG fails.
Bytes random_bytes(std::size_t count);

std::string hex_encode(std::span<const std::uint8_t> data);
Result<Bytes> hex_decode(std::string_view hex);
// RFC 4648 base64url without padding: tokens that travel in URLs, headers and JSON.
std::string base64url_encode(std::span<const std::uint8_t> data);
// RFC 4648 base32, lower case, without padding: identifiers people type (Customer IDs).
std::string base32_lower_encode(std::span<const std::uint8_t> data);
// `prefix` + base64url of `bytes` random bytes, e.g. random_token("ak_", 32): a secret shown
// once to its owner and stored only as its SHA-384.
std::string random_token(std::string_view prefix, std::size_t bytes);

Bytes sha256(std::string_view data);
Bytes sha384(std::string_view data);
Bytes hmac_sha256(std::span<const std::uint8_t> key, std::string_view data);

// Compares without an early exit so timing does not reveal where two secrets differ.
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace mp
