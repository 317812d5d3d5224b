// Tests of classify_response (every documented reason, status fallbacks, hostile bodies) and
// retry_backoff (bounds, growth, cap, determinism).
#include "apns/response.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <string>

namespace mp::apns {
namespace {

using K = SendOutcome;
using std::chrono::milliseconds;
using std::chrono::system_clock;

constexpr const char* kApnsId = "eabeae54-14a8-11e5-b60b-1697f925ec7b";

std::string reason_body(const std::string& reason) {
  return R"({"reason":")" + reason + R"("})";
}

struct Row {
  int status;
  const char* reason;
  SendOutcome outcome;
};

class ClassifyDocumentedReason : public testing::TestWithParam<Row> {};

TEST_P(ClassifyDocumentedReason, GivesTheAction) {
  const Row& row = GetParam();
  const ResponseAction a = classify_response(row.status, reason_body(row.reason), kApnsId);
  EXPECT_EQ(a.outcome, row.outcome) << send_outcome_name(a.outcome);
  EXPECT_EQ(a.http_status, row.status);
  EXPECT_EQ(a.reason, row.reason);
  EXPECT_EQ(a.apns_id, kApnsId);
  EXPECT_FALSE(a.explanation.empty());
  EXPECT_EQ(a.explanation.find("not in Apple's documented list"), std::string::npos);
  EXPECT_FALSE(a.unregistered_at.has_value());  // no timestamp in these bodies
}

INSTANTIATE_TEST_SUITE_P(
    Apple, ClassifyDocumentedReason,
    testing::Values(
        Row{400, "BadCollapseId", K::permanent_payload},
        Row{400, "BadDeviceToken", K::bad_device_token},
        Row{400, "BadExpirationDate", K::permanent_payload},
        Row{400, "BadMessageId", K::permanent_payload},
        Row{400, "BadPriority", K::permanent_payload}, Row{400, "BadTopic", K::topic_mismatch},
        Row{400, "DeviceTokenNotForTopic", K::topic_mismatch},
        Row{400, "DuplicateHeaders", K::permanent_payload}, Row{400, "IdleTimeout", K::retry_later},
        Row{400, "InvalidPushType", K::permanent_payload},
        Row{400, "MissingDeviceToken", K::permanent_payload},
        Row{400, "MissingTopic", K::topic_mismatch}, Row{400, "PayloadEmpty", K::permanent_payload},
        Row{400, "TopicDisallowed", K::topic_mismatch},
        Row{403, "BadCertificate", K::credential_failed},
        Row{403, "BadCertificateEnvironment", K::credential_failed},
        Row{403, "ExpiredProviderToken", K::credential_failed},
        Row{403, "Forbidden", K::credential_failed},
        Row{403, "InvalidProviderToken", K::credential_failed},
        Row{403, "MissingProviderToken", K::credential_failed},
        Row{404, "BadPath", K::permanent_payload},
        Row{405, "MethodNotAllowed", K::permanent_payload},
        Row{410, "Unregistered", K::unregistered}, Row{410, "ExpiredToken", K::unregistered},
        Row{413, "PayloadTooLarge", K::permanent_payload},
        Row{429, "TooManyProviderTokenUpdates", K::retry_later},
        Row{429, "TooManyRequests", K::retry_later},
        Row{500, "InternalServerError", K::retry_later},
        Row{503, "ServiceUnavailable", K::retry_later}, Row{503, "Shutdown", K::retry_later}),
    [](const testing::TestParamInfo<Row>& info) {
      return std::to_string(info.param.status) + "_" + info.param.reason;
    });

TEST(ClassifyResponse, BadDeviceTokenSaysSandboxProductionMixUp) {
  const ResponseAction a = classify_response(400, reason_body("BadDeviceToken"), kApnsId);
  EXPECT_NE(a.explanation.find("sandbox/production mix-up"), std::string::npos) << a.explanation;
}

TEST(ClassifyResponse, DeliveredIgnoresTheBody) {
  for (const char* body : {"", "{}", "not json", R"({"reason":"BadDeviceToken"})"}) {
    const ResponseAction a = classify_response(200, body, kApnsId);
    EXPECT_EQ(a.outcome, K::delivered);
    EXPECT_EQ(a.reason, "");
    EXPECT_EQ(a.apns_id, kApnsId);
  }
}

struct StatusRow {
  int status;
  SendOutcome outcome;
};

class ClassifyByStatusAlone : public testing::TestWithParam<StatusRow> {};

// Bodies that say nothing usable: the status alone decides, and nothing throws.
TEST_P(ClassifyByStatusAlone, WhateverTheBody) {
  const std::string deep(100000, '[');
  const std::string deep_but_small(4000, '[');
  for (const std::string& body :
       {std::string(""), std::string("{"), std::string("null"), std::string("[]"),
        std::string("\"reason\""), std::string(R"({"reason":42})"),
        std::string(R"({"reason":null})"), std::string(R"({"Reason":"BadDeviceToken"})"),
        std::string(R"({"reason":"SomethingNew"})"), std::string("{\"reason\":\"\xff\xfe\"}"),
        std::string("\0\0\0", 3), std::string(R"({"reason":"BadTopic")"), deep, deep_but_small,
        std::string(R"({"reason":"BadDeviceToken","pad":")") + std::string(5000, 'x') + "\"}"}) {
    ResponseAction a;
    ASSERT_NO_THROW(a = classify_response(GetParam().status, body, ""));
    EXPECT_EQ(a.outcome, GetParam().outcome)
        << "status " << GetParam().status << " body " << body.substr(0, 40);
    EXPECT_EQ(a.http_status, GetParam().status);
    EXPECT_FALSE(a.explanation.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Statuses, ClassifyByStatusAlone,
    testing::Values(StatusRow{400, K::permanent_payload}, StatusRow{403, K::credential_failed},
                    StatusRow{404, K::permanent_payload}, StatusRow{405, K::permanent_payload},
                    StatusRow{410, K::unregistered}, StatusRow{413, K::permanent_payload},
                    StatusRow{429, K::retry_later}, StatusRow{500, K::retry_later},
                    StatusRow{502, K::retry_later}, StatusRow{503, K::retry_later},
                    StatusRow{504, K::retry_later}, StatusRow{599, K::retry_later},
                    StatusRow{401, K::permanent_payload}, StatusRow{418, K::permanent_payload},
                    StatusRow{0, K::permanent_payload}, StatusRow{204, K::permanent_payload},
                    StatusRow{302, K::permanent_payload}, StatusRow{600, K::permanent_payload},
                    StatusRow{-1, K::permanent_payload}),
    [](const testing::TestParamInfo<StatusRow>& info) {
      return "status_" + std::to_string(info.param.status < 0 ? 0 : info.param.status) +
             (info.param.status < 0 ? "_negative" : "");
    });

TEST(ClassifyResponse, UnknownReasonIsKeptAndFlagged) {
  const ResponseAction a = classify_response(400, reason_body("SomethingNew"), kApnsId);
  EXPECT_EQ(a.outcome, K::permanent_payload);
  EXPECT_EQ(a.reason, "SomethingNew");
  EXPECT_NE(a.explanation.find("not in Apple's documented list"), std::string::npos);
}

TEST(ClassifyResponse, KnownReasonWinsOverAnUnusualStatus) {
  EXPECT_EQ(classify_response(400, reason_body("Unregistered"), "").outcome, K::unregistered);
  EXPECT_EQ(classify_response(500, reason_body("BadDeviceToken"), "").outcome, K::bad_device_token);
}

TEST(ClassifyResponse, ReasonAndApnsIdAreSanitised) {
  const ResponseAction a =
      classify_response(400, R"({"reason":"Bad\nThing\u0007)" + std::string(100, 'x') + "\"}",
                        std::string("id\r\n") + std::string(300, 'i'));
  EXPECT_EQ(a.reason.size(), 64u);
  EXPECT_EQ(a.reason.substr(0, 11), "Bad?Thing?x");
  EXPECT_EQ(a.apns_id.size(), 128u);
  EXPECT_EQ(a.apns_id.substr(0, 5), "id??i");
  const bool printable =
      std::all_of(a.reason.begin(), a.reason.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
  EXPECT_TRUE(printable);
}

TEST(ClassifyResponse, UnregisteredTimestampInMilliseconds) {
  const ResponseAction a =
      classify_response(410, R"({"reason":"Unregistered","timestamp":1454402113000})", kApnsId);
  EXPECT_EQ(a.outcome, K::unregistered);
  ASSERT_TRUE(a.unregistered_at.has_value());
  EXPECT_EQ(std::chrono::duration_cast<milliseconds>(a.unregistered_at->time_since_epoch()).count(),
            1454402113000);
}

TEST(ClassifyResponse, UnregisteredTimestampForms) {
  struct Case {
    std::string body;
    std::optional<long long> ms;
  };
  const Case cases[] = {
      {R"({"reason":"Unregistered","timestamp":"1454402113123"})", 1454402113123},
      {R"({"reason":"Unregistered","timestamp":1454402113123.0})", 1454402113123},
      {R"({"reason":"Unregistered","timestamp":0})", 0},
      {R"({"timestamp":1454402113000})", 1454402113000},  // 410 without a reason
      {R"({"reason":"Unregistered"})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":-5})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":"-5"})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":"soon"})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":""})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":null})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":[1]})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":1e300})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":18446744073709551615})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":9223372036854775807})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":"999999999999999999"})", std::nullopt},
      {R"({"reason":"Unregistered","timestamp":"99999999999999999999999"})", std::nullopt},
  };
  for (const Case& c : cases) {
    const ResponseAction a = classify_response(410, c.body, "");
    EXPECT_EQ(a.outcome, K::unregistered) << c.body;
    if (c.ms) {
      ASSERT_TRUE(a.unregistered_at.has_value()) << c.body;
      EXPECT_EQ(
          std::chrono::duration_cast<milliseconds>(a.unregistered_at->time_since_epoch()).count(),
          *c.ms)
          << c.body;
    } else {
      EXPECT_FALSE(a.unregistered_at.has_value()) << c.body;
    }
  }
}

