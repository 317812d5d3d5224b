// Tests of the store's shared SQL helpers: the padded id-list shapes that keep the number of
// prepared statements per connection fixed.
#include "store/sql_util.hpp"

#include <gtest/gtest.h>

#include <set>

namespace mp::store::sql {
namespace {

TEST(IdListShape, IsTheSmallestShapeThatHoldsTheList) {
  EXPECT_EQ(id_list_shape(1), 1u);
  EXPECT_EQ(id_list_shape(2), 4u);
  EXPECT_EQ(id_list_shape(4), 4u);
  EXPECT_EQ(id_list_shape(5), 16u);
  EXPECT_EQ(id_list_shape(200), 256u);
  EXPECT_EQ(id_list_shape(1000), 1024u);
  EXPECT_EQ(id_list_shape(kMaxIdListShape), kMaxIdListShape);
}

TEST(IdPlaceholders, HasOnePlaceholderPerId) {
  EXPECT_EQ(id_placeholders(1), "?");
  EXPECT_EQ(id_placeholders(4), "?,?,?,?");
  EXPECT_EQ(id_placeholders(1024).size(), 2 * 1024 - 1);
}

TEST(ForEachIdChunk, PadsEachChunkWithItsLastIdAndUsesFewShapes) {
  std::set<std::string_view> shapes;
  std::vector<std::int64_t> seen;
  for (std::size_t n = 1; n <= 2500; n += 7) {
    std::vector<std::int64_t> ids(n);
    for (std::size_t i = 0; i < n; ++i) ids[i] = static_cast<std::int64_t>(1000 + i);
    seen.clear();
    auto st = for_each_id_chunk(
        ids, [&](std::string_view placeholders, std::span<const Value> values) -> Status {
          shapes.insert(placeholders);
          EXPECT_EQ(values.size() * 2 - 1, placeholders.size());
          for (const auto& v : values) seen.push_back(std::get<std::int64_t>(v));
          return {};
        });
    ASSERT_TRUE(st.ok());
    // Every id once, in order, then only repeats of the chunk's last id.
    std::set<std::int64_t> distinct(seen.begin(), seen.end());
    EXPECT_EQ(distinct.size(), n);
    EXPECT_EQ(*distinct.begin(), 1000);
    EXPECT_EQ(*distinct.rbegin(), static_cast<std::int64_t>(1000 + n - 1));
  }
  EXPECT_LE(shapes.size(), std::size(kIdListShapes)) << "one statement per shape, not per length";
}

TEST(ForEachIdChunk, StopsAtTheFirstError) {
  std::vector<std::int64_t> ids(3000, 7);
  int calls = 0;
  auto st = for_each_id_chunk(ids, [&](std::string_view, std::span<const Value>) -> Status {
    ++calls;
    return make_error(Errc::unavailable, "gone");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(calls, 1);
}

TEST(ForEachIdChunk, RunsNothingForNoIds) {
  int calls = 0;
  auto st = for_each_id_chunk({}, [&](std::string_view, std::span<const Value>) -> Status {
    ++calls;
    return {};
  });
  EXPECT_TRUE(st.ok());
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace mp::store::sql
