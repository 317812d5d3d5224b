// Tests of src/common/result: a value or an error with its code and message.
#include "common/result.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mp {
namespace {

TEST(Result, HoldsValueOrError) {
  Result<int> good = 42;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 42);
  Result<int> bad = make_error(Errc::not_found, "no such customer");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::not_found);
  EXPECT_EQ(bad.error().message, "no such customer");
  Status fine;
  EXPECT_TRUE(fine.ok());
  Status failed = make_error(Errc::unavailable, "down");
  EXPECT_FALSE(failed.ok());
  EXPECT_STREQ(errc_name(failed.error().code), "unavailable");
}

}  // namespace
}  // namespace mp
