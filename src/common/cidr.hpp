// IP addresses and CIDR ranges as plain values, for caller allow-lists and trusted proxies.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace mp {

struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};  // IPv4 in the first 4 bytes
  bool v4 = true;
  std::string to_string() const;
  friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// "192.0.2.1", "2001:db8::1"; an IPv4-mapped IPv6 address ("::ffff:192.0.2.1") becomes IPv4.
std::optional<IpAddress> parse_ip(std::string_view text);
// From network-order bytes: 4 (IPv4) or 16 (IPv6; an IPv4-mapped one becomes IPv4).
IpAddress ip_from_bytes(const std::uint8_t* bytes, std::size_t size) noexcept;
// What per-address limits count by: the IPv4 address, or the IPv6 /64 (one subscriber's network
// holds 2^64 addresses, so counting single IPv6 addresses would limit nothing). Compact bytes.
std::string address_limit_key(const IpAddress& address);

struct Cidr {
  IpAddress network;
  unsigned prefix = 0;
  bool contains(const IpAddress& address) const noexcept;
  std::string to_string() const;
};

// "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). Host bits must be zero.
Result<Cidr> parse_cidr(std::string_view text);
// A comma- or whitespace-separated list; an empty text is an empty list.
Result<std::vector<Cidr>> parse_cidr_list(std::string_view text);
bool any_contains(const std::vector<Cidr>& ranges, const IpAddress& address) noexcept;

}  // namespace mp
