// Tests of src/common/redact: what of a secret may reach a log line.
#include "common/redact.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mp {
namespace {

TEST(Redact, KeepsAPrefixAndTheLengthOnly) {
  const std::string token(64, 'a');
  EXPECT_EQ(redact(token), "aaaaaaaa…(64)");
  EXPECT_EQ(redact("short"), "…(5)");
  EXPECT_EQ(redact(""), "…(0)");
}

}  // namespace
}  // namespace mp
