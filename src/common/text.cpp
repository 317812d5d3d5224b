// Text checks: UTF-8 well-formedness and ASCII character classes.
#include "common/text.hpp"

#include <algorithm>

namespace mp {

bool is_valid_utf8(std::string_view text) noexcept {
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t len = utf8_sequence_at(text, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

bool is_printable_ascii(std::string_view text) noexcept {
  return std::all_of(text.begin(), text.end(), [](char c) { return is_printable_ascii(c); });
}

bool is_visible_ascii(std::string_view text) noexcept {
  return std::all_of(text.begin(), text.end(), [](char c) { return is_visible_ascii(c); });
}

bool has_ascii_control(std::string_view text) noexcept {
  return std::any_of(text.begin(), text.end(), [](char c) { return is_ascii_control(c); });
}

std::string printable_ascii(std::string_view text, std::size_t max_chars) {
  std::string out(text.substr(0, max_chars));
  for (char& c : out) {
    if (!is_printable_ascii(c)) c = '?';
  }
  return out;
}

std::string_view trim_spaces_and_tabs(std::string_view text) noexcept {
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  while (!text.empty() && blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && blank(text.back())) text.remove_suffix(1);
  return text;
}

}  // namespace mp
