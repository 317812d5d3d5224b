// The PROXY protocol header and the request line's first bytes.
#include "http/first_bytes.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

namespace mp::http {
namespace {

constexpr std::array<std::uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::size_t kMaxV1 = 107;  // "PROXY" ... CRLF, the specification's bound

ProxyParse parse_v1(std::string_view text, ProxyHeader& header) {
  const auto end = text.find("\r\n");
  if (end == std::string_view::npos) {
    return text.size() >= kMaxV1 ? ProxyParse::invalid : ProxyParse::need_more;
  }
  if (end + 2 > kMaxV1) return ProxyParse::invalid;
  std::string_view line = text.substr(0, end);
  std::vector<std::string_view> words;
  while (!line.empty()) {
    const auto space = line.find(' ');
    words.push_back(line.substr(0, space));
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
  }
  if (words.size() < 2 || words[0] != "PROXY") return ProxyParse::invalid;
  header.length = end + 2;
  header.source.reset();
  if (words[1] == "UNKNOWN") return ProxyParse::done;
  if ((words[1] != "TCP4" && words[1] != "TCP6") || words.size() != 6) return ProxyParse::invalid;
  auto source = parse_ip(words[2]);
  if (!source || !parse_ip(words[3]) || source->v4 != (words[1] == "TCP4")) {
    return ProxyParse::invalid;
  }
  header.source = source;
  return ProxyParse::done;
}

ProxyParse parse_v2(std::span<const std::uint8_t> bytes, ProxyHeader& header) {
  if (bytes.size() < 16) return ProxyParse::need_more;
  const std::uint8_t version_command = bytes[12];
  const std::uint8_t family = bytes[13];
  const std::size_t length = (std::size_t{bytes[14]} << 8) | bytes[15];
  if ((version_command >> 4) != 2) return ProxyParse::invalid;
  if (16 + length > kMaxProxyHeader) return ProxyParse::invalid;
  if (bytes.size() < 16 + length) return ProxyParse::need_more;
  header.length = 16 + length;
  header.source.reset();
  const std::uint8_t command = version_command & 0x0F;
  if (command == 0x0) return ProxyParse::done;  // LOCAL: the balancer itself
  if (command != 0x1) return ProxyParse::invalid;
  const auto* block = bytes.data() + 16;
  if (family == 0x11 && length >= 12) {  // TCP over IPv4: src, dst, ports
    header.source = ip_from_bytes(block, 4);
  } else if (family == 0x21 && length >= 36) {  // TCP over IPv6
    header.source = ip_from_bytes(block, 16);
  } else if ((family >> 4) != 0) {
    return ProxyParse::invalid;  // UNIX sockets or datagrams: not what a listener takes
  }
  return ProxyParse::done;  // UNSPEC: unknown source
}

}  // namespace

ProxyParse parse_proxy_header(std::span<const std::uint8_t> bytes, ProxyHeader& header) {
  const std::size_t prefix = std::min(bytes.size(), kV2Signature.size());
  if (std::memcmp(bytes.data(), kV2Signature.data(), prefix) == 0) {
    return prefix < kV2Signature.size() ? ProxyParse::need_more : parse_v2(bytes, header);
  }
  constexpr std::string_view kV1 = "PROXY ";
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (kV1.substr(0, std::min(text.size(), kV1.size())) != text.substr(0, kV1.size())) {
    return ProxyParse::invalid;
  }
  return text.size() < kV1.size() ? ProxyParse::need_more : parse_v1(text, header);
}

StartLine check_start_line(std::string_view bytes) noexcept {
  constexpr std::size_t kMaxMethod = 20;
  for (int empty = 0; empty < 2 && !bytes.empty() && (bytes[0] == '\r' || bytes[0] == '\n');) {
    if (bytes[0] == '\n') ++empty;
    bytes.remove_prefix(1);
  }
  std::size_t i = 0;
  while (i < bytes.size() && i <= kMaxMethod && bytes[i] >= 'A' && bytes[i] <= 'Z') ++i;
  if (i == bytes.size()) return i > kMaxMethod ? StartLine::not_http : StartLine::need_more;
  if (i == 0 || i > kMaxMethod || bytes[i] != ' ') return StartLine::not_http;
  if (i + 1 == bytes.size()) return StartLine::need_more;
  // origin-form "/…", asterisk-form "*", absolute-form "http://…"
  const char target = bytes[i + 1];
  return target == '/' || target == '*' || target == 'h' || target == 'H' ? StartLine::request
                                                                          : StartLine::not_http;
}

}  // namespace mp::http
