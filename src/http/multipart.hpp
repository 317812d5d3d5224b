// A multipart/form-data parser (RFC 7578 over RFC 2046) for the portal's certificate upload:
// pure, whole body in, parts out, every refusal a reason that never quotes a field's value.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace mp::http {

struct FormPart {
  std::string name;                     // from Content-Disposition; never empty
  std::optional<std::string> filename;  // `filename=` as sent; `filename*=` is not read
  std::string content_type;             // as sent, trimmed; "text/plain" when absent (RFC 7578)
  std::string data;                     // byte-exact
};

struct MultipartLimits {
  std::size_t max_parts = 16;
  std::size_t max_part_bytes = 256 * 1024;  // one part's data
  std::size_t max_header_bytes = 4096;      // one part's header block, CRLFs included
  std::size_t max_name_bytes = 128;         // a field name
};

// Parses a whole multipart/form-data body given the request's Content-Type value. Refuses with
// Errc::invalid_argument and a message a person can act on; messages may name a field (names are
// not secret) but never contain a value, a filename or body bytes.
//
// Accepted: a boundary quoted or not (RFC 2046: 1-70 characters of its alphabet, no trailing
// space); a preamble before the first delimiter and an epilogue after the close delimiter
// (both ignored); spaces or tabs after a delimiter; quoted parameter values with backslash
// escapes; case-insensitive header and parameter names; an empty form. "\r\n--boundary" followed
// by anything but "--", a space, a tab, CR or LF is data: it is a different, longer string.
Result<std::vector<FormPart>> parse_multipart(std::string_view content_type, std::string_view body,
                                              const MultipartLimits& limits = {});

// The part named exactly `name` (names are unique in a parsed form), or null.
const FormPart* find_part(const std::vector<FormPart>& parts, std::string_view name);

}  // namespace mp::http
