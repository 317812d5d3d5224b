// Parsing and matching of IP addresses and CIDR ranges (inet_pton underneath).
#include "common/cidr.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace mp {
namespace {

IpAddress masked(IpAddress a, unsigned prefix) {
  const unsigned width = a.v4 ? 32u : 128u;
  for (unsigned bit = prefix; bit < width; ++bit) {
    a.bytes[bit / 8] = static_cast<std::uint8_t>(a.bytes[bit / 8] & ~(0x80u >> (bit % 8)));
  }
  return a;
}

}  // namespace

IpAddress ip_from_bytes(const std::uint8_t* bytes, std::size_t size) noexcept {
  static constexpr std::uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  IpAddress a;
  if (size == 16 && std::memcmp(bytes, mapped, 12) == 0) {
    bytes += 12;
    size = 4;
  }
  if (size == 4) {
    std::memcpy(a.bytes.data(), bytes, 4);
    a.v4 = true;
  } else if (size == 16) {
    std::memcpy(a.bytes.data(), bytes, 16);
    a.v4 = false;
  }
  return a;
}

std::string address_limit_key(const IpAddress& address) {
  std::string key(address.v4 ? "4" : "6");
  key.append(reinterpret_cast<const char*>(address.bytes.data()), address.v4 ? 4 : 8);
  return key;
}

std::optional<IpAddress> parse_ip(std::string_view text) {
  if (text.empty() || text.size() > 45) return std::nullopt;
  const std::string s(text);
  IpAddress a;
  in_addr v4{};
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    std::memcpy(a.bytes.data(), &v4, 4);
    a.v4 = true;
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, s.c_str(), &v6) != 1) return std::nullopt;
  return ip_from_bytes(reinterpret_cast<const std::uint8_t*>(&v6), sizeof v6);
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

bool Cidr::contains(const IpAddress& address) const noexcept {
  if (address.v4 != network.v4) return false;
  unsigned left = prefix;
  for (std::size_t i = 0; left > 0; ++i) {
    const unsigned bits = left >= 8 ? 8 : left;
    const std::uint8_t mask = static_cast<std::uint8_t>(0xff << (8 - bits));
    if ((address.bytes[i] & mask) != (network.bytes[i] & mask)) return false;
    left -= bits;
  }
  return true;
}

std::string Cidr::to_string() const {
  return network.to_string() + "/" + std::to_string(prefix);
}

Result<Cidr> parse_cidr(std::string_view text) {
  const auto slash = text.find('/');
  const auto address = parse_ip(text.substr(0, slash));
  if (!address) {
    return make_error(Errc::invalid_argument,
                      "\"" + std::string(text) + "\" is not an IP address or CIDR range");
  }
  Cidr c{*address, address->v4 ? 32u : 128u};
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    unsigned prefix = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() ||
        prefix > c.prefix) {
      return make_error(Errc::invalid_argument, "\"" + std::string(text) +
                                                    "\" has an invalid prefix length (0 to " +
                                                    std::to_string(c.prefix) + ")");
    }
    c.prefix = prefix;
  }
  // Host bits set usually means a typo (10.1.2.3/8 meant 10.0.0.0/8?): refuse rather than guess.
  const IpAddress network = masked(c.network, c.prefix);
  if (!(network == c.network)) {
    return make_error(Errc::invalid_argument, "\"" + std::string(text) +
                                                  "\" has host bits set; did you mean " +
                                                  Cidr{network, c.prefix}.to_string() + "?");
  }
  return c;
}

Result<std::vector<Cidr>> parse_cidr_list(std::string_view text) {
  std::vector<Cidr> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() &&
           (text[i] == ',' || text[i] == ' ' || text[i] == '\n' || text[i] == '\t'))
      ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ',' && text[j] != ' ' && text[j] != '\n' &&
           text[j] != '\t')
      ++j;
    if (j > i) {
      auto c = parse_cidr(text.substr(i, j - i));
      if (!c) return std::move(c).error();
      out.push_back(*c);
    }
    i = j;
  }
  return out;
}

bool any_contains(const std::vector<Cidr>& ranges, const IpAddress& address) noexcept {
  for (const auto& r : ranges) {
    if (r.contains(address)) return true;
  }
  return false;
}

}  // namespace mp
