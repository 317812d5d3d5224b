// SecretBytes: holds its bytes, moves without copies, and never prints them.
#include "common/secret_bytes.hpp"

#include <gtest/gtest.h>

#include <sstream>
#include <utility>

namespace mp {
namespace {

TEST(SecretBytes, HoldsACopyOfTheBytes) {
  const std::string text = "key material \x01\x02";
  SecretBytes secret(text);
  EXPECT_EQ(secret.size(), text.size());
  EXPECT_EQ(secret.view(), text);
  EXPECT_EQ(secret.bytes().size(), text.size());
  EXPECT_FALSE(secret.empty());
  SecretBytes sized(4);
  EXPECT_EQ(sized.view(), std::string(4, '\0'));
}

TEST(SecretBytes, MovesHandTheOneBufferOn) {
  SecretBytes first(std::string_view("abcdef"));
  const std::uint8_t* buffer = first.data();
  SecretBytes second(std::move(first));
  EXPECT_EQ(second.data(), buffer);
  EXPECT_EQ(second.view(), "abcdef");
  EXPECT_TRUE(first.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is defined
  SecretBytes third;
  third = std::move(second);
  EXPECT_EQ(third.data(), buffer);
  EXPECT_TRUE(second.empty());  // NOLINT
  third.clear();
  EXPECT_TRUE(third.empty());
  EXPECT_EQ(third.data(), nullptr);
}

TEST(SecretBytes, PrintsOnlyItsSize) {
  SecretBytes secret(std::string_view("PRIVATE-KEY-BYTES"));
  std::ostringstream out;
  out << secret;
  EXPECT_EQ(out.str(), "[secret: 17 bytes]");
  EXPECT_EQ(::testing::PrintToString(secret).find("PRIVATE"), std::string::npos);
}

}  // namespace
}  // namespace mp
