// Client addresses behind load balancers: the peer and X-Forwarded-For.
#include "http/client_address.hpp"

#include "common/text.hpp"

namespace mp::http {

IpAddress to_ip(const boost::asio::ip::address& address) noexcept {
  if (address.is_v4()) {
    const auto bytes = address.to_v4().to_bytes();
    return ip_from_bytes(bytes.data(), bytes.size());
  }
  const auto bytes = address.to_v6().to_bytes();
  return ip_from_bytes(bytes.data(), bytes.size());
}

IpAddress caller_address(const IpAddress& peer, std::string_view forwarded_for,
                         const std::vector<Cidr>& trusted_proxies) {
  IpAddress caller = peer;
  if (forwarded_for.empty() || !any_contains(trusted_proxies, peer)) return caller;
  while (!forwarded_for.empty()) {
    const auto comma = forwarded_for.rfind(',');
    const std::string_view hop = trim_spaces_and_tabs(
        comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
    const auto address = parse_ip(hop);
    if (!address) break;
    caller = *address;
    if (!any_contains(trusted_proxies, caller)) break;
    forwarded_for =
        comma == std::string_view::npos ? std::string_view{} : forwarded_for.substr(0, comma);
  }
  return caller;
}

IpAddress request_caller(const RequestHeader& req, const RequestContext& ctx,
                         const std::vector<Cidr>& trusted_proxies) {
  std::string forwarded_for;
  for (auto [it, end] = req.equal_range("X-Forwarded-For"); it != end; ++it) {
    if (!forwarded_for.empty()) forwarded_for += ", ";
    forwarded_for += std::string(it->value());
  }
  return caller_address(to_ip(ctx.peer), forwarded_for, trusted_proxies);
}

}  // namespace mp::http
