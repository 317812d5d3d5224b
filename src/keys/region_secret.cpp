// RegionSecret: parsing the region secret file and the two derivations.
#include "keys/region_secret.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <optional>
#include <vector>

#include "common/text.hpp"
#include "keys/key_ring.hpp"

namespace mp::keys {
namespace {

constexpr const char* kSecretLineForm =
    "expected 'region-secret <base64 of at least 32 random bytes>'";
constexpr std::string_view kMailboxLabel = "mailpush/region-secret/v1/mailbox-address";
constexpr std::string_view kCallbackLabel = "mailpush/region-secret/v1/callback-secret";
constexpr std::string_view kCapabilityLabel = "mailpush/region-secret/v1/capability";
constexpr std::string_view kTicketLabel = "mailpush/region-secret/v1/tls-session-ticket";
constexpr std::size_t kCapabilityHalf = 22;  // base64url of 16 bytes

// HKDF-Expand (RFC 5869) for one SHA-256 block: HMAC(prk, info || 0x01). The Extract step is
// skipped because the region secret already is a uniformly random key of at least 256 bits.
SecretBytes expand(const SecretBytes& prk, std::string_view label) {
  std::string info(label);
  info.push_back('\x01');
  Bytes block = hmac_sha256(prk.bytes(), info);
  SecretBytes key = SecretBytes::copy_of(block);
  OPENSSL_cleanse(block.data(), block.size());
  return key;
}

bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

}  // namespace

Result<std::string> normalize_mailbox_address(std::string_view address) {
  while (!address.empty() && is_blank(address.front())) address.remove_prefix(1);
  while (!address.empty() && is_blank(address.back())) address.remove_suffix(1);
  if (address.empty()) return make_error(Errc::invalid_argument, "the mailbox address is empty");
  if (address.size() > kMaxMailboxAddressChars) {
    return make_error(Errc::invalid_argument, "the mailbox address is longer than " +
                                                  std::to_string(kMaxMailboxAddressChars) +
                                                  " characters");
  }
  std::string out;
  out.reserve(address.size());
  for (const char c : address) {
    if (is_ascii_control(c)) {
      return make_error(Errc::invalid_argument, "the mailbox address holds a control character");
    }
    if (c == ' ') return make_error(Errc::invalid_argument, "the mailbox address holds a space");
    out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
  const std::size_t at = out.rfind('@');
  if (at == std::string::npos || at == 0 || at + 1 == out.size()) {
    return make_error(Errc::invalid_argument,
                      "the mailbox address must be the mailbox's SMTP address, name@domain");
  }
  return out;
}

Result<RegionSecret> RegionSecret::parse(std::string_view text, const std::string& source) {
  // Refusals name the line number and the rule, never the line: its words may be key bytes.
  const auto refuse = [&](std::size_t line_number, const std::string& why) {
    return make_error(Errc::invalid_argument,
                      source + ", line " + std::to_string(line_number) + ": " + why);
  };
  std::optional<SecretBytes> secret;
  std::size_t secret_line = 0;
  std::size_t line_number = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    ++line_number;
    const std::size_t end = std::min(text.find('\n', pos), text.size());
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    if (const std::size_t hash = line.find('#'); hash != std::string_view::npos) {
      line = line.substr(0, hash);
    }
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::vector<std::string_view> words = detail::split_words(line);
    if (words.empty()) continue;
    if (words[0] != "region-secret" || words.size() != 2)
      return refuse(line_number, kSecretLineForm);
    if (secret) {
      return refuse(line_number, "a second region-secret line (line " +
                                     std::to_string(secret_line) +
                                     " has one); a region has exactly one secret");
    }
    Result<SecretBytes> bytes = detail::decode_base64(words[1]);
    if (!bytes) return refuse(line_number, bytes.error().message + " (" + kSecretLineForm + ")");
    if (bytes->size() < kMinRegionSecretBytes || bytes->size() > kMaxRegionSecretBytes) {
      return refuse(line_number, "the secret is " + std::to_string(bytes->size()) +
                                     " bytes; a region secret is " +
                                     std::to_string(kMinRegionSecretBytes) + " to " +
                                     std::to_string(kMaxRegionSecretBytes) +
                                     " random bytes (create one with "
                                     "scripts/make-region-secret.sh)");
    }
    if (std::all_of(bytes->data(), bytes->data() + bytes->size(),
                    [](std::uint8_t b) { return b == 0; })) {
      return refuse(line_number,
                    "the secret is all zero bytes, a placeholder rather than a random secret");
    }
    secret = std::move(*bytes);
    secret_line = line_number;
  }
  if (!secret) {
    return make_error(Errc::invalid_argument, source +
                                                  " holds no region-secret line; create one with "
                                                  "scripts/make-region-secret.sh");
  }
  RegionSecret out;
  out.mailbox_key_ = expand(*secret, kMailboxLabel);
  out.callback_key_ = expand(*secret, kCallbackLabel);
  out.capability_key_ = expand(*secret, kCapabilityLabel);
  out.ticket_key_ = expand(*secret, kTicketLabel);
  return out;
}

Result<RegionSecret> RegionSecret::from_text(std::string_view text) {
  return parse(text, "region secret");
}

Result<RegionSecret> RegionSecret::load_file(const std::filesystem::path& path) {
  const std::string source = "region secret file " + path.string();
  auto text = detail::read_key_file(path, source, "scripts/make-region-secret.sh");
  if (!text) return std::move(text).error();
  return parse(text->view(), source);
}

Result<Bytes> RegionSecret::mailbox_hmac(std::string_view address) const {
  auto normalized = normalize_mailbox_address(address);
  if (!normalized) return std::move(normalized).error();
  Bytes mac = hmac_sha256(mailbox_key_.bytes(), *normalized);
  OPENSSL_cleanse(normalized->data(), normalized->size());
  return mac;
}

std::string RegionSecret::callback_secret(std::int64_t registration_id,
                                          std::uint32_t generation) const {
  // Fixed-width big-endian fields: no two (id, generation) pairs share an input.
  std::array<char, 12> input{};
  const auto id = static_cast<std::uint64_t>(registration_id);
  for (int i = 0; i < 8; ++i) input[i] = static_cast<char>((id >> (56 - 8 * i)) & 0xff);
  for (int i = 0; i < 4; ++i) input[8 + i] = static_cast<char>((generation >> (24 - 8 * i)) & 0xff);
  Bytes mac = hmac_sha256(callback_key_.bytes(), std::string_view(input.data(), input.size()));
  std::string secret = base64url_encode(mac);
  OPENSSL_cleanse(mac.data(), mac.size());
  return secret;
}

Bytes RegionSecret::callback_secret_hash(std::int64_t registration_id,
                                         std::uint32_t generation) const {
  std::string secret = callback_secret(registration_id, generation);
  Bytes hash = sha384(secret);
  OPENSSL_cleanse(secret.data(), secret.size());
  return hash;
}

namespace {
// base64url of the first 16 bytes of HMAC(key, text): 22 characters.
std::string short_tag(const SecretBytes& key, std::string_view text) {
  Bytes mac = hmac_sha256(key.bytes(), text);
  std::string tag = base64url_encode(std::span<const std::uint8_t>(mac.data(), 16));
  OPENSSL_cleanse(mac.data(), mac.size());
  return tag;
}
}  // namespace

std::string RegionSecret::issue_capability() const {
  Bytes nonce = random_bytes(16);
  std::string secret = base64url_encode(nonce);
  OPENSSL_cleanse(nonce.data(), nonce.size());
  secret += short_tag(capability_key_, secret);
  return secret;
}

bool RegionSecret::issued(std::string_view secret) const {
  if (secret.size() != kCapabilityChars) return false;
  std::string expected = short_tag(capability_key_, secret.substr(0, kCapabilityHalf));
  const bool same =
      constant_time_equal(as_bytes(expected), as_bytes(secret.substr(kCapabilityHalf)));
  OPENSSL_cleanse(expected.data(), expected.size());
  return same;
}

SecretBytes RegionSecret::ticket_key_material(std::uint64_t period) const {
  Bytes out;
  for (char block = 1; block <= 3; ++block) {
    std::string info(8, '\0');
    for (int i = 0; i < 8; ++i) info[i] = static_cast<char>((period >> (56 - 8 * i)) & 0xff);
    info.push_back(block);
    Bytes part = hmac_sha256(ticket_key_.bytes(), info);
    out.insert(out.end(), part.begin(), part.end());
    OPENSSL_cleanse(part.data(), part.size());
  }
  SecretBytes key = SecretBytes::copy_of(std::span<const std::uint8_t>(out.data(), 80));
  OPENSSL_cleanse(out.data(), out.size());
  return key;
}

}  // namespace mp::keys
