// The unread set against the facts of graph-samples/README.md: created +1 once per message,
// deleted -1 if it was counted, never below 0, duplicates change nothing twice, bounded memory.
#include "graph/unread_set.hpp"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

namespace mp::graph {
namespace {

using Change = UnreadSet::Change;

std::uint64_t m(int n) {
  return UnreadSet::digest("message-" + std::to_string(n));
}

TEST(UnreadSet, CreatedCountsOncePerMessage) {
  UnreadSet s;
  EXPECT_EQ(s.created(m(1)), Change::added);
  EXPECT_EQ(s.created(m(1)), Change::unchanged);  // resent, or created + updated
  EXPECT_EQ(s.created(m(2)), Change::added);
  EXPECT_EQ(s.count(), 2u);
}

TEST(UnreadSet, DeletedLowersOnlyWhatWasCounted) {
  UnreadSet s;
  s.created(m(1));
  EXPECT_EQ(s.deleted(m(1)), Change::removed);
  EXPECT_EQ(s.deleted(m(1)), Change::unchanged);  // resent
  EXPECT_EQ(s.count(), 0u);
  EXPECT_EQ(s.deleted(m(9)), Change::unchanged);  // never below 0
  EXPECT_EQ(s.count(), 0u);
}

TEST(UnreadSet, ReadThenUnreadAgainCountsAgain) {
  UnreadSet s;
  s.created(m(1));
  s.deleted(m(1));
  EXPECT_EQ(s.created(m(1)), Change::added);
  EXPECT_EQ(s.count(), 1u);
}

TEST(UnreadSet, TheAppsCountIsTheBaselineThatDeletesOfUnknownMessagesLower) {
  UnreadSet s;
  s.resync(5);
  EXPECT_EQ(s.count(), 5u);
  EXPECT_EQ(s.deleted(m(1)), Change::removed);  // one of the five
  EXPECT_EQ(s.deleted(m(1)), Change::unchanged);
  EXPECT_EQ(s.count(), 4u);
  s.created(m(2));
  EXPECT_EQ(s.count(), 5u);
  // A resync forgets the unread digests (the app's count holds them), keeps the read ones.
  s.resync(3);
  EXPECT_EQ(s.count(), 3u);
  EXPECT_EQ(s.unread_entries(), 0u);
  EXPECT_EQ(s.deleted(m(1)), Change::unchanged);
}

TEST(UnreadSet, EncodeDecodeKeepsEverything) {
  UnreadSet s;
  s.resync(2);
  for (int i = 0; i < 10; ++i) s.created(m(i));
  for (int i = 0; i < 4; ++i) s.deleted(m(i));
  const UnreadSet back = UnreadSet::decode(s.encode(), s.baseline());
  EXPECT_EQ(back.count(), s.count());
  EXPECT_EQ(back.encode(), s.encode());
  EXPECT_EQ(back.unread_entries(), 6u);
  EXPECT_EQ(back.read_entries(), 4u);
}

TEST(UnreadSet, DecodeToleratesTornAndRepeatedBytes) {
  UnreadSet s;
  s.created(m(1));
  std::string bytes = s.encode();
  bytes += bytes;   // the same digest twice
  bytes += "\x01";  // a torn entry
  const UnreadSet back = UnreadSet::decode(bytes, 0);
  EXPECT_EQ(back.count(), 1u);
  EXPECT_EQ(back.encode().size(), 8u);
}

TEST(UnreadSet, MemoryIsBoundedAndTheCountStaysRight) {
  UnreadSet s;
  const int n = static_cast<int>(UnreadSet::kMaxUnread) + 300;
  for (int i = 0; i < n; ++i) s.created(m(i));
  EXPECT_EQ(s.count(), static_cast<std::uint32_t>(n));
  EXPECT_EQ(s.unread_entries(), UnreadSet::kMaxUnread);
  for (int i = 0; i < n; ++i) s.deleted(m(i));
  EXPECT_EQ(s.count(), 0u);
  EXPECT_LE(s.read_entries(), UnreadSet::kMaxRead);
  EXPECT_LE(s.encode().size(), (UnreadSet::kMaxUnread + UnreadSet::kMaxRead) * 8);
}

// Against a model that remembers everything: with fewer distinct messages than the bounds hold,
// any sequence of created/deleted/resends ends at the number of messages last created.
TEST(UnreadSet, MatchesAnUnboundedModelWithinItsBounds) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    UnreadSet s;
    std::set<int> unread;
    for (int step = 0; step < 300; ++step) {
      const int msg = static_cast<int>(rng() % 60);
      if (rng() % 2) {
        s.created(m(msg));
        unread.insert(msg);
      } else {
        s.deleted(m(msg));
        unread.erase(msg);
      }
      if (step % 50 == 0) s = UnreadSet::decode(s.encode(), s.baseline());
    }
    ASSERT_EQ(s.count(), unread.size()) << "round " << round;
  }
}

}  // namespace
}  // namespace mp::graph
