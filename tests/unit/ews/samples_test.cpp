// Data-driven tests of parse_send_notification and build_reply over the real samples in
// tests/data/ews, checked against the facts listed in EXPECTED.json.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "ews/send_notification.hpp"
#include "test_ews.hpp"

namespace mp::ews::test {
namespace {

using nlohmann::json;

const json& expected() {
  static const json doc = json::parse(read_data_file("EXPECTED.json"));
  return doc;
}

std::vector<std::string> sample_files() {
  std::vector<std::string> files;
  try {
    for (const auto& sample : expected().at("samples")) files.push_back(sample.at("file"));
  } catch (const std::exception&) {
    // Reported by SamplesIndex.EveryFileIsListed.
  }
  return files;
}

const json& sample(const std::string& file) {
  for (const auto& s : expected().at("samples")) {
    if (s.at("file") == file) return s;
  }
  throw std::runtime_error("no sample " + file);
}

std::optional<std::string> opt_string(const json& j) {
  if (j.is_null()) return std::nullopt;
  return j.get<std::string>();
}

std::optional<std::int64_t> opt_int(const json& j) {
  if (j.is_null()) return std::nullopt;
  return j.get<std::int64_t>();
}

TEST(SamplesIndex, EveryFileIsListed) {
  std::set<std::string> listed;
  for (const auto& file : sample_files()) listed.insert(file);
  EXPECT_EQ(listed.size(), 11u);
  for (const auto& entry : std::filesystem::directory_iterator(data_dir())) {
    if (entry.path().extension() != ".xml") continue;
    EXPECT_TRUE(listed.count(entry.path().filename().string()))
        << entry.path().filename() << " is not in EXPECTED.json";
  }
  for (const auto& file : listed) EXPECT_TRUE(std::filesystem::exists(data_dir() / file)) << file;
}

class Sample : public ::testing::TestWithParam<std::string> {};

TEST_P(Sample, MatchesExpectedFacts) {
  const json& s = sample(GetParam());
  const std::string body = read_data_file(GetParam());
  const std::string kind = s.at("kind");
  const std::string expect = s.at("expect");

  if (kind == "reply") {
    // Replies are our builder's reference: read both by namespace and compare the status.
    const std::string want = s.at("subscription_status");
    EXPECT_EQ(reply_subscription_status(body), want);
    const auto status = want == "OK" ? SubscriptionStatus::ok : SubscriptionStatus::unsubscribe;
    EXPECT_EQ(reply_subscription_status(build_reply(status)), want);
    // A reply is not a callback.
    auto refused = refusal_of(body);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->refusal, Refusal::not_soap);
    return;
  }

  ASSERT_EQ(kind, "notification");
  if (expect.starts_with("reject")) {
    auto refused = refusal_of(body);
    ASSERT_TRUE(refused) << "a broken as-found body was accepted";
    EXPECT_EQ(refused->refusal, Refusal::malformed_xml) << refused->message;
    EXPECT_FALSE(refused->message.empty());
    return;
  }

  ASSERT_EQ(expect, "parse_ok");
  const SendNotification parsed = must_parse(body);
  EXPECT_EQ(parsed.server_version, s.at("server_version_header").get<std::string>());
  ASSERT_EQ(parsed.messages.size(), 1u);
  const ResponseMessage& m = parsed.messages.front();
  EXPECT_EQ(m.response_class, s.at("response_class").get<std::string>());
  EXPECT_EQ(m.response_code, s.at("response_code").get<std::string>());
  EXPECT_EQ(m.message_text,
            s.contains("message_text") ? opt_string(s.at("message_text")) : std::nullopt);
  std::map<std::string, std::string> xml_values;
  if (s.contains("message_xml_values")) {
    xml_values = s.at("message_xml_values").get<std::map<std::string, std::string>>();
  }
  EXPECT_EQ(m.message_xml_values, xml_values);

  if (s.at("subscription_id").is_null()) {
    EXPECT_FALSE(m.notification);
    EXPECT_TRUE(s.at("previous_watermark").is_null());
    EXPECT_TRUE(s.at("more_events").is_null());
    EXPECT_TRUE(s.at("events").empty());
    // On an error callback the subscription is named only in MessageXml.
    EXPECT_EQ(m.subscription_id(), xml_values.count("SubscriptionId")
                                       ? std::optional(xml_values.at("SubscriptionId"))
                                       : std::nullopt);
    return;
  }
  ASSERT_TRUE(m.notification);
  const Notification& n = *m.notification;
  EXPECT_EQ(n.subscription_id, s.at("subscription_id").get<std::string>());
  EXPECT_EQ(m.subscription_id(), n.subscription_id);
  EXPECT_EQ(n.previous_watermark, s.at("previous_watermark").get<std::string>());
  EXPECT_EQ(n.more_events, s.at("more_events").get<bool>());
  EXPECT_EQ(n.unknown_events, 0u);
  const json& events = s.at("events");
  ASSERT_EQ(n.events.size(), events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE("event " + std::to_string(i));
    const json& want = events[i];
    const Event& got = n.events[i];
    EXPECT_EQ(event_type_name(got.type), want.at("type").get<std::string>());
    EXPECT_EQ(got.element, want.at("type").get<std::string>() + "Event");
    EXPECT_EQ(got.watermark, want.at("watermark").get<std::string>());
    EXPECT_EQ(got.timestamp, opt_string(want.at("timestamp")));
    EXPECT_EQ(got.item_id, opt_string(want.at("item_id")));
    EXPECT_EQ(got.folder_id, opt_string(want.at("folder_id")));
    EXPECT_EQ(got.parent_folder_id, opt_string(want.at("parent_folder_id")));
    EXPECT_EQ(got.unread_count, opt_int(want.at("unread_count")));
    EXPECT_FALSE(got.old_item_id);
    EXPECT_FALSE(got.old_folder_id);
    EXPECT_FALSE(got.old_parent_folder_id);
  }
}

INSTANTIATE_TEST_SUITE_P(Ews, Sample, ::testing::ValuesIn(sample_files()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.rfind('.'));
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return "f" + name;
                         });

TEST(SamplesIndex, RepairedCopyDiffersFromAsFoundByOneSlash) {
  // Guards the sample set itself: the 01 repair is the one '/' the source lost.
  const std::string asfound = read_data_file("01-rooms-doc-exo-two-modified-asfound.xml");
  const std::string repaired = read_data_file("01-rooms-doc-exo-two-modified-repaired.xml");
  EXPECT_EQ(repaired.size(), 2019u);
  EXPECT_EQ(repaired.size(), asfound.size() + 1);
}

}  // namespace
}  // namespace mp::ews::test
