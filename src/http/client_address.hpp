// Who is calling: the connection's peer, or the client a trusted load balancer names in
// X-Forwarded-For (per request); the PROXY protocol header is in first_bytes.hpp.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/cidr.hpp"
#include "http/router.hpp"

namespace mp::http {

IpAddress to_ip(const boost::asio::ip::address& address) noexcept;

// The caller as seen through trusted proxies: X-Forwarded-For is read right to left, skipping
// trusted proxies, and only when the connection itself comes from one. Anything unparsable
// stops the walk at the last address that is known.
IpAddress caller_address(const IpAddress& peer, std::string_view forwarded_for,
                         const std::vector<Cidr>& trusted_proxies);
// caller_address of a request: its connection's peer and every X-Forwarded-For line, in order
// (a proxy may add its own line after the client's).
IpAddress request_caller(const RequestHeader& req, const RequestContext& ctx,
                         const std::vector<Cidr>& trusted_proxies);

}  // namespace mp::http
