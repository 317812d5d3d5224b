// KeyRing: parsing and checking the region key file.
#include "keys/key_ring.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <map>
#include <system_error>
#include <utility>

namespace mp::keys {
namespace {

constexpr const char* kLineForm = "expected 'kek <id> <base64 of 32 bytes> [active]'";

bool is_id_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict standard base64 (padded, canonical): `openssl rand -base64 32` writes exactly this, and
// a key that only decodes leniently was damaged on the way into the file.
Result<SecretBytes> decode_strict_base64(std::string_view text) {
  const Error bad{Errc::invalid_argument, "the key is not valid base64"};
  if (text.empty() || text.size() % 4 != 0) return bad;
  std::size_t padding = 0;
  while (padding < 2 && text[text.size() - 1 - padding] == '=') ++padding;
  const std::string_view body = text.substr(0, text.size() - padding);
  SecretBytes out(text.size() / 4 * 3 - padding);
  std::uint32_t bits = 0;
  int bit_count = 0;
  std::size_t n = 0;
  for (char c : body) {
    const int v = base64_value(c);
    if (v < 0) return bad;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      out.data()[n++] = static_cast<std::uint8_t>(bits >> bit_count);
      bits &= (1u << bit_count) - 1;
    }
  }
  // An encoder leaves the unused low bits zero; other bits mean the text was damaged.
  if (bits != 0 || n != out.size()) return bad;
  return out;
}

bool all_zero(const SecretBytes& key) noexcept {
  return std::all_of(key.data(), key.data() + key.size(), [](std::uint8_t b) { return b == 0; });
}

// Closes the descriptor on every path.
struct FileDescriptor {
  int fd = -1;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
};

std::string octal_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string errno_text(int err) {
  return std::error_code(err, std::generic_category()).message();
}

}  // namespace

bool is_valid_kek_id(std::string_view id) noexcept {
  return !id.empty() && id.size() <= kMaxKekIdChars &&
         std::all_of(id.begin(), id.end(), is_id_char);
}

// Refusals say the line number and the rule broken, never the line: its words may be key bytes.
Result<KeyRing> KeyRing::parse(std::string_view text, const std::string& source) {
  const auto refuse = [&](std::size_t line_number, const std::string& why) {
    return make_error(Errc::invalid_argument,
                      source + ", line " + std::to_string(line_number) + ": " + why);
  };

  KeyRing ring;
  std::map<std::string, std::size_t, std::less<>> line_of_id;
  std::size_t active_line = 0;
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
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // edited on Windows
    const std::vector<std::string_view> words = detail::split_words(line);
    if (words.empty()) continue;

    if (words[0] != "kek" || words.size() < 3 || words.size() > 4) {
      return refuse(line_number, kLineForm);
    }
    if (words.size() == 4 && words[3] != "active") {
      return refuse(line_number, "the only word allowed after the key is 'active'");
    }
    const std::string_view id = words[1];
    if (!is_valid_kek_id(id)) {
      return refuse(line_number, "the key id must be 1 to 64 characters of A-Z a-z 0-9 . _ -");
    }
    if (const auto seen = line_of_id.find(id); seen != line_of_id.end()) {
      return refuse(line_number, "key id '" + std::string(id) + "' is already defined on line " +
                                     std::to_string(seen->second) + "; ids must be unique");
    }
    Result<SecretBytes> key = decode_strict_base64(words[2]);
    if (!key) {
      return refuse(line_number, key.error().message + " (" + kLineForm + ")");
    }
    if (key->size() != kKekBytes) {
      return refuse(line_number, "the key is " + std::to_string(key->size()) + " bytes; a KEK is " +
                                     std::to_string(kKekBytes) +
                                     " random bytes (create one with scripts/make-kek.sh)");
    }
    if (all_zero(*key)) {
      return refuse(line_number,
                    "the key is all zero bytes, a placeholder rather than a random key");
    }
    if (words.size() == 4) {
      if (active_line != 0) {
        return refuse(line_number, "a second key is marked 'active' (line " +
                                       std::to_string(active_line) +
                                       " is too); exactly one key wraps new data keys");
      }
      active_line = line_number;
      ring.active_id_ = std::string(id);
    }
    line_of_id.emplace(std::string(id), line_number);
    ring.keks_.push_back(Kek{std::string(id), std::move(*key)});
  }

  if (ring.keks_.empty()) {
    return make_error(Errc::invalid_argument,
                      source + " holds no key; create one with scripts/make-kek.sh");
  }
  if (active_line == 0) {
    if (ring.keks_.size() > 1) {
      return make_error(Errc::invalid_argument,
                        source + " holds " + std::to_string(ring.keks_.size()) +
                            " keys and none is marked 'active'; add 'active' at the end of the "
                            "line of the key that should wrap new data keys");
    }
    ring.active_id_ = ring.keks_.front().id;
  }
  std::sort(ring.keks_.begin(), ring.keks_.end(),
            [](const Kek& a, const Kek& b) { return a.id < b.id; });
  return ring;
}

