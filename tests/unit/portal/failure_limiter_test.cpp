// The failed-attempt limiter: N failures per window per address, then a wait that ends.
#include "portal/failure_limiter.hpp"

#include <gtest/gtest.h>

namespace mp::portal {
namespace {

using namespace std::chrono_literals;

TEST(FailureLimiter, BlocksAfterTheLimitUntilTheWindowEnds) {
  FailureLimiter limiter(3, 900s);
  const auto t0 = FailureLimiter::Clock::time_point{} + 1000h;
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(limiter.blocked("192.0.2.1", t0 + std::chrono::seconds(i)));
    limiter.record_failure("192.0.2.1", t0 + std::chrono::seconds(i));
  }
  const auto wait = limiter.blocked("192.0.2.1", t0 + 100s);
  ASSERT_TRUE(wait);
  EXPECT_EQ(*wait, 800s);
  EXPECT_FALSE(limiter.blocked("192.0.2.2", t0 + 100s)) << "other addresses are not affected";
  EXPECT_FALSE(limiter.blocked("192.0.2.1", t0 + 900s)) << "a new window";
  limiter.record_failure("192.0.2.1", t0 + 901s);
  EXPECT_FALSE(limiter.blocked("192.0.2.1", t0 + 902s));
}

TEST(FailureLimiter, TracksABoundedNumberOfAddresses) {
  FailureLimiter limiter(1, 900s, 100);
  const auto t0 = FailureLimiter::Clock::time_point{} + 1000h;
  for (int i = 0; i < 1000; ++i) {
    limiter.record_failure("198.51.100." + std::to_string(i), t0 + std::chrono::milliseconds(i));
  }
  EXPECT_LE(limiter.tracked(), 100u);
  // The newest failures are still counted.
  EXPECT_TRUE(limiter.blocked("198.51.100.999", t0 + 2s));
}

TEST(FailureLimiter, AFloodOfNewAddressesDoesNotLiftABlock) {
  FailureLimiter limiter(2, 900s, 100);
  const auto t0 = FailureLimiter::Clock::time_point{} + 1000h;
  limiter.record_failure("192.0.2.66", t0);
  limiter.record_failure("192.0.2.66", t0);
  ASSERT_TRUE(limiter.blocked("192.0.2.66", t0 + 1s));
  for (int i = 0; i < 1000; ++i) {
    limiter.record_failure("2001:db8:" + std::to_string(i) + "::/64", t0 + 2s);
  }
  EXPECT_LE(limiter.tracked(), 100u);
  EXPECT_TRUE(limiter.blocked("192.0.2.66", t0 + 3s));
}

}  // namespace
}  // namespace mp::portal
