// Tests of KeyRing: parsing the key file, every refusal (with its line number and without any
// key byte), and the file checks of load_file.
#include "keys/key_ring.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "test_env.hpp"
#include "test_keys.hpp"

namespace mp::keys {
namespace {

namespace fs = std::filesystem;
using test::expect_no_secret;
using test::random_key_base64;

std::string kek_line(const std::string& id, const std::string& key, bool active = false) {
  return "kek " + id + " " + key + (active ? " active" : "") + "\n";
}

// Parses `text`, expects a refusal whose message holds every `needle` and no key of `keys`.
Error expect_refused(std::string_view text, const std::vector<std::string>& keys,
                     const std::vector<std::string>& needles) {
  Result<KeyRing> ring = KeyRing::from_text(text);
  EXPECT_FALSE(ring.ok());
  if (ring.ok()) return Error{};
  const Error& error = ring.error();
  EXPECT_EQ(error.code, Errc::invalid_argument);
  for (const std::string& needle : needles) {
    EXPECT_NE(error.message.find(needle), std::string::npos)
        << "'" << needle << "' missing from: " << error.message;
  }
  expect_no_secret(error.message, keys);
  return error;
}

TEST(KeyRingTest, ParsesKeysCommentsBlankLinesTabsAndCrlf) {
  const std::string k1 = random_key_base64();
  const std::string k2 = random_key_base64();
  const std::string k3 = random_key_base64();
  const std::string text = "# region key file\n\n   \n" + kek_line("old.2024", k1) +
                           "kek\tnew_2025-a\t" + k2 + "\tactive  # rotated in May\r\n" +
                           "  kek Z " + k3 + "\n# end";
  Result<KeyRing> ring = KeyRing::from_text(text);
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  EXPECT_EQ(ring->active_id(), "new_2025-a");
  EXPECT_EQ(ring->size(), 3u);
  EXPECT_TRUE(ring->has("old.2024"));
  EXPECT_TRUE(ring->has("new_2025-a"));
  EXPECT_TRUE(ring->has("Z"));
  EXPECT_FALSE(ring->has("z"));
  EXPECT_FALSE(ring->has(""));
  EXPECT_EQ(ring->ids(), (std::vector<std::string>{"Z", "new_2025-a", "old.2024"}));
}

TEST(KeyRingTest, ASingleUnmarkedKeyIsActive) {
  Result<KeyRing> ring = KeyRing::from_text(kek_line("only", random_key_base64()));
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  EXPECT_EQ(ring->active_id(), "only");
}

TEST(KeyRingTest, LongestAllowedIdIsAccepted) {
  const std::string id(64, 'x');
  Result<KeyRing> ring = KeyRing::from_text(kek_line(id, random_key_base64(), true));
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  EXPECT_EQ(ring->active_id(), id);
}

TEST(KeyRingTest, MalformedLinesAreNamedByNumberWithoutTheLine) {
  const std::string good = random_key_base64();
  const std::string bad = random_key_base64();
  const std::string head = "# keys\n" + kek_line("a", good, true) + "\n";  // lines 1-3
  // Each broken line is line 4.
  for (const std::string& line : std::vector<std::string>{
           "kek b\n",                                // no key
           "key b " + bad + "\n",                    // wrong first word
           bad + "\n",                               // a bare key
           "kek b " + bad + " active extra\n",       // too many words
           "kek b " + bad + " actived\n",            // not 'active'
           "kek b " + bad.substr(0, 43) + "\n",      // base64 of the wrong length
           "kek b " + bad.substr(0, 40) + "!!!=\n",  // not base64
           "kek b " + bad.substr(0, 42) + "B=\n",    // non-canonical last character
           "kek b " + bad.substr(0, 20) + "=" + bad.substr(21) + "\n",  // '=' inside
       }) {
    SCOPED_TRACE(line.substr(0, 6));
    expect_refused(head + line + kek_line("c", random_key_base64()), {good, bad}, {"line 4"});
  }
}

TEST(KeyRingTest, DuplicateIdIsRefusedNamingBothLines) {
  const std::string k1 = random_key_base64();
  const std::string k2 = random_key_base64();
  expect_refused(kek_line("same", k1, true) + "# x\n" + kek_line("same", k2), {k1, k2},
                 {"line 3", "'same'", "line 1"});
}

TEST(KeyRingTest, KeysOfTheWrongLengthAreRefused) {
  for (std::size_t bytes : {16u, 31u, 33u, 64u}) {
    SCOPED_TRACE(bytes);
    const std::string key = random_key_base64(bytes);
    expect_refused("\n" + kek_line("a", key, true), {key},
                   {"line 2", std::to_string(bytes) + " bytes", "32"});
  }
}

TEST(KeyRingTest, AnAllZeroKeyIsRefusedAsAPlaceholder) {
  expect_refused(kek_line("a", test::base64(Bytes(32, 0)), true), {}, {"line 1", "zero"});
}

TEST(KeyRingTest, BadIdsAreRefusedWithoutEchoingThem) {
  const std::string key = random_key_base64();
  for (const std::string& id : {std::string("bad/id"), std::string(65, 'a'), std::string("a:b"),
                                std::string("caf\xc3\xa9"), std::string("a\x01")}) {
    SCOPED_TRACE(id.size());
    const Error error = expect_refused(kek_line(id, key, true), {key}, {"line 1", "1 to 64"});
    EXPECT_EQ(error.message.find(id), std::string::npos) << error.message;
  }
  // A key pasted where the id goes is refused without being repeated.
  const std::string pasted = random_key_base64();
  expect_refused("kek " + pasted + " " + key + " active\n", {key, pasted}, {"line 1"});
}

TEST(KeyRingTest, TwoActiveKeysAreRefused) {
  const std::string k1 = random_key_base64();
  const std::string k2 = random_key_base64();
  expect_refused(kek_line("a", k1, true) + kek_line("b", k2, true), {k1, k2},
                 {"line 2", "line 1", "active"});
}

TEST(KeyRingTest, SeveralKeysWithNoneActiveAreRefused) {
  const std::string k1 = random_key_base64();
  const std::string k2 = random_key_base64();
  expect_refused(kek_line("a", k1) + kek_line("b", k2), {k1, k2}, {"2 keys", "none", "active"});
}

TEST(KeyRingTest, AFileWithoutKeysIsRefused) {
  expect_refused("", {}, {"no key"});
  expect_refused("# only a comment\n\n", {}, {"no key", "make-kek.sh"});
}

// A temp folder for key files, removed at the end of each test.
class KeyFileTest : public ::testing::Test {
 protected:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path write_key_file(const std::string& text, fs::perms mode) {
    const fs::path path = dir_ / "region.keys";
    mp::test::write_file(path, text);
    fs::permissions(path, mode);
    return path;
  }
  fs::path dir_ = mp::test::make_temp_dir("keys");
};

TEST_F(KeyFileTest, LoadsAFileReadableOnlyByItsOwner) {
  const std::string key = random_key_base64();
  const fs::path path =
      write_key_file(kek_line("k1", key, true), fs::perms::owner_read | fs::perms::owner_write);
  Result<KeyRing> ring = KeyRing::load_file(path);
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  EXPECT_EQ(ring->active_id(), "k1");

  fs::permissions(path, fs::perms::owner_read);  // 0400 is fine too
  EXPECT_TRUE(KeyRing::load_file(path).ok());
}

TEST_F(KeyFileTest, RefusesAFileThatOthersCanReadOrWrite) {
  const std::string key = random_key_base64();
  for (const auto& [mode, text] :
       std::vector<std::pair<fs::perms, std::string>>{{fs::perms(0644), "0644"},
                                                      {fs::perms(0640), "0640"},
                                                      {fs::perms(0604), "0604"},
                                                      {fs::perms(0620), "0620"}}) {
    SCOPED_TRACE(text);
    const fs::path path = write_key_file(kek_line("k1", key, true), mode);
    Result<KeyRing> ring = KeyRing::load_file(path);
    ASSERT_FALSE(ring.ok());
    EXPECT_EQ(ring.error().code, Errc::invalid_argument);
    EXPECT_NE(ring.error().message.find("mode " + text), std::string::npos) << ring.error().message;
    EXPECT_NE(ring.error().message.find("chmod 600 " + path.string()), std::string::npos)
        << ring.error().message;
    expect_no_secret(ring.error().message, {key});
  }
}

TEST_F(KeyFileTest, RefusesAFileOwnedByAnotherUser) {
  // The rule load_file applies to the open file's owner, with the owner given: no root needed.
  const fs::path path = "/etc/mailpush/kek";
  EXPECT_TRUE(detail::check_key_file_owner(1000, 1000, "key file " + path.string(), path).ok());
  EXPECT_TRUE(detail::check_key_file_owner(0, 1000, "key file " + path.string(), path).ok())
      << "root's files are the daemon's to read";
  const Status other = detail::check_key_file_owner(54321, 1000, "key file " + path.string(), path);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, Errc::invalid_argument);
  EXPECT_NE(other.error().message.find("uid 54321"), std::string::npos) << other.error().message;
  EXPECT_NE(other.error().message.find("chown 1000 /etc/mailpush/kek"), std::string::npos)
      << other.error().message;
  // And load_file accepts the file this process owns.
  const std::string key = random_key_base64();
  EXPECT_TRUE(KeyRing::load_file(write_key_file(kek_line("k1", key, true), fs::perms(0600))).ok());
}

TEST_F(KeyFileTest, NamesTheFileAndLineOfAMalformedLine) {
  const std::string key = random_key_base64();
  const fs::path path =
      write_key_file("# k\n" + kek_line("k1", key.substr(0, 20), true), fs::perms(0600));
  Result<KeyRing> ring = KeyRing::load_file(path);
  ASSERT_FALSE(ring.ok());
  EXPECT_NE(ring.error().message.find(path.string() + ", line 2"), std::string::npos)
      << ring.error().message;
  expect_no_secret(ring.error().message, {key});
}

TEST_F(KeyFileTest, AMissingFileSaysHowToCreateOne) {
  Result<KeyRing> ring = KeyRing::load_file(dir_ / "absent.keys");
  ASSERT_FALSE(ring.ok());
  EXPECT_EQ(ring.error().code, Errc::not_found);
  EXPECT_NE(ring.error().message.find("make-kek.sh"), std::string::npos) << ring.error().message;
}

TEST_F(KeyFileTest, RefusesAFolderAndAnOversizedFile) {
  fs::create_directory(dir_ / "folder");
  fs::permissions(dir_ / "folder", fs::perms(0700));
  Result<KeyRing> folder = KeyRing::load_file(dir_ / "folder");
  ASSERT_FALSE(folder.ok());
  EXPECT_NE(folder.error().message.find("not a regular file"), std::string::npos)
      << folder.error().message;

  std::string big = kek_line("k1", random_key_base64(), true);
  big += std::string(kMaxKeyFileBytes, '#');
  Result<KeyRing> oversized = KeyRing::load_file(write_key_file(big, fs::perms(0600)));
  ASSERT_FALSE(oversized.ok());
  EXPECT_NE(oversized.error().message.find("wrong file"), std::string::npos)
      << oversized.error().message;
}

}  // namespace
}  // namespace mp::keys