Result<KeyRing> KeyRing::from_text(std::string_view text) {
  return parse(text, "key file");
}

namespace detail {

Status check_key_file_owner(unsigned owner, unsigned daemon, const std::string& source,
                            const std::filesystem::path& path) {
  if (owner == daemon || owner == 0) return {};
  return make_error(Errc::invalid_argument,
                    source + " is owned by uid " + std::to_string(owner) +
                        ", neither the daemon's user (uid " + std::to_string(daemon) +
                        ") nor root, so that user can change the region's keys; run: chown " +
                        std::to_string(daemon) + " " + path.string());
}

Result<SecretBytes> decode_base64(std::string_view text) {
  return decode_strict_base64(text);
}

Result<SecretBytes> read_key_file(const std::filesystem::path& path, const std::string& source,
                                  std::string_view make_script) {
  FileDescriptor file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY)};
  if (file.fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return make_error(Errc::not_found, source + " does not exist; create it with " +
                                             std::string(make_script) + " " + path.string() +
                                             " (or fix the path in the region config)");
    }
    return make_error(Errc::io, "cannot open " + source + ": " + errno_text(err) +
                                    " (it must be readable by the daemon's user)");
  }
  // Checked on the open descriptor, so the file checked is the file read.
  struct stat st {};
  if (::fstat(file.fd, &st) != 0) {
    return make_error(Errc::io, "cannot stat " + source + ": " + errno_text(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(Errc::invalid_argument, source + " is not a regular file");
  }
  // Like ssh with a private key: a key that others can read (or replace) is not a secret.
  if ((st.st_mode & 077) != 0) {
    return make_error(Errc::invalid_argument,
                      source + " has mode " + octal_mode(st.st_mode) +
                          ", so users other than its owner can read or change it; run: chmod "
                          "600 " +
                          path.string());
  }
  if (auto owner = check_key_file_owner(st.st_uid, ::geteuid(), source, path); !owner) {
    return std::move(owner).error();
  }
  if (static_cast<std::uintmax_t>(st.st_size) > kMaxKeyFileBytes) {
    return make_error(Errc::invalid_argument, source + " is " + std::to_string(st.st_size) +
                                                  " bytes; a key file is a few lines (at most " +
                                                  std::to_string(kMaxKeyFileBytes) +
                                                  " bytes), so this is the wrong file");
  }

  // The text holds key bytes, so it is read into a buffer that is wiped when it goes.
  SecretBytes buffer(kMaxKeyFileBytes + 1);
  std::size_t length = 0;
  while (length < buffer.size()) {
    const ssize_t n = ::read(file.fd, buffer.data() + length, buffer.size() - length);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(Errc::io, "cannot read " + source + ": " + errno_text(errno));
    if (n == 0) break;
    length += static_cast<std::size_t>(n);
  }
  if (length > kMaxKeyFileBytes) {
    return make_error(Errc::invalid_argument, source + " grew past " +
                                                  std::to_string(kMaxKeyFileBytes) +
                                                  " bytes while being read; a key file is a few "
                                                  "lines, so this is the wrong file");
  }
  return SecretBytes::copy_of(buffer.bytes().first(length));
}

std::vector<std::string_view> split_words(std::string_view line) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) words.push_back(line.substr(start, i - start));
  }
  return words;
}

}  // namespace detail

Result<KeyRing> KeyRing::load_file(const std::filesystem::path& path) {
  const std::string source = "key file " + path.string();
  auto text = detail::read_key_file(path, source, "scripts/make-kek.sh");
  if (!text) return std::move(text).error();
  return parse(text->view(), source);
}

bool KeyRing::has(std::string_view id) const noexcept {
  return find(id) != nullptr;
}

std::vector<std::string> KeyRing::ids() const {
  std::vector<std::string> out;
  out.reserve(keks_.size());
  for (const Kek& kek : keks_) out.push_back(kek.id);
  return out;
}

const SecretBytes* KeyRing::find(std::string_view id) const noexcept {
  const auto it =
      std::lower_bound(keks_.begin(), keks_.end(), id,
                       [](const Kek& kek, std::string_view key) { return kek.id < key; });
  return (it != keks_.end() && it->id == id) ? &it->key : nullptr;
}

}  // namespace mp::keys
