// RateMeter: the rate moves only once a quarter second has passed, and is what was counted over
// that time.
#include "common/rate_meter.hpp"

#include <gtest/gtest.h>

namespace mp {
namespace {

using namespace std::chrono_literals;

TEST(RateMeter, MovesEachQuarterSecondToWhatWasCountedOverIt) {
  const auto t0 = RateMeter::Clock::now();
  RateMeter meter;
  EXPECT_EQ(meter.per_second(), 0);
  meter.add(100, t0 + 100ms);
  EXPECT_EQ(meter.per_second(), 0) << "less than a quarter second: not yet";
  meter.add(400, t0 + 500ms);
  EXPECT_NEAR(meter.per_second(), 1000, 10) << "500 events in ~0.5 s";
  meter.add(1, t0 + 600ms);
  EXPECT_NEAR(meter.per_second(), 1000, 10) << "kept until the next quarter second";
  meter.add(0, t0 + 1500ms);
  EXPECT_NEAR(meter.per_second(), 1, 0.1) << "one event in a second: a low rate again";
}

}  // namespace
}  // namespace mp
