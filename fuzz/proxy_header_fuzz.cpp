// libFuzzer target for the first bytes the listener reads from a connection: the PROXY protocol
// header a trusted load balancer sends before TLS (v1 text, v2 binary), and the first look at a
// request line (check_start_line). No crash, no sanitizer report, and the invariants below.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "http/first_bytes.hpp"

namespace {
void require(bool condition) {
  if (!condition) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  mp::http::ProxyHeader header;
  const auto parsed = mp::http::parse_proxy_header(bytes, header);
  if (parsed == mp::http::ProxyParse::done) {
    // A header is never longer than what arrived nor than the bound, and it is a prefix: the
    // same bytes alone parse to the same header.
    require(header.length > 0 && header.length <= size);
    require(header.length <= mp::http::kMaxProxyHeader);
    mp::http::ProxyHeader again;
    require(mp::http::parse_proxy_header(bytes.first(header.length), again) ==
            mp::http::ProxyParse::done);
    require(again.length == header.length && again.source == header.source);
  } else if (parsed == mp::http::ProxyParse::need_more) {
    require(size < mp::http::kMaxProxyHeader);
  }

  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto start = mp::http::check_start_line(text);
  if (start == mp::http::StartLine::request) {
    // A request line starts with capital letters (after at most two empty lines) and a space.
    std::size_t i = 0;
    while (i < text.size() && (text[i] == '\r' || text[i] == '\n')) ++i;
    require(i < text.size() && text[i] >= 'A' && text[i] <= 'Z');
    require(text.find(' ', i) != std::string_view::npos);
  }
  if (start != mp::http::StartLine::need_more) {
    // More bytes never change a verdict already given.
    std::string longer(text);
    longer += "x\r\n";
    require(mp::http::check_start_line(longer) == start);
  }
  return 0;
}
