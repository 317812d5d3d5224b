// Tests of build_request: exact path, headers and body, and every refusal.
#include "apns/request.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace mp::apns {
namespace {

using Headers = std::vector<std::pair<std::string, std::string>>;
using std::chrono::seconds;
using std::chrono::system_clock;

constexpr const char* kTokenHex =
    "fbff3e7d0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829300fe";

BadgeNotification valid() {
  BadgeNotification n;
  n.device_token_hex = kTokenHex;
  n.topic = "com.example.Mail";
  n.badge = 7;
  n.expires = system_clock::time_point(seconds(1'700'000'000));
  return n;
}

ApnsRequest must_build(const BadgeNotification& n) {
  Result<ApnsRequest> r = build_request(n);
  if (!r.ok()) {
    ADD_FAILURE() << r.error().message;
    return {};
  }
  return std::move(r).value();
}

std::string refusal(const BadgeNotification& n) {
  Result<ApnsRequest> r = build_request(n);
  if (r.ok()) {
    ADD_FAILURE() << "expected a refusal";
    return {};
  }
  EXPECT_EQ(r.error().code, Errc::invalid_argument);
  return r.error().message;
}

TEST(BuildRequest, ExactRequestForBadgeSeven) {
  const ApnsRequest r = must_build(valid());
  EXPECT_EQ(r.path, std::string("/3/device/") + kTokenHex);
  EXPECT_EQ(r.headers, (Headers{{"apns-topic", "com.example.Mail"},
                                {"apns-push-type", "alert"},
                                {"apns-priority", "10"},
                                {"apns-expiration", "1700000000"}}));
  EXPECT_EQ(r.body, R"({"aps":{"badge":7}})");
}

TEST(BuildRequest, ABackgroundPushCarriesNoBadgeAndPriorityFive) {
  BadgeNotification n = valid();
  n.background = true;
  n.priority = 5;
  const ApnsRequest r = must_build(n);
  EXPECT_EQ(r.headers, (Headers{{"apns-topic", "com.example.Mail"},
                                {"apns-push-type", "background"},
                                {"apns-priority", "5"},
                                {"apns-expiration", "1700000000"}}));
  EXPECT_EQ(r.body, R"({"aps":{"content-available":1}})");
  n.priority = 10;
  EXPECT_NE(refusal(n).find("only 5"), std::string::npos);
}

struct BodyRow {
  int badge;
  bool content_available;
  const char* body;
};

class BuildRequestBody : public testing::TestWithParam<BodyRow> {};

TEST_P(BuildRequestBody, IsExactly) {
  BadgeNotification n = valid();
  n.badge = GetParam().badge;
  n.content_available = GetParam().content_available;
  EXPECT_EQ(must_build(n).body, GetParam().body);
  EXPECT_EQ(badge_payload(GetParam().badge, GetParam().content_available), GetParam().body);
}

INSTANTIATE_TEST_SUITE_P(
    Badges, BuildRequestBody,
    testing::Values(BodyRow{0, false, R"({"aps":{"badge":0}})"},
                    BodyRow{7, false, R"({"aps":{"badge":7}})"},
                    BodyRow{99999, false, R"({"aps":{"badge":99999}})"},
                    BodyRow{0, true, R"({"aps":{"badge":0,"content-available":1}})"},
                    BodyRow{7, true, R"({"aps":{"badge":7,"content-available":1}})"},
                    BodyRow{99999, true, R"({"aps":{"badge":99999,"content-available":1}})"},
                    BodyRow{2147483647, true,
                            R"({"aps":{"badge":2147483647,"content-available":1}})"}));

TEST(BuildRequest, ExpirationZeroMeansDeliverOnceOrDrop) {
  BadgeNotification n = valid();
  n.expires = system_clock::time_point{};
  EXPECT_EQ(must_build(n).headers.at(3),
            (std::pair<std::string, std::string>{"apns-expiration", "0"}));
}

TEST(BuildRequest, ExpirationIsWholeSecondsRoundedDown) {
  BadgeNotification n = valid();
  n.expires = system_clock::time_point(seconds(1'700'000'000)) + std::chrono::milliseconds(999);
  EXPECT_EQ(must_build(n).headers.at(3).second, "1700000000");
}

TEST(BuildRequest, ExpirationBeforeEpochIsRefused) {
  BadgeNotification n = valid();
  n.expires = system_clock::time_point(seconds(-1));
  EXPECT_NE(refusal(n).find("before 1970"), std::string::npos);
}

TEST(BuildRequest, PriorityFiveAndCollapseId) {
  BadgeNotification n = valid();
  n.priority = 5;
  n.collapse_id = "mbx-42";
  n.topic = "com.example.mail-app.voip";
  const ApnsRequest r = must_build(n);
  EXPECT_EQ(r.headers, (Headers{{"apns-topic", "com.example.mail-app.voip"},
                                {"apns-push-type", "alert"},
                                {"apns-priority", "5"},
                                {"apns-expiration", "1700000000"},
                                {"apns-collapse-id", "mbx-42"}}));
}

TEST(BuildRequest, CollapseIdOf64BytesIsAcceptedAnd65Refused) {
  BadgeNotification n = valid();
  n.collapse_id = std::string(64, 'c');
  EXPECT_EQ(must_build(n).headers.back().second, std::string(64, 'c'));
  n.collapse_id = std::string(65, 'c');
  EXPECT_NE(refusal(n).find("65 bytes"), std::string::npos);
}

TEST(BuildRequest, CollapseIdMustBeAUsableHeaderValue) {
  BadgeNotification n = valid();
  for (const std::string& bad : {std::string(""), std::string("a\r\nb"), std::string(" a"),
                                 std::string("a "), std::string("a\0b", 3)}) {
    n.collapse_id = bad;
    EXPECT_NE(refusal(n).find("collapse id"), std::string::npos);
  }
}

TEST(BuildRequest, BadPriorityIsRefused) {
  for (int p : {0, 1, 4, 6, 9, 11, -10}) {
    BadgeNotification n = valid();
    n.priority = p;
    EXPECT_NE(refusal(n).find("priority is " + std::to_string(p)), std::string::npos);
  }
}

TEST(BuildRequest, NegativeBadgeIsRefused) {
  BadgeNotification n = valid();
  n.badge = -1;
  EXPECT_NE(refusal(n).find("badge is -1"), std::string::npos);
}

TEST(BuildRequest, EmptyTopicIsRefused) {
  BadgeNotification n = valid();
  n.topic = "";
  EXPECT_NE(refusal(n).find("topic (apns-topic) is empty"), std::string::npos);
}

TEST(BuildRequest, TopicOutsideBundleIdRulesIsRefused) {
  for (const char* bad : {"com.example Mail", "com.example_mail", "com/example", "com.exämple",
                          ".com.example", "com.example.", "com..example", "com.example\n"}) {
    BadgeNotification n = valid();
    n.topic = bad;
    const std::string message = refusal(n);
    EXPECT_NE(message.find("bundle id"), std::string::npos) << bad;
    EXPECT_EQ(message.find(bad), std::string::npos) << "echoes the topic: " << message;
  }
  BadgeNotification n = valid();
  n.topic = std::string(256, 'a');
  EXPECT_NE(refusal(n).find("256 characters"), std::string::npos);
  n.topic = std::string(255, 'a');
  EXPECT_TRUE(build_request(n).ok());
}

TEST(BuildRequest, TokenMustBeNormalisedAndIsNeverEchoed) {
  for (const std::string& bad :
       {std::string(""),
        std::string("FBFF3E7D0A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293"),
        std::string(kTokenHex) + "/../x", std::string(kTokenHex) + "a", std::string(202, 'a'),
        std::string("+/8+fQobLD1OX2BxgpOktcbX6PkKGyw9Tl9gcYKTAP4=")}) {
    BadgeNotification n = valid();
    n.device_token_hex = bad;
    const std::string message = refusal(n);
    EXPECT_NE(message.find("normalize_device_token"), std::string::npos);
    if (bad.size() >= 8) {
      EXPECT_EQ(message.find(bad.substr(0, 8)), std::string::npos) << message;
    }
  }
}

TEST(BuildRequest, HundredByteTokenMakesTheLongestPath) {
  BadgeNotification n = valid();
  n.device_token_hex = std::string(200, 'f');
  EXPECT_EQ(must_build(n).path, "/3/device/" + std::string(200, 'f'));
}

}  // namespace
}  // namespace mp::apns
