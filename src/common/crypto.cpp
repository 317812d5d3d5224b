// OpenSSL-backed implementations of the helpers in crypto.hpp.
#include "common/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>

namespace mp {

Bytes random_bytes(std::size_t count) {
  Bytes out(count);
  if (count > 0 && RAND_bytes(out.data(), static_cast<int>(count)) != 1) {
    std::abort();  // no safe way to continue without randomness
  }
  return out;
}

std::string hex_encode(std::span<const std::uint8_t> data) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (std::uint8_t b : data) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0x0f]);
  }
  return out;
}

namespace {
// Emits `bits_per_char`-bit groups of `data`, most significant first, through `alphabet`.
std::string encode_bits(std::span<const std::uint8_t> data, const char* alphabet,
                        unsigned bits_per_char) {
  std::string out;
  out.reserve((data.size() * 8 + bits_per_char - 1) / bits_per_char);
  std::uint32_t buffer = 0;
  unsigned bits = 0;
  const std::uint32_t mask = (1u << bits_per_char) - 1;
  for (std::uint8_t b : data) {
    buffer = (buffer << 8) | b;
    bits += 8;
    while (bits >= bits_per_char) {
      bits -= bits_per_char;
      out.push_back(alphabet[(buffer >> bits) & mask]);
    }
  }
  if (bits > 0) out.push_back(alphabet[(buffer << (bits_per_char - bits)) & mask]);
  return out;
}
}  // namespace

std::string base64url_encode(std::span<const std::uint8_t> data) {
  return encode_bits(data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", 6);
}

std::string base32_lower_encode(std::span<const std::uint8_t> data) {
  return encode_bits(data, "abcdefghijklmnopqrstuvwxyz234567", 5);
}

std::string random_token(std::string_view prefix, std::size_t bytes) {
  const Bytes raw = random_bytes(bytes);
  return std::string(prefix) + base64url_encode(raw);
}

namespace {
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Bytes digest(const EVP_MD* md, std::string_view data) {
  Bytes out(static_cast<std::size_t>(EVP_MD_get_size(md)));
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) != 1) std::abort();
  out.resize(len);
  return out;
}
}  // namespace

Result<Bytes> hex_decode(std::string_view hex) {
  if (hex.size() % 2 != 0) return make_error(Errc::invalid_argument, "hex text has an odd length");
  Bytes out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_value(hex[i]);
    const int lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return make_error(Errc::invalid_argument, "hex text has a non-hex character at offset " +
                                                    std::to_string(hi < 0 ? i : i + 1));
    }
    out.push_back(static_cast<std::uint8_t>(hi << 4 | lo));
  }
  return out;
}

// Fetched once: OpenSSL 3 would otherwise look the algorithm up on every call.
static const EVP_MD* fetched(const char* name) {
  const EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);
  if (md == nullptr) std::abort();
  return md;
}

Bytes sha256(std::string_view data) {
  static const EVP_MD* md = fetched("SHA256");
  return digest(md, data);
}
Bytes sha384(std::string_view data) {
  static const EVP_MD* md = fetched("SHA384");
  return digest(md, data);
}

Bytes hmac_sha256(std::span<const std::uint8_t> key, std::string_view data) {
  Bytes out(32);
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(),
           &len) == nullptr) {
    std::abort();
  }
  out.resize(len);
  return out;
}

bool constant_time_equal(std::span<const std::uint8_t> a,
                         std::span<const std::uint8_t> b) noexcept {
  if (a.size() != b.size()) return false;  // lengths of our hashes are public
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace mp