TEST(ClassifyResponse, TimestampOnlyMattersForUnregistered) {
  const ResponseAction a =
      classify_response(400, R"({"reason":"BadDeviceToken","timestamp":1454402113000})", "");
  EXPECT_FALSE(a.unregistered_at.has_value());
}

TEST(SendOutcomeName, StableLabels) {
  EXPECT_STREQ(send_outcome_name(K::delivered), "delivered");
  EXPECT_STREQ(send_outcome_name(K::unregistered), "unregistered");
  EXPECT_STREQ(send_outcome_name(K::bad_device_token), "bad_device_token");
  EXPECT_STREQ(send_outcome_name(K::topic_mismatch), "topic_mismatch");
  EXPECT_STREQ(send_outcome_name(K::credential_failed), "credential_failed");
  EXPECT_STREQ(send_outcome_name(K::permanent_payload), "permanent_payload");
  EXPECT_STREQ(send_outcome_name(K::retry_exhausted), "retry_exhausted");
  EXPECT_STREQ(send_outcome_name(K::retry_later), "retry_later");
}

TEST(RetryBackoff, StaysWithinTheDoublingBoundUpToTheCap) {
  std::mt19937_64 rng(42);
  for (int attempt = 1; attempt <= 40; ++attempt) {
    const long long bound = std::min<long long>(300'000, 1000LL << std::min(attempt - 1, 20));
    long long max_seen = 0;
    for (int i = 0; i < 2000; ++i) {
      const long long ms = retry_backoff(attempt, rng).count();
      ASSERT_GE(ms, 0) << "attempt " << attempt;
      ASSERT_LE(ms, bound) << "attempt " << attempt;
      max_seen = std::max(max_seen, ms);
    }
    // Full jitter spreads over the whole range: the largest of 2000 draws is near the bound.
    EXPECT_GT(max_seen, bound * 9 / 10) << "attempt " << attempt;
  }
}

TEST(RetryBackoff, MeanGrowsThenCaps) {
  auto mean = [](int attempt) {
    std::mt19937_64 rng(7);
    long long sum = 0;
    for (int i = 0; i < 4000; ++i) sum += retry_backoff(attempt, rng).count();
    return static_cast<double>(sum) / 4000;
  };
  EXPECT_NEAR(mean(1), 500, 50);
  EXPECT_NEAR(mean(2), 1000, 100);
  EXPECT_NEAR(mean(5), 8000, 800);
  EXPECT_NEAR(mean(9), 128000, 12800);   // bound 256 s
  EXPECT_NEAR(mean(10), 150000, 15000);  // bound 512 s, capped at 300 s
  EXPECT_NEAR(mean(30), 150000, 15000);
}

TEST(RetryBackoff, AttemptBelowOneCountsAsOneAndHugeAttemptsAreCapped) {
  std::mt19937_64 rng(1);
  for (int attempt : {0, -1, -2147483647 - 1}) {
    EXPECT_LE(retry_backoff(attempt, rng).count(), 1000);
  }
  for (int attempt : {10, 63, 64, 65, 1000, 2147483647}) {
    EXPECT_LE(retry_backoff(attempt, rng).count(), 300'000);
  }
}

TEST(RetryBackoff, DeterministicGivenTheRng) {
  std::mt19937_64 a(123);
  std::mt19937_64 b(123);
  for (int attempt = 1; attempt <= 12; ++attempt) {
    EXPECT_EQ(retry_backoff(attempt, a), retry_backoff(attempt, b));
  }
  // Pinned values: the mapping is ours, not a standard library's distribution.
  std::mt19937_64 c(123);
  const std::uint64_t first = std::mt19937_64(123)();
  EXPECT_EQ(retry_backoff(3, c).count(), static_cast<long long>(first % 4001));
}

}  // namespace
}  // namespace mp::apns
