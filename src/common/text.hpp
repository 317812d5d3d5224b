// Checks on untrusted text, each defined once: well-formed UTF-8, printable and visible ASCII,
// ASCII control characters; trimming of spaces and tabs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mp {

// The length (1 to 4) of the well-formed UTF-8 sequence starting at `pos`, or 0 when there is
// none: a continuation byte, an overlong form, a surrogate (U+D800 to U+DFFF), a code point
// above U+10FFFF, a sequence cut short by the end of `text`, or `pos` past the end (RFC 3629).
// Inline because the EWS pre-scan calls it for every non-ASCII character of a body.
inline std::size_t utf8_sequence_at(std::string_view text, std::size_t pos) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  if (pos >= n) return 0;
  const unsigned char c = p[pos];
  if (c < 0x80) return 1;
  std::size_t len = 0;
  unsigned char lo = 0x80;  // the range of the second byte
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // overlong
    if (c == 0xED) hi = 0x9F;  // surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // overlong
    if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;  // continuation byte, C0/C1 overlong lead, or F5..FF
  }
  if (n - pos < len || p[pos + 1] < lo || p[pos + 1] > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if ((p[pos + k] & 0xC0) != 0x80) return 0;
  }
  return len;
}

// True when all of `text` is well-formed UTF-8 (see utf8_sequence_at); true for "".
bool is_valid_utf8(std::string_view text) noexcept;

// ' ' to '~' (0x20 to 0x7E).
constexpr bool is_printable_ascii(char c) noexcept {
  return c >= 0x20 && c <= 0x7E;
}
// '!' to '~' (0x21 to 0x7E): printable ASCII without the space, as in the identifiers Exchange
// issues (SubscriptionId, Watermark, FolderId).
constexpr bool is_visible_ascii(char c) noexcept {
  return c > 0x20 && c <= 0x7E;
}
// A C0 control (0x00 to 0x1F) or DEL (0x7F); bytes from 0x80 up are not.
constexpr bool is_ascii_control(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7F;
}

// Every byte of `text` passes; true for "".
bool is_printable_ascii(std::string_view text) noexcept;
bool is_visible_ascii(std::string_view text) noexcept;
// Some byte of `text` is an ASCII control character.
bool has_ascii_control(std::string_view text) noexcept;

// `text` without the spaces and tabs at either end (HTTP's optional whitespace, RFC 9110 5.6.3;
// also the linear white space of a multipart part's headers). CR and LF stay.
std::string_view trim_spaces_and_tabs(std::string_view text) noexcept;

// The first `max_chars` bytes of `text`, each byte that is not printable ASCII replaced by '?':
// untrusted text made safe to quote in a log line or a message.
std::string printable_ascii(std::string_view text, std::size_t max_chars);

}  // namespace mp
