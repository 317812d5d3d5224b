// KeyRing: the region's key-encryption keys (KEKs), loaded from the key file named in the config.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/secret_bytes.hpp"

namespace mp::keys {

// A KEK is 32 random bytes (AES-256); ids are what the `credentials.kek_id` column holds.
inline constexpr std::size_t kKekBytes = 32;
inline constexpr std::size_t kMaxKekIdChars = 64;
// A key file is a few lines; anything larger is the wrong file and is refused before reading.
inline constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;

// True for 1..64 characters of [A-Za-z0-9._-]: safe in a log line, a file and an ascii column.
bool is_valid_kek_id(std::string_view id) noexcept;

namespace detail {
struct KekAccess;  // lets the envelope code (and only it) reach the key bytes
// load_file's owner rule, apart so that tests need not be root to give a file away: the key
// file must belong to the daemon's user or to root. `source` names the file in the message.
Status check_key_file_owner(unsigned owner, unsigned daemon, const std::string& source,
                            const std::filesystem::path& path);
// load_file's checks and read, shared with the region secret (keys/region_secret.hpp): a
// regular file, mode 0600 or stricter, owned by the daemon's user or root, at most
// kMaxKeyFileBytes; read into wiped memory. `source` names the file in messages ("key file
// /etc/mailpush/kek") and `make_script` is the script that creates one (for the missing-file
// message).
Result<SecretBytes> read_key_file(const std::filesystem::path& path, const std::string& source,
                                  std::string_view make_script);
// Strict, canonical, padded standard base64 (what `openssl rand -base64` writes); the error
// message never holds the text.
Result<SecretBytes> decode_base64(std::string_view text);
// The words of a key-file line, split on spaces and tabs.
std::vector<std::string_view> split_words(std::string_view line);
}  // namespace detail

// The key file, one key a line:
//
//   # comments start with '#', blank lines are ignored
//   kek <id> <base64 of 32 random bytes> [active]
//
// Several lines are several keys: rotation adds a new active key and keeps the old ones until
// every row has been re-wrapped. Exactly one key is `active` (it wraps new data keys); a file
// with a single key needs no mark. scripts/make-kek.sh writes and rotates these files.
//
// Immutable after loading, so one ring may be shared by any number of threads. Move-only, so
// the key bytes exist once in memory; they are wiped when the ring goes.
class KeyRing {
 public:
  // Reads the file and refuses it unless it is a regular file owned by this process's user (or
  // root) with no permission for group or others (like ssh), then parses it as from_text does.
  // Errors name the file, the line number and the rule broken; never a line or a key.
  static Result<KeyRing> load_file(const std::filesystem::path& path);
  // Parses key-file text without any file check; for tests and for callers that read the text
  // from elsewhere. The caller owns (and should wipe) `text`.
  static Result<KeyRing> from_text(std::string_view text);

  KeyRing(KeyRing&&) noexcept = default;
  KeyRing& operator=(KeyRing&&) noexcept = default;
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;
  ~KeyRing() = default;

  // The key that wraps new data keys.
  const std::string& active_id() const noexcept { return active_id_; }
  bool has(std::string_view id) const noexcept;
  // Every key id, sorted.
  std::vector<std::string> ids() const;
  std::size_t size() const noexcept { return keks_.size(); }

 private:
  friend struct detail::KekAccess;
  struct Kek {
    std::string id;
    SecretBytes key;
  };

  KeyRing() = default;
  // The parser behind from_text and load_file; `source` names the file in messages.
  static Result<KeyRing> parse(std::string_view text, const std::string& source);
  // The key bytes of `id`, or nullptr when the ring does not hold it.
  const SecretBytes* find(std::string_view id) const noexcept;

  std::vector<Kek> keks_;  // sorted by id
  std::string active_id_;
};

}  // namespace mp::keys
