// The checks that run on an untrusted body before tinyxml2 sees it: size, DTDs, UTF-8, the XML
// declaration, and a one-pass structural pre-scan for depth, element count and the
// well-formedness faults tinyxml2 tolerates.
#include "ews/xml_guard.hpp"

#include <cstdint>
#include <cstring>
#include <string>

#include "common/text.hpp"

namespace mp::ews::detail {
namespace {

using std::size_t;

constexpr std::string_view kBom = "\xEF\xBB\xBF";

ParseError refuse(Refusal refusal, std::string message) {
  return ParseError{refusal, std::move(message)};
}

bool is_xml_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

bool is_ascii_alpha(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool is_name_start(char c) noexcept {
  return is_ascii_alpha(c) || c == '_' || c == ':' || static_cast<unsigned char>(c) >= 0x80;
}

char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool starts_with_ci(std::string_view text, std::string_view lower_prefix) noexcept {
  if (text.size() < lower_prefix.size()) return false;
  for (size_t i = 0; i < lower_prefix.size(); ++i) {
    if (ascii_lower(text[i]) != lower_prefix[i]) return false;
  }
  return true;
}

// XML 1.0 Char production, for character references.
bool is_xml_char(std::uint32_t cp) noexcept {
  if (cp < 0x20) return cp == 0x9 || cp == 0xA || cp == 0xD;
  if (cp <= 0xD7FF) return true;
  if (cp < 0xE000) return false;
  if (cp <= 0xFFFD) return true;
  return cp >= 0x10000 && cp <= 0x10FFFF;
}

// Any DOCTYPE or ENTITY declaration, in any letter case and anywhere (comments included): a
// body that mentions one is not worth the risk.
// Searching for the rare '!' rather than the common '<' keeps this one fast memchr pass.
bool mentions_dtd(std::string_view body) noexcept {
  for (size_t i = body.find('!', 1); i != std::string_view::npos; i = body.find('!', i + 1)) {
    if (body[i - 1] != '<') continue;
    const std::string_view rest = body.substr(i + 1);
    if (starts_with_ci(rest, "doctype") || starts_with_ci(rest, "entity")) return true;
  }
  return false;
}

struct Utf8Findings {
  std::optional<size_t> invalid_at;       // first byte of an ill-formed sequence
  std::optional<size_t> non_xml_char_at;  // first well-formed code point XML forbids
};

Utf8Findings scan_utf8(std::string_view text) noexcept {
  Utf8Findings found;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Eight printable ASCII bytes at a time: no high bit set and none below 0x20.
    if (i + 8 <= n) {
      std::uint64_t w;
      std::memcpy(&w, p + i, 8);
      constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
      constexpr std::uint64_t kSpace = 0x2020202020202020ULL;
      if (((w | (w - kSpace)) & kHigh) == 0) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && !found.non_xml_char_at) {
        found.non_xml_char_at = i;
      }
      ++i;
      continue;
    }
    const size_t len = utf8_sequence_at(text, i);
    if (len == 0) {
      found.invalid_at = i;
      return found;
    }
    // U+FFFE and U+FFFF are well-formed UTF-8 but not XML characters.
    if (c == 0xEF && p[i + 1] == 0xBF && p[i + 2] >= 0xBE && !found.non_xml_char_at) {
      found.non_xml_char_at = i;
    }
    i += len;
  }
  return found;
}

// Parses `Eq quoted-value` at `pos`; returns the value and moves `pos` past the closing quote.
std::optional<std::string_view> decl_value(std::string_view s, size_t& pos) {
  while (pos < s.size() && is_xml_space(s[pos])) ++pos;
  if (pos >= s.size() || s[pos] != '=') return std::nullopt;
  ++pos;
  while (pos < s.size() && is_xml_space(s[pos])) ++pos;
  if (pos >= s.size() || (s[pos] != '"' && s[pos] != '\'')) return std::nullopt;
  const char quote = s[pos];
  const size_t close = s.find(quote, pos + 1);
  if (close == std::string_view::npos) return std::nullopt;
  const std::string_view value = s.substr(pos + 1, close - pos - 1);
  pos = close + 1;
  return value;
}

// XMLDecl ::= '<?xml' VersionInfo EncodingDecl? SDDecl? S? '?>', checked strictly because
// tinyxml2 accepts any text there (e.g. version="1.0 (http://…)").
std::optional<ParseError> check_xml_declaration(std::string_view s) {
  if (!s.starts_with("<?xml") || s.size() < 6 || !(is_xml_space(s[5]) || s[5] == '?')) {
    return std::nullopt;  // no declaration (or another PI, which the pre-scan judges)
  }
  const auto bad = [] {
    return refuse(Refusal::malformed_xml, "the XML declaration is not well-formed");
  };
  size_t pos = 5;
  bool saw_version = false;
  bool saw_encoding = false;
  bool saw_standalone = false;
  while (true) {
    const size_t before_space = pos;
    while (pos < s.size() && is_xml_space(s[pos])) ++pos;
    if (s.substr(pos).starts_with("?>")) break;
    if (pos == before_space) return bad();  // pseudo-attributes need whitespace before them
    const std::string_view rest = s.substr(pos);
    if (!saw_version && rest.starts_with("version")) {
      pos += 7;
      const auto value = decl_value(s, pos);
      if (!value || value->size() < 3 || !value->starts_with("1.") ||
          value->substr(2).find_first_not_of("0123456789") != std::string_view::npos) {
        return bad();
      }
      saw_version = true;
    } else if (saw_version && !saw_encoding && !saw_standalone && rest.starts_with("encoding")) {
      pos += 8;
      const auto value = decl_value(s, pos);
      if (!value) return bad();
      if (value->size() != 5 || !starts_with_ci(*value, "utf-8")) {
        return refuse(Refusal::malformed_xml,
                      "the XML declaration names an encoding other than UTF-8; EWS push bodies "
                      "must be UTF-8");
      }
      saw_encoding = true;
    } else if (saw_version && !saw_standalone && rest.starts_with("standalone")) {
      pos += 10;
      const auto value = decl_value(s, pos);
      if (!value || (*value != "yes" && *value != "no")) return bad();
      saw_standalone = true;
    } else {
      return bad();
    }
  }
  if (!saw_version) return bad();
  return std::nullopt;
}

// The structural pre-scan: one pass over the markup that skips comments, CDATA, processing
// instructions and quoted attribute values. Limits are refused at once; well-formedness
// faults are remembered and reported only if no limit trips, to keep the documented order.
class Prescan {
 public:
  Prescan(std::string_view doc, const ParseLimits& limits) : s_(doc), limits_(limits) {}

