// Text checks: well-formed UTF-8 (RFC 3629) and the ASCII classes, byte by byte at the edges.
#include "common/text.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace mp {
namespace {

using namespace std::string_view_literals;

TEST(Utf8, AcceptsEveryWellFormedLength) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ASCII with \t tab and \x7F DEL"));
  EXPECT_TRUE(is_valid_utf8("\0"sv));
  EXPECT_TRUE(is_valid_utf8("caf\xC3\xA9"));            // U+00E9
  EXPECT_TRUE(is_valid_utf8("\xC2\x80"));               // U+0080, the first two-byte one
  EXPECT_TRUE(is_valid_utf8("\xDF\xBF"));               // U+07FF
  EXPECT_TRUE(is_valid_utf8("\xE0\xA0\x80"));           // U+0800, the first three-byte one
  EXPECT_TRUE(is_valid_utf8("\xE2\x82\xAC"));           // U+20AC euro sign
  EXPECT_TRUE(is_valid_utf8("\xED\x9F\xBF"));           // U+D7FF, just below the surrogates
  EXPECT_TRUE(is_valid_utf8("\xEE\x80\x80"));           // U+E000, just above them
  EXPECT_TRUE(is_valid_utf8("\xEF\xBF\xBF"));           // U+FFFF
  EXPECT_TRUE(is_valid_utf8("\xF0\x90\x80\x80"));       // U+10000, the first four-byte one
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x93\xA7 mail"));  // U+1F4E7
  EXPECT_TRUE(is_valid_utf8("\xF4\x8F\xBF\xBF"));       // U+10FFFF, the last code point
  EXPECT_TRUE(
      is_valid_utf8("a\xC3\xA9"
                    "b\xE2\x82\xAC"));  // sequences in a row
}

TEST(Utf8, RefusesOverlongForms) {
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));          // U+0000 in two bytes
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // '/' in two bytes
  EXPECT_FALSE(is_valid_utf8("\xC1\xBF"));          // U+007F in two bytes
  EXPECT_FALSE(is_valid_utf8("\xE0\x80\xAF"));      // '/' in three bytes
  EXPECT_FALSE(is_valid_utf8("\xE0\x9F\xBF"));      // U+07FF in three bytes
  EXPECT_FALSE(is_valid_utf8("\xF0\x80\x80\xAF"));  // '/' in four bytes
  EXPECT_FALSE(is_valid_utf8("\xF0\x8F\xBF\xBF"));  // U+FFFF in four bytes
}

TEST(Utf8, RefusesSurrogates) {
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));              // U+D800
  EXPECT_FALSE(is_valid_utf8("\xED\xAF\xBF"));              // U+DBFF
  EXPECT_FALSE(is_valid_utf8("\xED\xB0\x80"));              // U+DC00
  EXPECT_FALSE(is_valid_utf8("\xED\xBF\xBF"));              // U+DFFF
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\xBD\xED\xB3\xA7"));  // a CESU-8 pair for U+1F4E7
}

TEST(Utf8, RefusesCodePointsAboveU10FFFF) {
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xF7\xBF\xBF\xBF"));  // U+1FFFFF
  EXPECT_FALSE(is_valid_utf8("\xF8\x88\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xFC\x84\x80\x80\x80\x80"));
  EXPECT_FALSE(is_valid_utf8("\xFE"));
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(Utf8, RefusesTruncatedSequences) {
  EXPECT_FALSE(is_valid_utf8("\xC3"));
  EXPECT_FALSE(is_valid_utf8("caf\xC3"));
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));
  EXPECT_FALSE(is_valid_utf8("\xF0\x9F\x93"));
  EXPECT_FALSE(is_valid_utf8("\xE2\x82x"));             // cut by an ASCII byte
  EXPECT_FALSE(is_valid_utf8("\xF0\x9F\x93\xC3\xA9"));  // cut by the next sequence
}

TEST(Utf8, RefusesStrayContinuationBytes) {
  EXPECT_FALSE(is_valid_utf8("\x80"));
  EXPECT_FALSE(is_valid_utf8("\xBF"));
  EXPECT_FALSE(is_valid_utf8("a\x80z"));
  EXPECT_FALSE(is_valid_utf8("\xC3\xA9\xA9"));  // one continuation too many
}

TEST(Utf8, SequenceAtGivesEachLengthOrZero) {
  const std::string_view text = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x93\xA7\x80";
  EXPECT_EQ(utf8_sequence_at(text, 0), 1u);
  EXPECT_EQ(utf8_sequence_at(text, 1), 2u);
  EXPECT_EQ(utf8_sequence_at(text, 3), 3u);
  EXPECT_EQ(utf8_sequence_at(text, 6), 4u);
  EXPECT_EQ(utf8_sequence_at(text, 2), 0u);               // inside a sequence
  EXPECT_EQ(utf8_sequence_at(text, 10), 0u);              // a stray continuation byte
  EXPECT_EQ(utf8_sequence_at(text, 11), 0u);              // past the end
  EXPECT_EQ(utf8_sequence_at(text.substr(0, 9), 6), 0u);  // cut short by the end
}

