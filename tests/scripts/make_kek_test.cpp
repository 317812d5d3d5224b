// Tests of scripts/make-kek.sh: the files it writes load, are mode 0600 whatever the umask, are
// never overwritten, rotate with --add, and no key reaches the script's output.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "keys/key_ring.hpp"
#include "test_env.hpp"
#include "test_keys.hpp"

namespace mp::keys {
namespace {

namespace fs = std::filesystem;

class MakeKekTest : public ::testing::Test {
 protected:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs the script with `args` in the temp folder under umask 000, so only the script's own
  // umask can make the file private. Returns the exit code; the output goes to output_.
  int run(const std::string& args) {
    const fs::path log = dir_ / "output.txt";
    const std::string command = "cd '" + dir_.string() + "' && umask 000 && '" +
                                (fs::path(MAILPUSH_SOURCE_DIR) / "scripts/make-kek.sh").string() +
                                "' " + args + " > '" + log.string() + "' 2>&1";
    const int status = std::system(command.c_str());
    output_ = mp::test::read_file(log);
    fs::remove(log);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  unsigned mode_of(const fs::path& path) const {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  // The base64 keys in a key file, in file order (the third word of each kek line).
  static std::vector<std::string> keys_in(const fs::path& path) {
    std::vector<std::string> keys;
    std::istringstream in(mp::test::read_file(path));
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words(line);
      std::string kek, id, key;
      if (words >> kek >> id >> key && kek == "kek") keys.push_back(key);
    }
    return keys;
  }

  fs::path dir_ = mp::test::make_temp_dir("make-kek");
  std::string output_;
};

TEST_F(MakeKekTest, CreatesAPrivateFileThatLoads) {
  const fs::path file = dir_ / "region.keys";
  ASSERT_EQ(run("region.keys use1-2026"), 0) << output_;
  EXPECT_EQ(mode_of(file), 0600u);

  Result<KeyRing> ring = KeyRing::load_file(file);
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  EXPECT_EQ(ring->active_id(), "use1-2026");
  EXPECT_EQ(ring->size(), 1u);

  const std::vector<std::string> keys = keys_in(file);
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_EQ(keys[0].size(), 44u);
  EXPECT_NE(output_.find("use1-2026"), std::string::npos) << output_;
  test::expect_no_secret(output_, keys);
  // Nothing else is left in the folder (no temp file with a key in it).
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator()), 1);
}

TEST_F(MakeKekTest, DefaultIdIsDatedAndRandom) {
  ASSERT_EQ(run("a.keys"), 0) << output_;
  ASSERT_EQ(run("b.keys"), 0) << output_;
  Result<KeyRing> a = KeyRing::load_file(dir_ / "a.keys");
  Result<KeyRing> b = KeyRing::load_file(dir_ / "b.keys");
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_TRUE(std::regex_match(a->active_id(), std::regex("kek-20[0-9]{6}-[0-9a-f]{4}")))
      << a->active_id();
  EXPECT_NE(keys_in(dir_ / "a.keys"), keys_in(dir_ / "b.keys"));
}

TEST_F(MakeKekTest, RefusesToOverwriteAFile) {
  const fs::path file = dir_ / "region.keys";
  ASSERT_EQ(run("region.keys first"), 0) << output_;
  const std::string before = mp::test::read_file(file);
  EXPECT_NE(run("region.keys second"), 0);
  EXPECT_NE(output_.find("--add"), std::string::npos) << output_;
  EXPECT_EQ(mp::test::read_file(file), before);
  test::expect_no_secret(output_, keys_in(file));

  // Not even a file that is not a key file.
  mp::test::write_file(dir_ / "other", "keep me");
  EXPECT_NE(run("other"), 0);
  EXPECT_EQ(mp::test::read_file(dir_ / "other"), "keep me");
}

TEST_F(MakeKekTest, AddRotatesToANewActiveKeyAndKeepsTheOld) {
  const fs::path file = dir_ / "region.keys";
  ASSERT_EQ(run("region.keys kek-old"), 0) << output_;
  const std::vector<std::string> old_keys = keys_in(file);

  ASSERT_EQ(run("--add region.keys kek-new"), 0) << output_;
  EXPECT_EQ(mode_of(file), 0600u);
  Result<KeyRing> ring = KeyRing::load_file(file);
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  EXPECT_EQ(ring->active_id(), "kek-new");
  EXPECT_TRUE(ring->has("kek-old"));
  EXPECT_EQ(ring->size(), 2u);

  const std::vector<std::string> keys = keys_in(file);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0], old_keys[0]);  // the old key itself is kept, byte for byte
  EXPECT_NE(keys[1], keys[0]);
  test::expect_no_secret(output_, keys);

  // A third rotation moves 'active' again; an id already present is refused.
  ASSERT_EQ(run("--add region.keys kek-third"), 0) << output_;
  ring = KeyRing::load_file(file);
  ASSERT_TRUE(ring.ok()) << ring.error().message;
  EXPECT_EQ(ring->active_id(), "kek-third");
  EXPECT_EQ(ring->size(), 3u);
  const std::string before = mp::test::read_file(file);
  EXPECT_NE(run("--add region.keys kek-old"), 0);
  EXPECT_EQ(mp::test::read_file(file), before);
}

TEST_F(MakeKekTest, AddNeedsAnExistingFileAndRefusesBadIds) {
  EXPECT_NE(run("--add missing.keys"), 0);
  EXPECT_FALSE(fs::exists(dir_ / "missing.keys"));
  EXPECT_NE(run("region.keys 'bad/id'"), 0);
  EXPECT_NE(run("region.keys " + std::string(65, 'a')), 0);
  EXPECT_FALSE(fs::exists(dir_ / "region.keys"));
}

}  // namespace
}  // namespace mp::keys