  std::optional<ParseError> run() {
    size_t i = 0;
    const size_t n = s_.size();
    while (i < n) {
      const size_t lt = scan_text(i);
      if (lt >= n) break;
      if (too_long_) return too_long_;
      const char next = lt + 1 < n ? s_[lt + 1] : '\0';
      if (next == '!') {
        i = skip_markup_declaration(lt);
      } else if (next == '?') {
        i = skip_processing_instruction(lt);
      } else if (next == '/') {
        i = skip_end_tag(lt);
      } else if (is_name_start(next)) {
        if (++elements_ > limits_.max_elements) {
          return refuse(
              Refusal::too_many_elements,
              "the body has more than " + std::to_string(limits_.max_elements) + " elements");
        }
        if (depth_ == 0 && root_closed_) note("more than one root element");
        bool self_closing = false;
        size_t attributes = 0;
        i = scan_start_tag(lt, self_closing, attributes);
        if (too_long_) return too_long_;
        if (attributes > kMaxAttributesPerElement) {
          return refuse(Refusal::too_many_elements, "an element has more than " +
                                                        std::to_string(kMaxAttributesPerElement) +
                                                        " attributes");
        }
        if (depth_ + 1 > limits_.max_depth) {
          return refuse(Refusal::too_deep, "elements nest deeper than " +
                                               std::to_string(limits_.max_depth) + " levels");
        }
        if (self_closing) {
          if (depth_ == 0) root_closed_ = true;
        } else {
          ++depth_;
        }
      } else {
        note("'<' not followed by a name at byte offset " + std::to_string(lt));
        i = lt + 1;
      }
    }
    if (too_long_) return too_long_;
    if (!fault_ && elements_ == 0) note("the body holds no XML element");
    if (!fault_ && depth_ != 0) note("the body ends before its elements are closed");
    if (fault_) return refuse(Refusal::malformed_xml, *fault_);
    return std::nullopt;
  }

