// Tests of src/common/log: one JSON object per line, levels, invalid UTF-8, the flood throttle.
#include "common/log.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace mp {
namespace {

class LogCapture : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_sink([this](std::string_view line) { lines.emplace_back(line); });
  }
  void TearDown() override {
    log::set_sink(nullptr);
    log::set_level(log::Level::info);
  }
  std::vector<std::string> lines;
};

TEST_F(LogCapture, WritesOneJsonObjectPerLine) {
  log::set_static_field("region", "test-region");
  log::info("unit.event", {{"count", 3}, {"note", "line\nbreak"}});
  ASSERT_EQ(lines.size(), 1u);
  ASSERT_EQ(lines[0].back(), '\n');
  EXPECT_EQ(lines[0].find('\n'), lines[0].size() - 1) << "the record must be a single line";
  const auto j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j["event"], "unit.event");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["count"], 3);
  EXPECT_EQ(j["region"], "test-region");
  EXPECT_TRUE(j["ts"].get<std::string>().ends_with("Z"));
}

TEST_F(LogCapture, FiltersByLevelAndSurvivesInvalidUtf8) {
  log::set_level(log::Level::warn);
  log::info("dropped");
  log::debug("dropped");
  log::warn("kept", {{"bytes", std::string("\xff\xfe bad")}});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(nlohmann::json::accept(lines[0]));
  log::Level l{};
  EXPECT_TRUE(log::parse_level("error", l));
  EXPECT_EQ(l, log::Level::error);
  EXPECT_FALSE(log::parse_level("verbose", l));
}

TEST_F(LogCapture, ThrottleHoldsAFloodBackAndCountsWhatItHeld) {
  log::Throttle throttle(20, 3);  // bursts of 3, then 20 a second
  for (int i = 0; i < 50; ++i) throttle.write(log::Level::info, "unit.flood", {{"i", i}});
  ASSERT_EQ(lines.size(), 3u) << "the burst only";
  std::this_thread::sleep_for(std::chrono::milliseconds(120));  // at least two more tokens
  throttle.write(log::Level::info, "unit.flood", {{"i", 50}});
  ASSERT_EQ(lines.size(), 4u);
  const auto j = nlohmann::json::parse(lines[3]);
  EXPECT_EQ(j["i"], 50);
  EXPECT_EQ(j["suppressed"], 47) << "the lines held back are counted";
  throttle.write(log::Level::debug, "unit.flood", {});
  EXPECT_EQ(lines.size(), 4u) << "a level that is off writes nothing and costs no token";
}

}  // namespace
}  // namespace mp
