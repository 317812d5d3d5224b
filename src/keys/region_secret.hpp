// RegionSecret: the registration API's key (registration.secret_file), from which the HMAC of
// mailbox addresses and each registration's callback secret are derived.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "common/secret_bytes.hpp"

namespace mp::keys {

// At least 32 random bytes (256 bits); more is accepted, a shorter one is a mistake.
inline constexpr std::size_t kMinRegionSecretBytes = 32;
inline constexpr std::size_t kMaxRegionSecretBytes = 512;
// RFC 5321 bounds a path at 256 octets and RFC 3696 errata an address at 254; 320 (64 + 1 +
// 255) is the generous bound of the local part and domain limits taken apart.
inline constexpr std::size_t kMaxMailboxAddressChars = 320;
inline constexpr std::size_t kMailboxHmacBytes = 32;
inline constexpr std::size_t kCallbackSecretBytes = 32;  // 43 characters of base64url
inline constexpr std::size_t kLegacyCallbackSecretChars = 43;
inline constexpr std::size_t kCapabilityChars = 44;

// The address as its HMAC is taken: surrounding ASCII whitespace removed, ASCII letters
// lowercased (Exchange matches SMTP addresses without regard to case). Refused: empty, longer
// than kMaxMailboxAddressChars, no '@' with text on both sides, a control character or a space
// inside. The message says which rule was broken and never holds the address.
Result<std::string> normalize_mailbox_address(std::string_view address);

// The region secret file (mode 0600, owner the daemon's user or root, like the key file):
//
//   # comments start with '#', blank lines are ignored
//   region-secret <base64 of at least 32 random bytes>
//
// exactly one such line; scripts/make-region-secret.sh writes it. Two keys are derived from
// it (HKDF-Expand with SHA-256, one label each, so neither output says anything about the
// other): one keys the mailbox-address HMAC, the other the callback secrets. The secret is
// never rotated: a new one gives every mailbox a new HMAC and every registration a new URL.
//
// Immutable after loading, so shared by any number of threads; move-only, wiped when it goes.
class RegionSecret {
 public:
  // Reads and checks the file (keys::detail::read_key_file's rules), then parses it as
  // from_text does. Errors name the file and the rule broken, never a line.
  static Result<RegionSecret> load_file(const std::filesystem::path& path);
  // Parses the file's text without any file check (tests, tools).
  static Result<RegionSecret> from_text(std::string_view text);

  RegionSecret(RegionSecret&&) noexcept = default;
  RegionSecret& operator=(RegionSecret&&) noexcept = default;
  RegionSecret(const RegionSecret&) = delete;
  RegionSecret& operator=(const RegionSecret&) = delete;
  ~RegionSecret() = default;

  // HMAC-SHA256 of normalize_mailbox_address(address): 32 bytes, what `mailboxes.address_hmac`
  // holds. The same address in any case or with surrounding blanks gives the same bytes.
  Result<Bytes> mailbox_hmac(std::string_view address) const;

  // The listener URL secret of registrations from before capabilities: base64url without padding
  // of 32 bytes of HMAC over (registration id, generation). Not issued (a repeated
  // registration would return the same URL to anyone who knew the address and the token); kept so
  // that tests and tools can make such URLs, which Exchange may still call.
  std::string callback_secret(std::int64_t registration_id, std::uint32_t generation) const;
  // SHA-384 of callback_secret(...): what `registrations.secret_hash` holds.
  Bytes callback_secret_hash(std::int64_t registration_id, std::uint32_t generation) const;

  // A new registration's capability (its listener URL's secret, and its bearer token for the
  // registration API): 22 characters of base64url of 128 random bits, then 22 of a 128-bit
  // HMAC of them. Random, so nobody (this relay included) can derive it again; the HMAC lets a
  // listener refuse made-up secrets without asking the database. 44 characters.
  std::string issue_capability() const;
  // True when `secret` is a capability this region secret issued (whether or not its
  // registration still exists). Constant time in the tag.
  bool issued(std::string_view secret) const;

  // 80 bytes for TLS session tickets of `period` (a number every instance computes alike from
  // the clock): key name (16), AES-256 key (32), HMAC-SHA256 key (32).
  SecretBytes ticket_key_material(std::uint64_t period) const;

 private:
  RegionSecret() = default;
  static Result<RegionSecret> parse(std::string_view text, const std::string& source);

  SecretBytes mailbox_key_;
  SecretBytes callback_key_;
  SecretBytes capability_key_;
  SecretBytes ticket_key_;
};

}  // namespace mp::keys
