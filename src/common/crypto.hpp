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

Bytes sha256(std::string_view data);
Bytes sha384(std::string_view data);
Bytes hmac_sha256(std::span<const std::uint8_t> key, std::string_view data);

// Compares without an early exit so timing does not reveal where two secrets differ.
bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) noexcept;

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace mp
