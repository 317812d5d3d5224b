// multipart/form-data parsing: the boundary from the Content-Type, then one linear pass over the
// body (delimiter, part headers, part data, next delimiter).
#include "http/multipart.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/text.hpp"

namespace mp::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";
// The one message for LF-only (or CR-only) line endings, wherever they are met.
constexpr std::string_view kNeedCrlf = "lines must end with CRLF";
constexpr std::string_view kTruncated =
    "the body ends before the closing boundary delimiter; the upload looks truncated";

Error refuse(std::string message) {
  return make_error(Errc::invalid_argument, std::move(message));
}

bool is_lwsp(char c) {
  return c == ' ' || c == '\t';
}
bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
char to_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return to_lower(x) == to_lower(y);
         });
}

// RFC 9110 tchar: what header and parameter names are made of.
bool is_tchar(char c) {
  return is_alnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 2046 bcharsnospace.
bool is_boundary_char(char c) {
  return is_alnum(c) || std::string_view("'()+_,-./:=?").find(c) != std::string_view::npos;
}

struct Parameter {
  std::string name;  // lower case
  std::string value;
};

// Parses "; a=b; c="d \"e\"" (RFC 2045 parameters, names case-insensitive). Inside quotes a
// backslash escapes only '"' and '\': browsers send Windows paths ("C:\fakepath\x.p12") with
// bare backslashes, which would otherwise lose them. `what` names the header in messages;
// nothing of the input is ever quoted.
Result<std::vector<Parameter>> parse_parameters(std::string_view s, const std::string& what) {
  std::vector<Parameter> out;
  std::size_t i = 0;
  const auto skip_lwsp = [&] {
    while (i < s.size() && is_lwsp(s[i])) ++i;
  };
  for (;;) {
    skip_lwsp();
    if (i == s.size()) return out;
    if (s[i] != ';') return refuse(what + " has bytes where a ';' should separate parameters");
    ++i;
    skip_lwsp();
    if (i == s.size() || s[i] == ';') continue;  // an empty parameter is harmless
    const std::size_t name_start = i;
    while (i < s.size() && is_tchar(s[i])) ++i;
    if (i == name_start) return refuse(what + " has a parameter without a name");
    std::string name(s.substr(name_start, i - name_start));
    std::transform(name.begin(), name.end(), name.begin(), to_lower);
    skip_lwsp();
    if (i == s.size() || s[i] != '=') return refuse(what + " has a parameter without a value");
    ++i;
    skip_lwsp();
    std::string value;
    if (i < s.size() && s[i] == '"') {
      ++i;
      bool closed = false;
      while (i < s.size()) {
        const char c = s[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < s.size() && (s[i] == '"' || s[i] == '\\')) {
          value += s[i++];
        } else {
          value += c;
        }
      }
      if (!closed) return refuse(what + " has a quoted parameter value without its closing quote");
    } else {
      const std::size_t start = i;
      while (i < s.size()) {
        const char c = s[i];
        if (!is_visible_ascii(c) || c == ';' || c == '"') break;
        ++i;
      }
      if (i == start) return refuse(what + " has a parameter whose value is empty or malformed");
      value = s.substr(start, i - start);
    }
    for (const Parameter& p : out) {
      if (p.name == name) return refuse(what + " has the same parameter twice");
    }
    out.push_back(Parameter{std::move(name), std::move(value)});
  }
}

const Parameter* find_parameter(const std::vector<Parameter>& params, std::string_view name) {
  for (const Parameter& p : params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

Result<std::string> boundary_of(std::string_view content_type) {
  const std::size_t semicolon = content_type.find(';');
  if (!iequals(trim_spaces_and_tabs(content_type.substr(0, semicolon)), "multipart/form-data")) {
    return refuse("the Content-Type must be multipart/form-data");
  }
  auto params = parse_parameters(
      semicolon == std::string_view::npos ? std::string_view{} : content_type.substr(semicolon),
      "the Content-Type");
  if (!params) return std::move(params).error();
  const Parameter* boundary = find_parameter(*params, "boundary");
  if (boundary == nullptr) {
    return refuse("the Content-Type multipart/form-data has no boundary parameter");
  }
  const std::string& b = boundary->value;
  const bool valid_chars =
      std::all_of(b.begin(), b.end(), [](char c) { return c == ' ' || is_boundary_char(c); });
  if (b.empty() || b.size() > 70 || !valid_chars || b.back() == ' ') {
    return refuse(
        "the boundary in the Content-Type must be 1 to 70 letters, digits, spaces or "
        "'()+_,-./:=? and must not end with a space (RFC 2046)");
  }
  return b;
}

enum class Kind { not_delimiter, part, close };
struct Delimiter {
  Kind kind = Kind::not_delimiter;
  std::size_t next = 0;  // after the delimiter line: the next part's headers, or the epilogue
};

// Decides what "--boundary" followed by body[pos...] is (RFC 2046 5.1.1): the boundary, optional
// spaces or tabs and CRLF start a part; the boundary and "--" end the form. After the boundary
// any other byte (or a single '-') makes a longer string, which is data, not a delimiter.
Result<Delimiter> read_delimiter_tail(std::string_view body, std::size_t pos) {
  if (pos == body.size()) return refuse(std::string(kTruncated));
  if (body[pos] == '-') {
    if (pos + 1 == body.size()) return refuse(std::string(kTruncated));
    if (body[pos + 1] != '-') return Delimiter{};
    pos += 2;
    while (pos < body.size() && is_lwsp(body[pos])) ++pos;
    if (pos == body.size()) return Delimiter{Kind::close, pos};
    if (body.compare(pos, kCrlf.size(), kCrlf) == 0) return Delimiter{Kind::close, pos + 2};
    if (body[pos] == '\n' || body[pos] == '\r') return refuse(std::string(kNeedCrlf));
    return refuse(
        "bytes follow the closing boundary delimiter on its line; only an epilogue on the "
        "following lines may come after it");
  }
  if (!is_lwsp(body[pos]) && body[pos] != '\r' && body[pos] != '\n') return Delimiter{};
  while (pos < body.size() && is_lwsp(body[pos])) ++pos;
  if (body.compare(pos, kCrlf.size(), kCrlf) == 0) return Delimiter{Kind::part, pos + 2};
  if (pos == body.size() || (body[pos] == '\r' && pos + 1 == body.size())) {
    return refuse(std::string(kTruncated));
  }
  if (body[pos] == '\n' || body[pos] == '\r') return refuse(std::string(kNeedCrlf));
  return refuse("a boundary delimiter line has bytes after the boundary");
}

// The next "\r\n--boundary" at or after `from`, or npos. Linear, whatever the input: the pattern
// holds one CR, its first byte (CR is not a boundary character), so a partial match of k bytes
// from one CR means the next CR is at least k bytes further; each byte is compared O(1) times.
std::size_t find_delimiter(std::string_view body, std::size_t from, std::string_view pattern) {
  while (from < body.size()) {
    const void* hit = std::memchr(body.data() + from, '\r', body.size() - from);
    if (hit == nullptr) return std::string_view::npos;
    const auto at = static_cast<std::size_t>(static_cast<const char*>(hit) - body.data());
    std::size_t k = 1;
    while (k < pattern.size() && at + k < body.size() && body[at + k] == pattern[k]) ++k;
    if (k == pattern.size()) return at;
    from = at + 1;
  }
  return std::string_view::npos;
}

std::string part_label(std::size_t index) {
  return "part " + std::to_string(index);
}

// How a message names a part: by its field name when that is plain printable ASCII (names are
// not secret), else by position, so that no control byte or quote reaches a log line.
std::string describe(const std::string& name, std::size_t index) {
  const bool printable = is_printable_ascii(name) && name.find_first_of("'\\") == std::string::npos;
  return printable ? "field '" + name + "'" : part_label(index);
}

Status read_disposition(std::string_view value, std::size_t index, const MultipartLimits& limits,
                        FormPart& part) {
  const std::size_t semicolon = value.find(';');
  if (!iequals(trim_spaces_and_tabs(value.substr(0, semicolon)), "form-data")) {
    return refuse("the Content-Disposition of " + part_label(index) + " must be form-data");
  }
  auto params = parse_parameters(
      semicolon == std::string_view::npos ? std::string_view{} : value.substr(semicolon),
      "the Content-Disposition of " + part_label(index));
  if (!params) return std::move(params).error();
  const Parameter* name = find_parameter(*params, "name");
  if (name == nullptr) {
    return refuse("the Content-Disposition of " + part_label(index) + " has no name parameter");
  }
  if (name->value.empty()) return refuse(part_label(index) + " has an empty name");
  if (name->value.size() > limits.max_name_bytes) {
    return refuse("the name of " + part_label(index) + " is longer than " +
                  std::to_string(limits.max_name_bytes) + " bytes");
  }
  part.name = name->value;
  // `filename*` (RFC 5987) is a parameter of its own name and is deliberately not read.
  if (const Parameter* filename = find_parameter(*params, "filename")) {
    part.filename = filename->value;
  }
  return {};
}

struct PartHead {
  FormPart part;  // without data
  std::size_t data_start = 0;
  std::size_t search_from = 0;  // the blank line's CRLF: an empty part's delimiter may reuse it
};

// Reads the header lines of part `index` starting at `start`, up to and including the blank line.
Result<PartHead> read_part_headers(std::string_view body, std::size_t start, std::size_t index,
                                   const MultipartLimits& limits) {
  PartHead head;
  bool have_disposition = false;
  bool have_type = false;
  const bool within_limit = body.size() - start <= limits.max_header_bytes;
  const std::size_t window_end = within_limit ? body.size() : start + limits.max_header_bytes;
  std::size_t pos = start;
  for (;;) {
    const void* hit = std::memchr(body.data() + pos, '\n', window_end - pos);
    if (hit == nullptr) {
      if (within_limit) return refuse("the body ends inside the headers of " + part_label(index));
      return refuse("the headers of " + part_label(index) + " are longer than " +
                    std::to_string(limits.max_header_bytes) + " bytes");
    }
    const auto newline = static_cast<std::size_t>(static_cast<const char*>(hit) - body.data());
    if (newline == pos || body[newline - 1] != '\r') return refuse(std::string(kNeedCrlf));
    const std::string_view line = body.substr(pos, newline - 1 - pos);
    if (line.empty()) {
      head.search_from = pos;
      head.data_start = newline + 1;
      break;
    }
    for (const char c : line) {
      if (c == '\r') return refuse(std::string(kNeedCrlf));
      if (is_ascii_control(c) && c != '\t') {
        return refuse("the headers of " + part_label(index) + " hold a control character");
      }
    }
    // Checked before the line is read, so that the refusal names the folding and not the half
    // header it leaves.
    if (is_lwsp(line.front()) || (newline + 1 < window_end && is_lwsp(body[newline + 1]))) {
      return refuse(part_label(index) +
                    " has a folded header line (one that starts with a space or tab)");
    }
    const std::size_t colon = line.find(':');
    const std::string_view name = line.substr(0, colon);
    if (colon == std::string_view::npos || name.empty() ||
        !std::all_of(name.begin(), name.end(), is_tchar)) {
      return refuse(part_label(index) + " has a header line that is not \"Name: value\"");
    }
    const std::string_view value = trim_spaces_and_tabs(line.substr(colon + 1));
    if (iequals(name, "Content-Disposition")) {
      if (have_disposition) {
        return refuse(part_label(index) + " has more than one Content-Disposition header");
      }
      have_disposition = true;
      if (auto status = read_disposition(value, index, limits, head.part); !status) {
        return std::move(status).error();
      }
    } else if (iequals(name, "Content-Type")) {
      if (have_type) return refuse(part_label(index) + " has more than one Content-Type header");
      if (value.empty()) return refuse(part_label(index) + " has an empty Content-Type header");
      have_type = true;
      head.part.content_type = value;
    } else if (iequals(name, "Content-Transfer-Encoding")) {
      // RFC 7578 deprecates it; an encoded certificate would otherwise arrive as its encoding.
      if (!iequals(value, "binary") && !iequals(value, "8bit") && !iequals(value, "7bit")) {
        return refuse(part_label(index) +
                      " has a Content-Transfer-Encoding other than binary, 8bit or 7bit, "
                      "which is not supported");
      }
    }
    // Other headers mean nothing to form-data (RFC 7578 4.8) and are ignored.
    pos = newline + 1;
  }
  if (!have_disposition) {
    return refuse(part_label(index) + " has no Content-Disposition: form-data header");
  }
  if (!have_type) head.part.content_type = "text/plain";
  return head;
}

}  // namespace

Result<std::vector<FormPart>> parse_multipart(std::string_view content_type, std::string_view body,
                                              const MultipartLimits& limits) {
  auto boundary = boundary_of(content_type);
  if (!boundary) return std::move(boundary).error();
  const std::string delimiter = "\r\n--" + *boundary;
  const std::string_view dash_boundary = std::string_view(delimiter).substr(kCrlf.size());

  // The first delimiter may open the body or follow a preamble (which is ignored).
  Delimiter next;
  if (body.starts_with(dash_boundary)) {
    auto tail = read_delimiter_tail(body, dash_boundary.size());
    if (!tail) return std::move(tail).error();
    next = *tail;
  }
  for (std::size_t from = 0; next.kind == Kind::not_delimiter;) {
    const std::size_t at = find_delimiter(body, from, delimiter);
    if (at == std::string_view::npos) {
      if (body.find("\n" + std::string(dash_boundary)) != std::string_view::npos) {
        return refuse(std::string(kNeedCrlf));
      }
      return refuse(
          "the body has no opening boundary delimiter (a line of \"--\" and the boundary from "
          "the Content-Type)");
    }
    auto tail = read_delimiter_tail(body, at + delimiter.size());
    if (!tail) return std::move(tail).error();
    next = *tail;
    from = at + 1;
  }

  std::vector<FormPart> parts;
  while (next.kind == Kind::part) {
    const std::size_t index = parts.size() + 1;
    if (parts.size() >= limits.max_parts) {
      return refuse("the form has more than " + std::to_string(limits.max_parts) + " parts");
    }
    auto head = read_part_headers(body, next.next, index, limits);
    if (!head) return std::move(head).error();
    FormPart& part = head->part;
    if (find_part(parts, part.name) != nullptr) {
      return refuse(describe(part.name, index) + " appears more than once in the form");
    }
    const auto too_large = [&] {
      return refuse(describe(part.name, index) + " is larger than " +
                    std::to_string(limits.max_part_bytes) + " bytes");
    };
    const std::size_t data_start = head->data_start;
    std::size_t data_end = 0;
    for (std::size_t from = head->search_from;;) {
      const std::size_t at = find_delimiter(body, from, delimiter);
      const std::size_t seen_end = at == std::string_view::npos ? body.size() : at;
      if (seen_end > data_start && seen_end - data_start > limits.max_part_bytes) {
        return too_large();
      }
      if (at == std::string_view::npos) return refuse(std::string(kTruncated));
      auto tail = read_delimiter_tail(body, at + delimiter.size());
      if (!tail) return std::move(tail).error();
      if (tail->kind != Kind::not_delimiter) {
        next = *tail;
        data_end = std::max(at, data_start);  // `at` is before data_start for an empty part
        break;
      }
      from = at + 1;
    }
    part.data.assign(body.substr(data_start, data_end - data_start));
    parts.push_back(std::move(part));
  }
  // After the close delimiter comes only the epilogue, which read_delimiter_tail checked starts
  // on a line of its own and which carries nothing.
  return parts;
}

const FormPart* find_part(const std::vector<FormPart>& parts, std::string_view name) {
  for (const FormPart& part : parts) {
    if (part.name == name) return &part;
  }
  return nullptr;
}

}  // namespace mp::http
