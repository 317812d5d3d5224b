// Tests of the heartbeat ledger: one entry per registration with its newest time, bounded, and
// failed writes merged back without losing a newer heartbeat.
#include "relay/heard_ledger.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

namespace mp::relay {
namespace {

const std::string kKey(48, 'k');

std::vector<HeardLedger::Entry> by_id(std::vector<HeardLedger::Entry> v) {
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    return a.heard.registration_id < b.heard.registration_id;
  });
  return v;
}

TEST(HeardLedger, KeepsTheNewestHeartbeatOfEachRegistration) {
  HeardLedger ledger(10);
  EXPECT_TRUE(ledger.note(kKey, 1, "S1", 100));
  EXPECT_TRUE(ledger.note(kKey, 1, "S1", 90));  // older, arrived late
  EXPECT_TRUE(ledger.note("other-key", 2, "S2", 95));
  EXPECT_TRUE(ledger.note(kKey, 1, "S1b", 120));  // the app resubscribed and it was bound
  EXPECT_EQ(ledger.size(), 2u);
  const auto taken = by_id(ledger.take());
  EXPECT_EQ(ledger.size(), 0u);
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].heard.registration_id, 1);
  EXPECT_EQ(taken[0].heard.heard_at, 120);
  EXPECT_EQ(taken[0].heard.subscription_id, "S1b");
  EXPECT_EQ(std::string(taken[0].cache_key.data(), 16), kKey.substr(0, 16));
  EXPECT_EQ(taken[1].heard.heard_at, 95);
  EXPECT_EQ(std::string(taken[1].cache_key.data(), 9), "other-key");
  EXPECT_TRUE(ledger.take().empty());
}

TEST(HeardLedger, IsBoundedButAlwaysTakesRegistrationsItHolds) {
  HeardLedger ledger(2);
  EXPECT_TRUE(ledger.note(kKey, 1, "S", 1));
  EXPECT_TRUE(ledger.note(kKey, 2, "S", 1));
  EXPECT_FALSE(ledger.note(kKey, 3, "S", 1)) << "full: the caller writes it durably";
  EXPECT_TRUE(ledger.note(kKey, 2, "S", 5)) << "one it holds is only updated";
  EXPECT_EQ(ledger.size(), 2u);
  (void)ledger.take();
  EXPECT_TRUE(ledger.note(kKey, 3, "S", 1)) << "room again after a take";
}

TEST(HeardLedger, AFailedWriteIsPutBackAndANewerHeartbeatWins) {
  HeardLedger ledger(3);
  ASSERT_TRUE(ledger.note(kKey, 1, "S1", 100));
  ASSERT_TRUE(ledger.note(kKey, 2, "S2", 100));
  auto taken = ledger.take();
  // While the write fails: 1 is heard again, 3 and 4 for the first time (full now).
  ASSERT_TRUE(ledger.note(kKey, 1, "S1-new", 130));
  ASSERT_TRUE(ledger.note(kKey, 3, "S3", 100));
  ASSERT_TRUE(ledger.note(kKey, 4, "S4", 100));
  EXPECT_EQ(ledger.put_back(std::move(taken)), 1u) << "1 merges; 2 no longer fits";
  const auto back = by_id(ledger.take());
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].heard.registration_id, 1);
  EXPECT_EQ(back[0].heard.heard_at, 130);
  EXPECT_EQ(back[0].heard.subscription_id, "S1-new");
  EXPECT_EQ(back[1].heard.registration_id, 3);
  EXPECT_EQ(back[2].heard.registration_id, 4);

  // With room, an older entry put back keeps its place and time.
  ASSERT_TRUE(ledger.note(kKey, 5, "S5", 200));
  EXPECT_EQ(ledger.put_back({back[1]}), 0u);
  EXPECT_EQ(ledger.size(), 2u);
}

TEST(HeardLedger, ManyThreadsNoteAtOnce) {
  HeardLedger ledger(100000);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&ledger, t] {
      for (int i = 0; i < 5000; ++i) ledger.note(kKey, i, "S", t * 10000 + i);
    });
  }
  for (auto& th : threads) th.join();
  const auto taken = by_id(ledger.take());
  ASSERT_EQ(taken.size(), 5000u);
  for (int i = 0; i < 5000; ++i) EXPECT_EQ(taken[i].heard.heard_at, 30000 + i) << i;
}

}  // namespace
}  // namespace mp::relay
