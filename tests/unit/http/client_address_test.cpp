// Tests of src/http/first_bytes (the PROXY protocol header, the first look at a request line)
// and src/http/client_address.
#include "http/client_address.hpp"

#include <gtest/gtest.h>

#include <string>

#include "http/first_bytes.hpp"

namespace mp::http {
namespace {

std::span<const std::uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string v2_header(std::uint8_t command, std::uint8_t family, const std::string& block) {
  std::string h("\r\n\r\n\0\r\nQUIT\n", 12);
  h += static_cast<char>(0x20 | command);
  h += static_cast<char>(family);
  h += static_cast<char>(block.size() >> 8);
  h += static_cast<char>(block.size() & 0xff);
  return h + block;
}

TEST(ProxyHeader, V1Tcp4NamesTheSourceAndItsLength) {
  const std::string line = "PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n";
  ProxyHeader h;
  ASSERT_EQ(parse_proxy_header(bytes_of(line + "\x16\x03rest"), h), ProxyParse::done);
  EXPECT_EQ(h.length, line.size());
  ASSERT_TRUE(h.source);
  EXPECT_EQ(h.source->to_string(), "198.51.100.7");
}

TEST(ProxyHeader, V1Tcp6AndUnknown) {
  ProxyHeader h;
  ASSERT_EQ(parse_proxy_header(bytes_of("PROXY TCP6 2001:db8::7 2001:db8::1 1 443\r\n"), h),
            ProxyParse::done);
  EXPECT_EQ(h.source->to_string(), "2001:db8::7");
  ASSERT_EQ(parse_proxy_header(bytes_of("PROXY UNKNOWN\r\n"), h), ProxyParse::done);
  EXPECT_FALSE(h.source);
}

TEST(ProxyHeader, V1PartialWaitsAndMalformedIsRefused) {
  ProxyHeader h;
  EXPECT_EQ(parse_proxy_header(bytes_of("PRO"), h), ProxyParse::need_more);
  EXPECT_EQ(parse_proxy_header(bytes_of("PROXY TCP4 198.51.100.7 192.0"), h),
            ProxyParse::need_more);
  EXPECT_EQ(parse_proxy_header(bytes_of("PROXY TCP4 nonsense 192.0.2.1 1 2\r\n"), h),
            ProxyParse::invalid);
  EXPECT_EQ(parse_proxy_header(bytes_of("PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n"), h),
            ProxyParse::invalid)
      << "family and address must agree";
  EXPECT_EQ(parse_proxy_header(bytes_of("PROXY TCP4 198.51.100.7\r\n"), h), ProxyParse::invalid);
  EXPECT_EQ(parse_proxy_header(bytes_of("\x16\x03\x01\x02\x00"), h), ProxyParse::invalid)
      << "a TLS ClientHello where the header must be";
  EXPECT_EQ(parse_proxy_header(bytes_of("PROXY " + std::string(200, 'x')), h), ProxyParse::invalid)
      << "a v1 line has at most 107 bytes";
}

TEST(ProxyHeader, V2Tcp4Tcp6LocalAndLimits) {
  ProxyHeader h;
  const std::string v4 =
      v2_header(1, 0x11, std::string("\xcb\x00\x71\x09\xc0\x00\x02\x01\x9c\x40\x01\xbb", 12));
  ASSERT_EQ(parse_proxy_header(bytes_of(v4 + "tls"), h), ProxyParse::done);
  EXPECT_EQ(h.length, 28u);
  EXPECT_EQ(h.source->to_string(), "203.0.113.9");

  std::string block(36, '\0');
  block[0] = '\x20';
  block[1] = '\x01';
  block[2] = '\x0d';
  block[3] = '\xb8';
  block[15] = '\x07';
  ASSERT_EQ(parse_proxy_header(bytes_of(v2_header(1, 0x21, block)), h), ProxyParse::done);
  EXPECT_EQ(h.source->to_string(), "2001:db8::7");

  ASSERT_EQ(parse_proxy_header(bytes_of(v2_header(0, 0x00, "")), h), ProxyParse::done);
  EXPECT_FALSE(h.source) << "LOCAL: the balancer's own health check";

  EXPECT_EQ(parse_proxy_header(bytes_of(v4.substr(0, 20)), h), ProxyParse::need_more);
  EXPECT_EQ(parse_proxy_header(bytes_of(v4.substr(0, 7)), h), ProxyParse::need_more);
  EXPECT_EQ(parse_proxy_header(bytes_of(v2_header(1, 0x31, std::string(216, 'u'))), h),
            ProxyParse::invalid)
      << "UNIX sockets are not a listener's clients";
  EXPECT_EQ(parse_proxy_header(bytes_of(v2_header(1, 0x11, std::string(1000, 'x'))), h),
            ProxyParse::invalid)
      << "longer than any address block we take";
  std::string wrong_version = v4;
  wrong_version[12] = '\x11';
  EXPECT_EQ(parse_proxy_header(bytes_of(wrong_version), h), ProxyParse::invalid);
}

TEST(StartLine, RequestLinesPassAndOtherBytesAreToldApartEarly) {
  EXPECT_EQ(check_start_line("GET / HTTP/1.1\r\n"), StartLine::request);
  EXPECT_EQ(check_start_line("POST /ews/v1/notify/x"), StartLine::request);
  EXPECT_EQ(check_start_line("\r\nOPTIONS * HTTP/1.1"), StartLine::request);
  EXPECT_EQ(check_start_line("GET http://x/ HTTP/1.1"), StartLine::request);
  EXPECT_EQ(check_start_line(""), StartLine::need_more);
  EXPECT_EQ(check_start_line("POS"), StartLine::need_more);
  EXPECT_EQ(check_start_line("GET "), StartLine::need_more);
  EXPECT_EQ(check_start_line("\r\n"), StartLine::need_more);
  EXPECT_EQ(check_start_line("hello there"), StartLine::not_http);
  EXPECT_EQ(check_start_line("GET/ HTTP/1.1"), StartLine::not_http);
  EXPECT_EQ(check_start_line(" GET /"), StartLine::not_http);
  EXPECT_EQ(check_start_line("GET  /"), StartLine::not_http);
  EXPECT_EQ(check_start_line(std::string(21, 'A')), StartLine::not_http);
  EXPECT_EQ(check_start_line(std::string("\x16\x03\x01", 3)), StartLine::not_http);
  EXPECT_EQ(check_start_line("\r\n\r\n\r\nGET /"), StartLine::not_http);
}

TEST(ClientAddress, AsioAddressesBecomeIpAddresses) {
  EXPECT_EQ(to_ip(boost::asio::ip::make_address("192.0.2.1")).to_string(), "192.0.2.1");
  EXPECT_EQ(to_ip(boost::asio::ip::make_address("::ffff:192.0.2.1")).to_string(), "192.0.2.1");
  EXPECT_EQ(to_ip(boost::asio::ip::make_address("2001:db8::1")).to_string(), "2001:db8::1");
  EXPECT_EQ(address_limit_key(*parse_ip("2001:db8::1")),
            address_limit_key(*parse_ip("2001:db8::ffff:1")))
      << "one IPv6 /64 counts as one address";
  EXPECT_NE(address_limit_key(*parse_ip("192.0.2.1")), address_limit_key(*parse_ip("192.0.2.2")));
}

}  // namespace
}  // namespace mp::http
