// What the listener reads first from a connection, before any TLS or HTTP machinery: a trusted
// load balancer's PROXY protocol header (HAProxy's v1 text or v2 binary, proxy-protocol.txt), and
// the first look at a request line. Pure functions over bytes (fuzzed: fuzz_proxy_header).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "common/cidr.hpp"

namespace mp::http {

// A PROXY protocol header (HAProxy's v1 text or v2 binary) at the start of a connection.
struct ProxyHeader {
  std::size_t length = 0;           // bytes to consume before the TLS handshake
  std::optional<IpAddress> source;  // none: LOCAL (the balancer's own check) or UNKNOWN
};
enum class ProxyParse { done, need_more, invalid };
inline constexpr std::size_t kMaxProxyHeader = 536;  // v2: 16 + the largest address block we take
// Parses the header at the start of `bytes`; `header` is set when done.
ProxyParse parse_proxy_header(std::span<const std::uint8_t> bytes, ProxyHeader& header);

// Whether a connection's first bytes of a request can begin an HTTP/1.1 request line: a method
// (1 to 20 capital letters, as every registered method is), a space and the start of a target
// ('/', '*' or "http"), after at most two empty lines. Lets the server answer bytes that are not
// HTTP at once instead of waiting for a header that never ends.
enum class StartLine { request, not_http, need_more };
StartLine check_start_line(std::string_view bytes) noexcept;

}  // namespace mp::http