 private:
  void note(std::string message) {
    if (!fault_) fault_ = std::move(message);
  }

  // A limit, refused at once (unlike faults): `what` of `length` bytes at byte offset `at`.
  void check_length(size_t length, const char* what, size_t at) {
    if (length <= limits_.max_value_bytes || too_long_) return;
    too_long_ = refuse(Refusal::value_too_long,
                       std::string(what) + " at byte offset " + std::to_string(at) + " is " +
                           std::to_string(length) + " bytes; the limit is " +
                           std::to_string(limits_.max_value_bytes));
  }

  // Character data up to the next '<': references must be well-formed, and outside the root
  // element only whitespace may appear. Returns the position of '<' or the end.
  size_t scan_text(size_t from) {
    const size_t lt = std::min(s_.find('<', from), s_.size());
    check_length(lt - from, "a text", from);
    check_references(from, lt);
    if (depth_ == 0) {
      for (size_t k = from; k < lt; ++k) {
        if (!is_xml_space(s_[k])) {
          note("text outside the root element at byte offset " + std::to_string(k));
          break;
        }
      }
    }
    return lt;
  }

  // '&' must start &lt; &gt; &amp; &apos; &quot; or a character reference to an XML Char;
  // there is no DTD, so every other entity is undeclared.
  void check_references(size_t from, size_t to) {
    const std::string_view run = s_.substr(from, to - from);
    for (size_t k = run.find('&'); k != std::string_view::npos; k = run.find('&', k + 1)) {
      const size_t amp = from + k;
      if (!valid_reference(amp, to)) {
        note("a malformed or undeclared entity reference at byte offset " + std::to_string(amp));
        return;
      }
    }
  }

  bool valid_reference(size_t amp, size_t to) const {
    const std::string_view ref = s_.substr(amp + 1, to - amp - 1);
    if (ref.starts_with('#')) {
      const bool hex = ref.size() > 1 && ref[1] == 'x';
      size_t k = hex ? 2 : 1;
      std::uint32_t cp = 0;
      size_t digits = 0;
      for (; k < ref.size() && ref[k] != ';'; ++k, ++digits) {
        const char c = ref[k];
        std::uint32_t d = 0;
        if (c >= '0' && c <= '9') {
          d = static_cast<std::uint32_t>(c - '0');
        } else if (hex && c >= 'a' && c <= 'f') {
          d = static_cast<std::uint32_t>(c - 'a' + 10);
        } else if (hex && c >= 'A' && c <= 'F') {
          d = static_cast<std::uint32_t>(c - 'A' + 10);
        } else {
          return false;
        }
        cp = cp * (hex ? 16 : 10) + d;
        if (cp > 0x10FFFF) return false;
      }
      return digits > 0 && k < ref.size() && is_xml_char(cp);
    }
    for (std::string_view name : {"lt;", "gt;", "amp;", "apos;", "quot;"}) {
      if (ref.starts_with(name)) return true;
    }
    return false;
  }

  // '<!' starts a comment or a CDATA section; anything else would be DTD markup, which has no
  // place in a document without a DTD.
  size_t skip_markup_declaration(size_t lt) {
    const std::string_view rest = s_.substr(lt);
    if (rest.starts_with("<!--")) return skip_past(lt + 4, "-->", "an unterminated comment");
    if (rest.starts_with("<![CDATA[")) {
      if (depth_ == 0) note("a CDATA section outside the root element");
      return skip_past(lt + 9, "]]>", "an unterminated CDATA section");
    }
    note("markup declaration '<!' outside a DTD at byte offset " + std::to_string(lt));
    return skip_past(lt + 2, ">", "an unterminated markup declaration");
  }

