// Tests of the registration use case's pure parts: field checks and their messages, Customer ID
// regions, listener URLs, and the per-customer token bucket.
#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

#include "common/token_bucket.hpp"
#include "relay/registration_service.hpp"

namespace mp::relay {
namespace {

using namespace std::chrono_literals;

const std::string kHexToken = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

RegisterRequest good() {
  RegisterRequest r;
  r.customer_id = "euw1-abcdefghij0123456789";
  r.registration_key = "rk_key";
  r.mailbox = "Alice@Example.com";
  r.device_token = kHexToken;
  r.environment = "production";
  return r;
}

RegistrationOptions options() {
  RegistrationOptions o;
  o.region = "eu-west-1";
  o.customer_id_prefix = "euw1";
  o.other_regions = {{"use1", "register.use1.mailpush.example"}};
  return o;
}

// The refusal of `r`, or a marker refusal when it was accepted.
RegistrationRefusal refusal_of(const RegisterRequest& r) {
  auto checked = check_registration(r);
  if (auto* refused = std::get_if<RegistrationRefusal>(&checked)) return *refused;
  return RegistrationRefusal{RefusalKind::internal, "(accepted)", "", "", {}, ""};
}

TEST(RegistrationChecks, AGoodRequestIsNormalised) {
  auto checked = check_registration(good());
  ASSERT_TRUE(std::holds_alternative<CheckedDevice>(checked));
  const auto& c = std::get<CheckedDevice>(checked);
  EXPECT_EQ(c.token_hex, kHexToken);
  EXPECT_FALSE(c.token_was_base64);
  EXPECT_EQ(c.environment, "production");

  // Upper-case hex and the `<… …>` form of old apps are hex, not base64.
  auto upper = good();
  upper.device_token = "<A1B2C3D4 E5F60718 293A4B5C 6D7E8F90 A1B2C3D4 E5F60718 293A4B5C 6D7E8F90>";
  auto u = check_registration(upper);
  ASSERT_TRUE(std::holds_alternative<CheckedDevice>(u));
  EXPECT_EQ(std::get<CheckedDevice>(u).token_hex, kHexToken);
  EXPECT_FALSE(std::get<CheckedDevice>(u).token_was_base64);
}

TEST(RegistrationChecks, ABase64TokenBecomesHexAndIsNoted) {
  auto r = good();
  r.device_token = "obLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTpLXG1+j5A=";  // kHexToken's bytes
  r.environment = "development";
  auto checked = check_registration(r);
  ASSERT_TRUE(std::holds_alternative<CheckedDevice>(checked))
      << std::get<RegistrationRefusal>(checked).message;
  const auto& c = std::get<CheckedDevice>(checked);
  EXPECT_EQ(c.token_hex, kHexToken);
  EXPECT_TRUE(c.token_was_base64);
  // URL-safe and unpadded, as a move sends it.
  auto moved = check_device("obLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTpLXG1-j5A", "production");
  ASSERT_TRUE(std::holds_alternative<CheckedDevice>(moved));
  EXPECT_EQ(std::get<CheckedDevice>(moved).token_hex, kHexToken);
}

TEST(RegistrationChecks, EachFieldIsRefusedWithItsNameAndReason) {
  struct Case {
    void (*spoil)(RegisterRequest&);
    std::string field, code, needle;
  };
  const Case cases[] = {
      {[](RegisterRequest& r) { r.mailbox = ""; }, "mailbox", "invalid_mailbox", "empty"},
      {[](RegisterRequest& r) { r.mailbox = "alice"; }, "mailbox", "invalid_mailbox", "@"},
      {[](RegisterRequest& r) { r.mailbox = std::string(2000, 'a') + "@x"; }, "mailbox",
       "invalid_mailbox", "longer than 320"},
      {[](RegisterRequest& r) { r.device_token = ""; }, "device_token", "invalid_device_token",
       "empty"},
      {[](RegisterRequest& r) { r.device_token = "abc"; }, "device_token", "invalid_device_token",
       "odd number"},
      {[](RegisterRequest& r) { r.device_token = "zz!!zz"; }, "device_token",
       "invalid_device_token", "refused"},
      {[](RegisterRequest& r) { r.device_token = std::string(5000, 'a'); }, "device_token",
       "invalid_device_token", "5000 characters"},
      // Hex or base64 of fewer than 32 bytes: a truncated token (found by fuzz_registration).
      {[](RegisterRequest& r) { r.device_token = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1"; }, "device_token",
       "invalid_device_token", "14 bytes long"},
      {[](RegisterRequest& r) { r.device_token = "oaGhoaGhoaGhoaGh"; }, "device_token",
       "invalid_device_token", "12 bytes long"},
      {[](RegisterRequest& r) { r.environment = ""; }, "environment", "invalid_environment",
       "missing"},
      {[](RegisterRequest& r) { r.environment = "sandbox"; }, "environment", "invalid_environment",
       "'production'"},
  };
  for (const auto& c : cases) {
    auto r = good();
    c.spoil(r);
    const auto refused = refusal_of(r);
    SCOPED_TRACE(c.field + " " + c.needle);
    EXPECT_EQ(refused.kind, RefusalKind::invalid);
    EXPECT_EQ(refused.field, c.field);
    EXPECT_EQ(refused.code, c.code);
    EXPECT_NE(refused.message.find(c.needle), std::string::npos) << refused.message;
  }
}

TEST(RegistrationChecks, MessagesNeverQuoteTheAddressOrTheToken) {
  auto r = good();
  r.mailbox = "Secret.Person@Example.com extra";
  EXPECT_EQ(refusal_of(r).message.find("Secret.Person"), std::string::npos);
  r = good();
  r.device_token = kHexToken + "0";  // odd length
  EXPECT_EQ(refusal_of(r).message.find(kHexToken.substr(0, 12)), std::string::npos);
}

TEST(RegistrationChecks, CustomerIdsOfOtherRegionsNameWhereToGo) {
  const auto o = options();
  EXPECT_FALSE(check_customer_id("euw1-abcdefghij0123456789", o));

  auto other = check_customer_id("use1-abcdefghij0123456789", o);
  ASSERT_TRUE(other);
  EXPECT_EQ(other->kind, RefusalKind::wrong_region);
  EXPECT_EQ(other->code, "wrong_region");
  EXPECT_EQ(other->region_host, "register.use1.mailpush.example");
  EXPECT_NE(other->message.find("https://register.use1.mailpush.example/v1/registrations"),
            std::string::npos)
      << other->message;

  auto unknown = check_customer_id("zzz9-abcdefghij0123456789", o);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->kind, RefusalKind::wrong_region);
  EXPECT_EQ(unknown->code, "unknown_region");
  EXPECT_NE(unknown->message.find("unknown region prefix 'zzz9'"), std::string::npos)
      << unknown->message;

  const std::vector<std::string> malformed = {
      "",         "euw1", "-abc", "EUW1-ABC", "euw1-a b", "euw1_abc", std::string(65, 'a') + "-x",
      "euw1-\xff"};
  for (const std::string& bad : malformed) {
    auto refused = check_customer_id(bad, o);
    ASSERT_TRUE(refused) << bad;
    EXPECT_EQ(refused->kind, RefusalKind::invalid) << bad;
    EXPECT_EQ(refused->field, "customer_id");
    if (bad.size() > 5) {  // (the message shows this region's prefix as an example)
      EXPECT_EQ(refused->message.find(bad), std::string::npos) << bad;
    }
  }
}

TEST(RegistrationChecks, ListenerUrlsLeaveOut443) {
  EXPECT_EQ(listener_url("listener.euw1.mailpush.example", 443, "SECRET"),
            "https://listener.euw1.mailpush.example/ews/v1/notify/SECRET");
  EXPECT_EQ(listener_url("localhost", 8443, "S"), "https://localhost:8443/ews/v1/notify/S");
}

TEST(TokenBucket, SpendsUpToTheLimitThenRefillsAtTheRate) {
  TokenBucketLimiter limiter(60);  // one a second
  const auto t0 = TokenBucketLimiter::Clock::now();
  EXPECT_FALSE(limiter.blocked("a", t0)) << "unknown keys may call";
  for (int i = 0; i < 60; ++i) EXPECT_FALSE(limiter.take("a", t0)) << i;
  auto wait = limiter.take("a", t0);
  ASSERT_TRUE(wait);
  EXPECT_EQ(*wait, 1s);
  EXPECT_EQ(limiter.blocked("a", t0), std::optional<std::chrono::seconds>(1s));
  EXPECT_FALSE(limiter.blocked("b", t0)) << "per key";
  EXPECT_FALSE(limiter.take("b", t0));
  // Half a second refills half a call: still blocked; a second, one call.
  EXPECT_TRUE(limiter.take("a", t0 + 500ms));
  EXPECT_FALSE(limiter.take("a", t0 + 1100ms));
  EXPECT_TRUE(limiter.take("a", t0 + 1200ms));
  // A long pause refills to the limit, not beyond.
  const auto later = t0 + 1h;
  for (int i = 0; i < 60; ++i) EXPECT_FALSE(limiter.take("a", later)) << i;
  EXPECT_TRUE(limiter.take("a", later));
}

TEST(TokenBucket, RetryAfterScalesWithTheRate) {
  TokenBucketLimiter slow(2);  // one every 30 s
  const auto t0 = TokenBucketLimiter::Clock::now();
  EXPECT_FALSE(slow.take("k", t0));
  EXPECT_FALSE(slow.take("k", t0));
  EXPECT_EQ(slow.take("k", t0), std::optional<std::chrono::seconds>(30s));
  EXPECT_EQ(slow.blocked("k", t0 + 20s), std::optional<std::chrono::seconds>(10s));
}

TEST(TokenBucket, MemoryIsBounded) {
  TokenBucketLimiter limiter(10, 100);
  const auto t0 = TokenBucketLimiter::Clock::now();
  for (int i = 0; i < 10000; ++i) {
    (void)limiter.take("key-" + std::to_string(i), t0 + std::chrono::milliseconds(i));
    ASSERT_LE(limiter.tracked(), 100u);
  }
  // Full buckets are dropped first: an exhausted key keeps its limit while idle ones come and go.
  TokenBucketLimiter keeps(1, 10);
  ASSERT_FALSE(keeps.take("busy", t0));
  ASSERT_TRUE(keeps.take("busy", t0));
  for (int i = 0; i < 9; ++i) (void)keeps.take("idle-" + std::to_string(i), t0 - 1h);
  (void)keeps.take("new", t0);
  EXPECT_TRUE(keeps.blocked("busy", t0)) << "the exhausted bucket survived the eviction";
}

}  // namespace
}  // namespace mp::relay
