// Which expiry warning is due, and webhook URLs.
#include <gtest/gtest.h>

#include "portal/expiry_monitor.hpp"

namespace mp::portal {
namespace {

TEST(ExpiryThreshold, TheSmallestThresholdCrossed) {
  constexpr std::int64_t day = 86400;
  EXPECT_EQ(warning_threshold(31 * day), std::nullopt);
  EXPECT_EQ(warning_threshold(30 * day + 1), std::nullopt);
  EXPECT_EQ(warning_threshold(30 * day), 30);
  EXPECT_EQ(warning_threshold(15 * day), 30);
  EXPECT_EQ(warning_threshold(14 * day), 14);
  EXPECT_EQ(warning_threshold(10 * day), 14);
  EXPECT_EQ(warning_threshold(7 * day), 7);
  EXPECT_EQ(warning_threshold(2 * day), 7);
  EXPECT_EQ(warning_threshold(day), 1);
  EXPECT_EQ(warning_threshold(1), 1);
  EXPECT_EQ(warning_threshold(0), 0);
  EXPECT_EQ(warning_threshold(-5 * day), 0);
}

TEST(WebhookUrl, HostPortAndTarget) {
  auto a = parse_webhook_url("https://hooks.example.net/mailpush?token=x");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->host, "hooks.example.net");
  EXPECT_EQ(a->port, "443");
  EXPECT_EQ(a->target, "/mailpush?token=x");
  auto b = parse_webhook_url("http://127.0.0.1:8080");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->tls);
  EXPECT_EQ(b->port, "8080");
  EXPECT_EQ(b->target, "/");
  // A query or fragment right after the host is not part of the host (nor logged with it).
  auto c = parse_webhook_url("https://hooks.example.com?token=s3cr3t#x");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "hooks.example.com");
  EXPECT_EQ(c->target, "/?token=s3cr3t");
  EXPECT_FALSE(parse_webhook_url("https://user:pw@hooks.example.com/").ok());
  EXPECT_FALSE(parse_webhook_url("ftp://x/").ok());
  EXPECT_FALSE(parse_webhook_url("https:///path").ok());
}

}  // namespace
}  // namespace mp::portal
