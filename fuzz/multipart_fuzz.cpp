// libFuzzer target for the multipart/form-data parser: no crash, no sanitizer report, and for
// every input the invariants below hold. Input: the first line is the Content-Type, the rest the
// body; the whole input is also tried as a body under fixed boundaries (with a round trip: the
// parts written back as a form parse to the same parts), so that mutations spend
// their time on parts rather than on finding a valid Content-Type.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/multipart.hpp"

namespace {

using mp::http::FormPart;
using mp::http::MultipartLimits;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

std::string quote(std::string_view value) {
  std::string out = "\"";
  for (const char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Writes the parts back as a form under `boundary`; parsing that must give the same parts.
std::string encode(const std::vector<FormPart>& parts, std::string_view boundary) {
  std::string body;
  for (const FormPart& part : parts) {
    body += "--" + std::string(boundary) +
            "\r\nContent-Disposition: form-data; name=" + quote(part.name);
    if (part.filename) body += "; filename=" + quote(*part.filename);
    body += "\r\nContent-Type: " + part.content_type + "\r\n\r\n" + part.data + "\r\n";
  }
  return body + "--" + std::string(boundary) + "--\r\n";
}

// `boundary`, when the caller knows it exactly, turns on the round-trip check.
void check(std::string_view content_type, std::string_view body, const MultipartLimits& limits,
           std::string_view boundary = {}) {
  auto parsed = mp::http::parse_multipart(content_type, body, limits);
  if (!parsed) {
    const std::string& message = parsed.error().message;
    require(!message.empty());
    for (const char c : message) require(c >= 0x20 && c < 0x7F);  // never raw body bytes
    return;
  }
  const std::vector<FormPart>& parts = *parsed;
  require(parts.size() <= limits.max_parts);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const FormPart& part = parts[i];
    require(!part.name.empty() && part.name.size() <= limits.max_name_bytes);
    require(part.data.size() <= limits.max_part_bytes);
    require(!part.content_type.empty());
    require(mp::http::find_part(parts, part.name) == &part);  // names are unique
    require(body.find(part.data) != std::string_view::npos);  // data is a slice of the body
  }
  if (boundary.empty()) return;
  MultipartLimits roomy = limits;
  roomy.max_header_bytes = limits.max_header_bytes * 2 + 256;  // quoting may lengthen headers
  const std::string again = encode(parts, boundary);
  auto reparsed = mp::http::parse_multipart(content_type, again, roomy);
  require(reparsed.ok());
  require(reparsed->size() == parts.size());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const FormPart& a = parts[i];
    const FormPart& b = (*reparsed)[i];
    require(a.name == b.name && a.filename == b.filename && a.content_type == b.content_type &&
            a.data == b.data);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t newline = input.find('\n');
  const std::string_view content_type = input.substr(0, newline);
  const std::string_view body =
      newline == std::string_view::npos ? std::string_view{} : input.substr(newline + 1);
  check(content_type, body, MultipartLimits{});
  check(content_type, body,
        MultipartLimits{
            .max_parts = 3, .max_part_bytes = 64, .max_header_bytes = 96, .max_name_bytes = 8});
  check("multipart/form-data; boundary=b", input, MultipartLimits{}, "b");
  check("multipart/form-data; boundary=\"-- x\"", input,
        MultipartLimits{
            .max_parts = 4, .max_part_bytes = 256, .max_header_bytes = 128, .max_name_bytes = 16},
        "-- x");
  return 0;
}