  size_t skip_processing_instruction(size_t lt) {
    size_t end = lt + 2;
    while (end < s_.size() && !is_xml_space(s_[end]) && s_[end] != '?') ++end;
    const std::string_view target = s_.substr(lt + 2, end - lt - 2);
    if (target.empty()) {
      note("a processing instruction without a target at byte offset " + std::to_string(lt));
    } else if (target.size() == 3 && starts_with_ci(target, "xml") && lt != 0) {
      note("an XML declaration that is not at the start of the body");
    }
    return skip_past(lt + 2, "?>", "an unterminated processing instruction");
  }

  size_t skip_end_tag(size_t lt) {
    if (depth_ == 0) {
      note("an end tag without a start tag at byte offset " + std::to_string(lt));
    } else if (--depth_ == 0) {
      root_closed_ = true;
    }
    return skip_past(lt + 2, ">", "an unterminated end tag");
  }

  // From '<' of a start tag to just past its '>'; quoted values may hold '>' and '/'.
  // Counts the attributes (quoted values) and stops at one past kMaxAttributesPerElement.
  size_t scan_start_tag(size_t lt, bool& self_closing, size_t& attributes) {
    attributes = 0;
    for (size_t j = lt + 1; j < s_.size(); ++j) {
      const char c = s_[j];
      if (c == '"' || c == '\'') {
        if (++attributes > kMaxAttributesPerElement) return j;
        const size_t close = s_.find(c, j + 1);
        if (close == std::string_view::npos) break;
        check_length(close - j - 1, "an attribute value", j);
        if (s_.substr(j + 1, close - j - 1).find('<') != std::string_view::npos) {
          note("'<' inside an attribute value at byte offset " + std::to_string(j));
        }
        check_references(j + 1, close);
        j = close;
      } else if (c == '>') {
        self_closing = s_[j - 1] == '/';
        return j + 1;
      } else if (c == '<') {
        note("'<' inside a start tag at byte offset " + std::to_string(j));
        return j;
      }
    }
    note("an unterminated start tag at byte offset " + std::to_string(lt));
    return s_.size();
  }

  size_t skip_past(size_t from, std::string_view terminator, const char* what) {
    const size_t at = s_.find(terminator, from);
    if (at == std::string_view::npos) {
      note(std::string(what));
      return s_.size();
    }
    check_length(at - from, "a comment, CDATA section or markup", from);
    return at + terminator.size();
  }

  std::string_view s_;
  const ParseLimits& limits_;
  std::size_t depth_ = 0;
  std::size_t elements_ = 0;
  bool root_closed_ = false;
  std::optional<std::string> fault_;
  std::optional<ParseError> too_long_;
};

}  // namespace

std::optional<ParseError> check_untrusted_xml(std::string_view body, const ParseLimits& limits) {
  if (body.size() > limits.max_bytes) {
    return refuse(Refusal::too_large, "the body is " + std::to_string(body.size()) +
                                          " bytes; the limit is " +
                                          std::to_string(limits.max_bytes));
  }
  if (body.empty()) return refuse(Refusal::malformed_xml, "the body is empty");
  if (mentions_dtd(body)) {
    return refuse(Refusal::doctype,
                  "the body contains a DOCTYPE or ENTITY declaration; DTDs and entities are "
                  "refused");
  }
  const Utf8Findings utf8 = scan_utf8(body);
  if (utf8.invalid_at) {
    return refuse(Refusal::invalid_utf8,
                  "the body is not valid UTF-8 at byte offset " + std::to_string(*utf8.invalid_at));
  }
  const std::string_view doc = body.starts_with(kBom) ? body.substr(kBom.size()) : body;
  if (auto declaration = check_xml_declaration(doc)) return declaration;
  auto structural = Prescan(doc, limits).run();
  if (structural && structural->refusal != Refusal::malformed_xml) return structural;
  if (utf8.non_xml_char_at) {
    return refuse(Refusal::malformed_xml, "a character XML does not allow at byte offset " +
                                              std::to_string(*utf8.non_xml_char_at));
  }
  return structural;
}

}  // namespace mp::ews::detail
