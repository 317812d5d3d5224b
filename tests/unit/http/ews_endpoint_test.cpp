// Tests of the caller address as the EWS endpoint sees it through trusted proxies.
#include "http/ews_endpoint.hpp"

#include <gtest/gtest.h>

namespace mp::http {
namespace {

IpAddress ip(const char* text) {
  return parse_ip(text).value();
}

std::vector<Cidr> proxies(std::initializer_list<const char*> list) {
  std::vector<Cidr> out;
  for (const char* c : list) out.push_back(parse_cidr(c).value());
  return out;
}

TEST(CallerAddress, IgnoresForwardedForFromUntrustedPeers) {
  EXPECT_EQ(caller_address(ip("203.0.113.5"), "192.0.2.1", proxies({"10.0.0.0/8"})),
            ip("203.0.113.5"));
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "192.0.2.1", {}), ip("10.0.0.2"));
}

TEST(CallerAddress, TakesTheRightmostUntrustedHop) {
  const auto lb = proxies({"10.0.0.0/8"});
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "192.0.2.1", lb), ip("192.0.2.1"));
  // A client can put anything on the left; only hops appended by our proxies count.
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "198.51.100.66, 192.0.2.1", lb), ip("192.0.2.1"));
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "192.0.2.1, 10.1.1.1 ,10.2.2.2", lb), ip("192.0.2.1"));
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "2001:db8::7", lb), ip("2001:db8::7"));
}

TEST(CallerAddress, StopsAtGarbage) {
  const auto lb = proxies({"10.0.0.0/8"});
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "not-an-ip", lb), ip("10.0.0.2"));
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "192.0.2.1, junk", lb), ip("10.0.0.2"));
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "", lb), ip("10.0.0.2"));
  // Every hop trusted: the leftmost known one is the best we know.
  EXPECT_EQ(caller_address(ip("10.0.0.2"), "10.9.9.9", lb), ip("10.9.9.9"));
}

}  // namespace
}  // namespace mp::http
