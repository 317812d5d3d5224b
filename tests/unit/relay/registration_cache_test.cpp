// Tests of the registration cache: hits, remembered absences and their expiry, LRU eviction and
// its bound, erase, and capacity 0.
#include "relay/registration_cache.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace mp::relay {
namespace {

using namespace std::chrono_literals;
using Hit = RegistrationCache::Hit;

std::shared_ptr<const CachedRegistration> entry(std::int64_t id) {
  auto e = std::make_shared<CachedRegistration>();
  e->record.id = id;
  e->record.customer_public_id = "use1-" + std::to_string(id);
  return e;
}

std::string key(int i) {
  return "key-" + std::to_string(i);
}

// Keys that land in one shard whatever the (power-of-two, up to 256) shard count, so LRU order
// within a shard can be observed from outside.
std::vector<std::string> same_shard_keys(std::size_t n) {
  std::vector<std::string> out;
  const std::size_t want = std::hash<std::string>{}(key(0)) % 256;
  for (int i = 0; out.size() < n; ++i) {
    if (std::hash<std::string>{}(key(i)) % 256 == want) out.push_back(key(i));
  }
  return out;
}

TEST(RegistrationCache, MissFoundAbsent) {
  RegistrationCache cache(64);
  EXPECT_EQ(cache.get("a").hit, Hit::miss);
  EXPECT_EQ(cache.get("a").entry, nullptr);

  const auto a = entry(1);
  cache.put("a", a);
  const auto found = cache.get("a");
  EXPECT_EQ(found.hit, Hit::found);
  EXPECT_EQ(found.entry, a);

  cache.put_absent("b");
  const auto absent = cache.get("b");
  EXPECT_EQ(absent.hit, Hit::absent);
  EXPECT_EQ(absent.entry, nullptr);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(RegistrationCache, PutReplacesAnEntryOrAnAbsence) {
  RegistrationCache cache(64);
  cache.put_absent("a");
  const auto first = entry(1);
  cache.put("a", first);
  EXPECT_EQ(cache.get("a").hit, Hit::found);
  const auto second = entry(2);
  cache.put("a", second);
  EXPECT_EQ(cache.get("a").entry, second);
  cache.put_absent("a");
  EXPECT_EQ(cache.get("a").hit, Hit::absent);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(RegistrationCache, EraseForgetsEntriesAndAbsences) {
  RegistrationCache cache(64);
  cache.put("a", entry(1));
  cache.put_absent("b");
  cache.put("c", entry(3));
  cache.erase("a");
  cache.erase("b");
  cache.erase("never-there");
  EXPECT_EQ(cache.get("a").hit, Hit::miss);
  EXPECT_EQ(cache.get("b").hit, Hit::miss);
  EXPECT_EQ(cache.get("c").hit, Hit::found);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(RegistrationCache, AbsenceExpiresAfterItsTtlButEntriesDoNot) {
  RegistrationCache cache(64, 50ms);
  const auto start = std::chrono::steady_clock::now();
  cache.put_absent("gone");
  cache.put("kept", entry(1));
  EXPECT_EQ(cache.get("gone").hit, Hit::absent);

  // Poll with a bound rather than sleep a fixed time: fast on an idle machine, safe on a busy one.
  auto expired_at = start;
  while (cache.get("gone").hit == Hit::absent) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 2s) << "absent entry never expired";
    std::this_thread::sleep_for(5ms);
    expired_at = std::chrono::steady_clock::now();
  }
  EXPECT_GE(expired_at - start, 50ms) << "absent entry expired before its TTL";
  EXPECT_EQ(cache.get("gone").hit, Hit::miss);
  EXPECT_EQ(cache.get("kept").hit, Hit::found) << "found entries have no TTL";
}

TEST(RegistrationCache, FreshAbsenceRestartsTheTtl) {
  RegistrationCache cache(64, 300ms);
  cache.put_absent("k");
  std::this_thread::sleep_for(160ms);
  cache.put_absent("k");
  std::this_thread::sleep_for(160ms);  // past the first TTL, well inside the second
  EXPECT_EQ(cache.get("k").hit, Hit::absent) << "the second put_absent should count from itself";
}

TEST(RegistrationCache, CapacityZeroCachesNothing) {
  RegistrationCache cache(0);
  cache.put("a", entry(1));
  cache.put_absent("b");
  EXPECT_EQ(cache.get("a").hit, Hit::miss);
  EXPECT_EQ(cache.get("b").hit, Hit::miss);
  EXPECT_EQ(cache.size(), 0u);
  cache.erase("a");
  EXPECT_EQ(cache.size(), 0u);
}

TEST(RegistrationCache, NeverHoldsMoreThanItsCapacity) {
  for (std::size_t capacity : {16u, 64u, 100u, 1000u}) {
    RegistrationCache cache(capacity);
    for (int i = 0; i < 5000; ++i) {
      if (i % 3 == 0) {
        cache.put_absent(key(i));
      } else {
        cache.put(key(i), entry(i));
      }
    }
    EXPECT_LE(cache.size(), capacity);
    EXPECT_GT(cache.size(), 0u);
    EXPECT_EQ(cache.get(key(4999)).hit, Hit::found) << "the newest entry must be kept";
  }
}

TEST(RegistrationCache, SmallCapacityIsABoundToo) {
  // The header promises `capacity` entries in all, whatever the capacity.
  for (std::size_t capacity : {1u, 4u, 15u}) {
    RegistrationCache cache(capacity);
    for (int i = 0; i < 1000; ++i) cache.put(key(i), entry(i));
    EXPECT_LE(cache.size(), capacity) << "capacity " << capacity;
  }
}

TEST(RegistrationCache, EvictsTheLeastRecentlyUsed) {
  const auto keys = same_shard_keys(80);

  // How many entries one shard keeps: the smallest n for which n + 1 puts push out the first.
  std::size_t per_shard = 0;
  for (std::size_t n = 1; n < keys.size() && per_shard == 0; ++n) {
    RegistrationCache probe(64);
    for (std::size_t i = 0; i <= n; ++i) probe.put(keys[i], entry(static_cast<std::int64_t>(i)));
    if (probe.get(keys[0]).hit == Hit::miss) per_shard = n;
  }
  ASSERT_GE(per_shard, 2u) << "need room for at least two entries per shard";

  RegistrationCache lru(64);
  for (std::size_t i = 0; i < per_shard; ++i) lru.put(keys[i], entry(static_cast<std::int64_t>(i)));
  ASSERT_EQ(lru.get(keys[0]).hit, Hit::found);  // keys[0] is now the most recently used
  lru.put(keys[per_shard], entry(999));         // one too many: keys[1] is the least recent
  EXPECT_EQ(lru.get(keys[1]).hit, Hit::miss);
  EXPECT_EQ(lru.get(keys[0]).hit, Hit::found);
  for (std::size_t i = 2; i <= per_shard; ++i) EXPECT_EQ(lru.get(keys[i]).hit, Hit::found) << i;
}

TEST(RegistrationCache, AnEntryInUseSurvivesAFlood) {
  RegistrationCache cache(64);
  cache.put("cold", entry(1));
  cache.put("hot", entry(2));
  for (int i = 0; i < 2000; ++i) {
    cache.put(key(i), entry(i));
    ASSERT_EQ(cache.get("hot").hit, Hit::found) << "after " << i << " inserts";
  }
  EXPECT_EQ(cache.get("cold").hit, Hit::miss);
}

TEST(RegistrationCache, EntriesOutliveEviction) {
  // A caller holding an entry keeps a valid object after the cache drops it.
  RegistrationCache cache(16);
  cache.put("a", entry(42));
  const auto held = cache.get("a").entry;
  for (int i = 0; i < 1000; ++i) cache.put(key(i), entry(i));
  cache.erase("a");
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(held->record.id, 42);
}

TEST(RegistrationCache, ConcurrentUseIsSafe) {
  RegistrationCache cache(256, 1ms);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 2000; ++i) {
        const auto k = key((i * 7 + t) % 500);
        switch (i % 4) {
          case 0:
            cache.put(k, entry(i));
            break;
          case 1:
            cache.put_absent(k);
            break;
          case 2:
            cache.erase(k);
            break;
          default:
            (void)cache.get(k);
            break;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(cache.size(), 256u);
}

}  // namespace
}  // namespace mp::relay
