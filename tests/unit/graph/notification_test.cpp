// parse_notifications over the documented samples (tests/data/graph, copied from
// ../shared/graph-samples) and hostile bodies; the validation token; dates and resources.
#include "graph/notification.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace mp::graph {
namespace {

std::string sample(const std::string& name) {
  std::ifstream in(std::filesystem::path(MAILPUSH_SOURCE_DIR) / "tests" / "data" / "graph" / name,
                   std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

Notifications parsed(std::string_view body) {
  auto r = parse_notifications(body);
  if (auto* e = std::get_if<ParseError>(&r)) {
    ADD_FAILURE() << refusal_name(e->refusal) << ": " << e->message;
    return {};
  }
  return std::get<Notifications>(r);
}

ParseError refused(std::string_view body, const ParseLimits& limits = {}) {
  auto r = parse_notifications(body, limits);
  if (auto* e = std::get_if<ParseError>(&r)) return *e;
  ADD_FAILURE() << "accepted: " << body.substr(0, 80);
  return {};
}

constexpr const char* kMessage =
    "AAMkAGUwNjQ4ZjIxLTQ3Y2YtNDViMi1iZjc4LTMA3ZWE0MwBGAAAAAAA5E0ADpQ8bRbH9AgYbvbNAAA=";

TEST(GraphSamples, ACreatedUnreadMessage) {
  const auto n = parsed(sample("01-created-unread-message.json"));
  ASSERT_EQ(n.items.size(), 1u);
  const Item& i = n.items[0];
  EXPECT_EQ(i.subscription_id, "7f105c7d-2dc5-4530-97cd-4e7ae6534c07");
  EXPECT_EQ(i.change, ChangeType::created);
  EXPECT_EQ(i.lifecycle, LifecycleEvent::none);
  EXPECT_EQ(i.message_id, kMessage);
  EXPECT_EQ(i.client_state, "c3RhdGUtb2YtZGV2aWNlLTE");
  EXPECT_EQ(i.tenant_id, "84bd8158-6d4d-4958-8b9f-9d6445542f95");
  ASSERT_TRUE(i.expires_at);
  EXPECT_EQ(*i.expires_at, 1797099825);  // 2026-12-12T18:23:45Z
}

TEST(GraphSamples, ADeletedMessageNamesTheSameMessage) {
  const auto n = parsed(sample("02-deleted-message-read.json"));
  ASSERT_EQ(n.items.size(), 1u);
  EXPECT_EQ(n.items[0].change, ChangeType::deleted);
  EXPECT_EQ(n.items[0].message_id, kMessage);
}

TEST(GraphSamples, ABatchKeepsEveryItemInOrder) {
  const auto n = parsed(sample("03-batch-created-created-updated.json"));
  ASSERT_EQ(n.items.size(), 3u);
  EXPECT_EQ(n.items[0].change, ChangeType::created);
  EXPECT_EQ(n.items[1].change, ChangeType::created);
  EXPECT_EQ(n.items[2].change, ChangeType::updated);
  EXPECT_NE(n.items[0].message_id, n.items[1].message_id);
  EXPECT_EQ(n.items[1].message_id, n.items[2].message_id);
}

TEST(GraphSamples, ALifecycleEventHasNoChangeType) {
  const auto n = parsed(sample("04-lifecycle-reauthorization-required.json"));
  ASSERT_EQ(n.items.size(), 1u);
  EXPECT_EQ(n.items[0].lifecycle, LifecycleEvent::reauthorization_required);
  EXPECT_EQ(n.items[0].message_id, "");
  EXPECT_EQ(n.items[0].client_state, "c3RhdGUtb2YtZGV2aWNlLTE");
}

TEST(GraphNotifications, UnknownChangeTypesAndLifecycleEventsAreKeptAsOther) {
  const auto n =
      parsed(R"({"value":[{"subscriptionId":"s","changeType":"created,updated","resource":"x"},)"
             R"({"subscriptionId":"s","lifecycleEvent":"somethingNew"},)"
             R"({"subscriptionId":"s","lifecycleEvent":"subscriptionRemoved"},)"
             R"({"subscriptionId":"s","lifecycleEvent":"missed"}]})");
  ASSERT_EQ(n.items.size(), 4u);
  EXPECT_EQ(n.items[0].change, ChangeType::other);
  EXPECT_EQ(n.items[1].lifecycle, LifecycleEvent::other);
  EXPECT_EQ(n.items[2].lifecycle, LifecycleEvent::subscription_removed);
  EXPECT_EQ(n.items[3].lifecycle, LifecycleEvent::missed);
}

TEST(GraphNotifications, TheMessageIdComesFromTheResourceWithoutResourceData) {
  const auto n = parsed(
      R"({"value":[{"subscriptionId":"s","changeType":"created","resource":"Users/u/Messages/M1"},)"
      R"j({"subscriptionId":"s","changeType":"created","resource":"me/messages('M2')"}]})j");
  ASSERT_EQ(n.items.size(), 2u);
  EXPECT_EQ(n.items[0].message_id, "M1");
  EXPECT_EQ(n.items[1].message_id, "M2");
  EXPECT_EQ(message_id_of_resource("Users/u/Events/E1"), "");
  EXPECT_EQ(message_id_of_resource(""), "");
  EXPECT_EQ(message_id_of_resource("me/messages('')"), "");
}

TEST(GraphNotifications, HostileBodiesAreRefusedWithAReason) {
  EXPECT_EQ(refused("").refusal, Refusal::invalid_json);
  EXPECT_EQ(refused("{\"value\":[").refusal, Refusal::invalid_json);
  EXPECT_EQ(refused("[]").refusal, Refusal::wrong_shape);
  EXPECT_EQ(refused("{}").refusal, Refusal::wrong_shape);
  EXPECT_EQ(refused(R"({"value":{}})").refusal, Refusal::wrong_shape);
  EXPECT_EQ(refused(R"({"value":[1]})").refusal, Refusal::wrong_shape);
  EXPECT_EQ(refused(R"({"value":[{"changeType":"created"}]})").refusal, Refusal::wrong_shape);
  EXPECT_EQ(refused(R"({"value":[{"subscriptionId":"s"}]})").refusal, Refusal::wrong_shape);
  // Wrong types.
  EXPECT_EQ(refused(R"({"value":[{"subscriptionId":7,"changeType":"created"}]})").refusal,
            Refusal::wrong_shape);
  EXPECT_EQ(refused(R"({"value":[{"subscriptionId":"s","changeType":["created"]}]})").refusal,
            Refusal::wrong_shape);
  EXPECT_EQ(
      refused(R"({"value":[{"subscriptionId":"s","changeType":"created","resourceData":"x"}]})")
          .refusal,
      Refusal::wrong_shape);
  // A control character smuggled in through an escape.
  EXPECT_EQ(refused(R"({"value":[{"subscriptionId":"s\u0000","changeType":"created"}]})").refusal,
            Refusal::wrong_shape);
  // Invalid UTF-8 inside a string.
  EXPECT_EQ(refused("{\"value\":[{\"subscriptionId\":\"\xC0\xAF\",\"changeType\":\"x\"}]}").refusal,
            Refusal::invalid_json);
  EXPECT_EQ(refused(R"({"value":[],"n":1e999})").refusal, Refusal::invalid_json);
}

TEST(GraphNotifications, LimitsComeBeforeTheParser) {
  ParseLimits limits;
  limits.max_body_bytes = 100;
  const auto big = refused(std::string(101, ' '), limits);
  EXPECT_EQ(big.refusal, Refusal::too_large);

  const std::string deep = std::string(10000, '[') + std::string(10000, ']');
  EXPECT_EQ(refused(deep).refusal, Refusal::too_deep);
  // Brackets inside strings do not count.
  EXPECT_TRUE(std::holds_alternative<Notifications>(parse_notifications(
      R"({"value":[{"subscriptionId":"[[[[[[[[[[[[[[[[","changeType":"updated"}]})")));

  std::string many = R"({"value":[)";
  for (int i = 0; i < 1001; ++i) {
    many += std::string(i ? "," : "") + R"({"subscriptionId":"s","changeType":"updated"})";
  }
  many += "]}";
  EXPECT_EQ(refused(many).refusal, Refusal::wrong_shape);

  const std::string long_id(2049, 'a');
  EXPECT_EQ(
      refused(R"({"value":[{"subscriptionId":")" + long_id + R"(","changeType":"x"}]})").refusal,
      Refusal::value_too_long);
  // A subscription id is a GUID: one over 128 bytes refuses its body here, so that it never
  // reaches (and fails) a batch written with other registrations' notifications.
  const auto over = refused(R"({"value":[{"subscriptionId":")" + std::string(129, 'b') +
                            R"(","changeType":"created"}]})");
  EXPECT_EQ(over.refusal, Refusal::value_too_long);
  EXPECT_NE(over.message.find("value[0].subscriptionId is over 128 bytes"), std::string::npos)
      << over.message;
  EXPECT_TRUE(std::holds_alternative<Notifications>(
      parse_notifications(R"({"value":[{"subscriptionId":")" + std::string(128, 'b') +
                          R"(","changeType":"created"}]})")));
}

TEST(GraphNotifications, MessagesNeverQuoteTheBody) {
  const auto e = refused(R"({"value":[{"subscriptionId":"secret-looking","changeType":)");
  EXPECT_EQ(e.message.find("secret-looking"), std::string::npos);
}

TEST(GraphDates, ParsesTheDocumentedFormsAndRefusesOthers) {
  EXPECT_EQ(parse_datetime("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(parse_datetime("2026-12-12T18:23:45.9356913Z"), 1797099825);
  EXPECT_EQ(parse_datetime("2026-12-12T19:23:45+01:00"), 1797099825);
  EXPECT_EQ(parse_datetime("2024-02-29T00:00:00Z"), 1709164800);
  EXPECT_FALSE(parse_datetime("2026-12-12 18:23:45Z"));
  EXPECT_FALSE(parse_datetime("2026-13-12T18:23:45Z"));
  EXPECT_FALSE(parse_datetime("2026-12-12T18:23:45"));
  EXPECT_FALSE(parse_datetime("2026-12-12T18:23:45.Z"));
  EXPECT_FALSE(parse_datetime("tomorrow"));
}

std::string token_of(std::string_view target) {
  auto t = validation_token(target);
  if (!t) return "<none>";
  if (auto* e = std::get_if<TokenError>(&*t)) return "<error: " + e->message + ">";
  return std::get<std::string>(*t);
}

TEST(GraphValidationToken, IsUrlDecoded) {
  EXPECT_EQ(token_of("/graph/v1/notify/x?validationToken=Validation%3a+Testing+client"),
            "Validation: Testing client");
  EXPECT_EQ(token_of("/graph/v1/notify/x?a=1&validationToken=abc%20d&b=2"), "abc d");
  EXPECT_EQ(token_of("/graph/v1/notify/x?validationToken=%E2%9C%93"), "\xE2\x9C\x93");
  EXPECT_EQ(token_of("/graph/v1/notify/x"), "<none>");
  EXPECT_EQ(token_of("/graph/v1/notify/x?other=1"), "<none>");
}

TEST(GraphValidationToken, RefusesWhatCannotBeEchoedSafely) {
  for (const char* bad :
       {"?validationToken=", "?validationToken=%3Cscript%3E", "?validationToken=a%0D%0ASet-Cookie",
        "?validationToken=a%00b", "?validationToken=%C0%AF", "?validationToken=%zz",
        "?validationToken=%4"}) {
    const std::string t = token_of(std::string("/graph/v1/notify/x") + bad);
    EXPECT_EQ(t.rfind("<error:", 0), 0u) << bad << " -> " << t;
  }
  EXPECT_EQ(token_of("/g?validationToken=" + std::string(1025, 'a')).rfind("<error:", 0), 0u);
  EXPECT_EQ(token_of("/g?validationToken=" + std::string(1024, 'a')).size(), 1024u);
}

}  // namespace
}  // namespace mp::graph
