// Tests of src/common/version: the version line every binary prints.
#include "common/version.hpp"

#include <gtest/gtest.h>

#include <string>

namespace mp {
namespace {

TEST(Version, NamesProgramVersionAndCommit) {
  const std::string line = version_line("mailpushd");
  EXPECT_EQ(line.rfind("mailpushd ", 0), 0u);
  EXPECT_NE(line.find(version()), std::string::npos);
  EXPECT_NE(line.find("commit"), std::string::npos);
}

}  // namespace
}  // namespace mp