TEST(Utf8, EveryLeadByteAloneOrWithOneContinuation) {
  for (int lead = 0; lead < 0x100; ++lead) {
    const std::string one(1, static_cast<char>(lead));
    EXPECT_EQ(is_valid_utf8(one), lead < 0x80) << lead;
    const std::string two = one + "\x80";
    EXPECT_EQ(is_valid_utf8(two), lead >= 0xC2 && lead <= 0xDF) << lead;
  }
}

TEST(AsciiClasses, PrintableIsSpaceToTilde) {
  for (int b = 0; b < 0x100; ++b) {
    const char c = static_cast<char>(b);
    EXPECT_EQ(is_printable_ascii(c), b >= 0x20 && b <= 0x7E) << b;
    EXPECT_EQ(is_visible_ascii(c), b >= 0x21 && b <= 0x7E) << b;
    EXPECT_EQ(is_ascii_control(c), b < 0x20 || b == 0x7F) << b;
  }
}

TEST(AsciiClasses, WholeStrings) {
  EXPECT_TRUE(is_printable_ascii(""));
  EXPECT_TRUE(is_printable_ascii("AAMkAD a=b ~!"));
  EXPECT_FALSE(is_printable_ascii("tab\there"));
  EXPECT_FALSE(is_printable_ascii("line\n"));
  EXPECT_FALSE(is_printable_ascii("del\x7F"));
  EXPECT_FALSE(is_printable_ascii("nul\0"sv));
  EXPECT_FALSE(is_printable_ascii("caf\xC3\xA9"));

  EXPECT_TRUE(is_visible_ascii(""));
  EXPECT_TRUE(is_visible_ascii("AAMkADk1ZjJh+/==~"));
  EXPECT_FALSE(is_visible_ascii("has space"));
  EXPECT_FALSE(is_visible_ascii("esc\x1B"));
  EXPECT_FALSE(is_visible_ascii("\xC3\xA9"));

  EXPECT_FALSE(has_ascii_control(""));
  EXPECT_FALSE(has_ascii_control("Caf\xC3\xA9 & Co, 2 spaces  ok"));
  EXPECT_TRUE(has_ascii_control("a\tb"));
  EXPECT_TRUE(has_ascii_control("a\rb"));
  EXPECT_TRUE(has_ascii_control("\0"sv));
  EXPECT_TRUE(has_ascii_control("\x1F"));
  EXPECT_TRUE(has_ascii_control("end\x7F"));
}

TEST(AsciiClasses, PrintableCopyReplacesAndCuts) {
  EXPECT_EQ(printable_ascii("BadDeviceToken", 64), "BadDeviceToken");
  EXPECT_EQ(printable_ascii("a\nb\x7F"
                            "c\xC3\xA9",
                            64),
            "a?b?c??");
  EXPECT_EQ(printable_ascii("\0x"sv, 64), "?x");
  EXPECT_EQ(printable_ascii("abcdef", 3), "abc");
  EXPECT_EQ(printable_ascii("abc", 0), "");
  EXPECT_EQ(printable_ascii("", 10), "");
}

TEST(TrimSpacesAndTabs, StripsBothEndsOnly) {
  EXPECT_EQ(trim_spaces_and_tabs("  text/xml \t"), "text/xml");
  EXPECT_EQ(trim_spaces_and_tabs("\tcharset = utf-8\t"), "charset = utf-8");
  EXPECT_EQ(trim_spaces_and_tabs("a b"), "a b");
  EXPECT_EQ(trim_spaces_and_tabs(" \t \t"), "");
  EXPECT_EQ(trim_spaces_and_tabs(""), "");
}

TEST(TrimSpacesAndTabs, KeepsOtherWhitespace) {
  EXPECT_EQ(trim_spaces_and_tabs("\r\n value \r\n"), "\r\n value \r\n");
  EXPECT_EQ(trim_spaces_and_tabs(" \v\f "), "\v\f");
  EXPECT_EQ(trim_spaces_and_tabs(" \0 "sv), "\0"sv);
}

TEST(TrimSpacesAndTabs, ReturnsAViewIntoItsArgument) {
  const std::string header = "  10.0.0.1 ";
  const std::string_view trimmed = trim_spaces_and_tabs(header);
  EXPECT_EQ(trimmed.data(), header.data() + 2);
  EXPECT_EQ(trimmed.size(), 8u);
}

}  // namespace
}  // namespace mp
