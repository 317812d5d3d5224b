// Tests of IP address and CIDR parsing and matching.
#include "common/cidr.hpp"

#include <gtest/gtest.h>

namespace mp {
namespace {

IpAddress ip(const char* text) {
  auto a = parse_ip(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

TEST(Cidr, ParsesAddressesOfBothFamilies) {
  EXPECT_EQ(ip("192.0.2.1").to_string(), "192.0.2.1");
  EXPECT_EQ(ip("2001:db8::1").to_string(), "2001:db8::1");
  EXPECT_TRUE(ip("::ffff:192.0.2.1").v4) << "IPv4-mapped addresses compare as IPv4";
  EXPECT_EQ(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
  for (const char* bad : {"", "300.1.1.1", "1.2.3", "example.com", "1.2.3.4 ", "::g"}) {
    EXPECT_FALSE(parse_ip(bad).has_value()) << bad;
  }
}

TEST(Cidr, MatchesRanges) {
  auto r = parse_cidr("10.0.0.0/8");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->contains(ip("10.255.1.2")));
  EXPECT_FALSE(r->contains(ip("11.0.0.1")));
  EXPECT_FALSE(r->contains(ip("2001:db8::1")));
  auto odd = parse_cidr("192.0.2.128/25");
  ASSERT_TRUE(odd.ok());
  EXPECT_TRUE(odd->contains(ip("192.0.2.200")));
  EXPECT_FALSE(odd->contains(ip("192.0.2.127")));
  auto v6 = parse_cidr("2001:db8::/32");
  ASSERT_TRUE(v6.ok());
  EXPECT_TRUE(v6->contains(ip("2001:db8:ffff::1")));
  EXPECT_FALSE(v6->contains(ip("2001:db9::1")));
  auto single = parse_cidr("203.0.113.7");
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->prefix, 32u);
  EXPECT_TRUE(single->contains(ip("203.0.113.7")));
  EXPECT_FALSE(single->contains(ip("203.0.113.8")));
  auto all = parse_cidr("0.0.0.0/0");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->contains(ip("198.51.100.1")));
}

TEST(Cidr, RefusesMistakesWithAReason) {
  auto host_bits = parse_cidr("10.1.2.3/8");
  ASSERT_FALSE(host_bits.ok());
  EXPECT_NE(host_bits.error().message.find("did you mean 10.0.0.0/8?"), std::string::npos)
      << host_bits.error().message;
  EXPECT_FALSE(parse_cidr("10.0.0.0/33").ok());
  EXPECT_FALSE(parse_cidr("10.0.0.0/").ok());
  EXPECT_FALSE(parse_cidr("10.0.0.0/8x").ok());
  EXPECT_FALSE(parse_cidr("nonsense/8").ok());
}

TEST(Cidr, ParsesLists) {
  auto list = parse_cidr_list(" 10.0.0.0/8, 192.0.2.0/24\n2001:db8::/32 ");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_TRUE(any_contains(*list, ip("192.0.2.9")));
  EXPECT_FALSE(any_contains(*list, ip("198.51.100.1")));
  auto empty = parse_cidr_list("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_FALSE(parse_cidr_list("10.0.0.0/8, bogus").ok());
}

}  // namespace
}  // namespace mp
