// Tests of the registration cache: hits, remembered absences and their expiry, what an entry
// holds, the customer view shared by a customer's entries, LRU eviction and its bound, erase,
// capacity 0, the open-addressing table against a reference model, and concurrent use.
#include "relay/registration_cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/crypto.hpp"

namespace mp::relay {
namespace {

using namespace std::chrono_literals;
using Hit = RegistrationCache::Hit;

std::shared_ptr<const CustomerView> customer(std::int64_t id, std::string public_id = "") {
  auto c = std::make_shared<CustomerView>();
  c->id = id;
  c->public_id = public_id.empty() ? "use1-" + std::to_string(id) : public_id;
  return c;
}

CachedRegistration entry(std::int64_t id, std::optional<std::uint64_t> subscription = {}) {
  return {id, id * 10, customer(id % 7), subscription};
}

// Keys as the listener makes them: the SHA-384 of a secret.
std::string key(int i) {
  const Bytes h = sha384("secret-" + std::to_string(i));
  return std::string(h.begin(), h.end());
}

// Keys that share one shard of a cache of 16 or more entries: a cache with one entry per shard
// keeps only the newest of them.
std::vector<std::string> same_shard_keys(std::size_t n) {
  std::vector<std::string> out{key(0)};
  for (int i = 1; out.size() < n; ++i) {
    RegistrationCache probe(16);
    probe.put(key(0), entry(1));
    probe.put(key(i), entry(2));
    if (probe.get(key(0)).hit == Hit::miss) out.push_back(key(i));
  }
  return out;
}

TEST(RegistrationCache, MissFoundAbsent) {
  RegistrationCache cache(64);
  EXPECT_EQ(cache.get(key(1)).hit, Hit::miss);

  const auto c = customer(3, "use1-acme");
  cache.put(key(1), {42, 420, c, subscription_digest("S1")});
  const auto found = cache.get(key(1));
  ASSERT_EQ(found.hit, Hit::found);
  EXPECT_EQ(found.entry.id, 42);
  EXPECT_EQ(found.entry.mailbox_id, 420);
  EXPECT_EQ(found.entry.customer, c);
  EXPECT_EQ(found.entry.subscription, subscription_digest("S1"));

  cache.put_absent(key(2));
  const auto absent = cache.get(key(2));
  EXPECT_EQ(absent.hit, Hit::absent);
  EXPECT_EQ(absent.entry.customer, nullptr);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(cache.absent_size(), 1u);
}

TEST(RegistrationCache, AFloodOfUnknownSecretsNeverEvictsARegistration) {
  // The finding: negative entries shared the LRU with registrations, so random secrets pushed
  // real registrations out and every real callback then cost a database read.
  RegistrationCache cache(1024, 30s, 1h, 64);  // room for the 64 registrations in every shard
  for (int i = 0; i < 64; ++i) cache.put(key(i), entry(i));
  for (int i = 1000; i < 11000; ++i) cache.put_absent(key(i));
  EXPECT_EQ(cache.size(), 64u);
  EXPECT_LE(cache.absent_size(), 64u);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(cache.get(key(i)).hit, Hit::found) << i;
  EXPECT_EQ(cache.get(key(10999)).hit, Hit::absent) << "the newest absences are kept";
  EXPECT_EQ(cache.get(key(1000)).hit, Hit::miss) << "the oldest absences made room";
}

TEST(RegistrationCache, UnboundAndBoundToDigestZeroDiffer) {
  RegistrationCache cache(64);
  cache.put(key(1), entry(1));
  cache.put(key(2), entry(2, 0));
  EXPECT_FALSE(cache.get(key(1)).entry.subscription.has_value());
  EXPECT_EQ(cache.get(key(2)).entry.subscription, std::optional<std::uint64_t>(0));
}

TEST(RegistrationCache, SubscriptionDigestsTellIdsApart) {
  EXPECT_EQ(subscription_digest("FQBtYWlsMDEuZXhhbXBsZS5jb20Q"),
            subscription_digest("FQBtYWlsMDEuZXhhbXBsZS5jb20Q"));
  EXPECT_NE(subscription_digest("FQBtYWlsMDEuZXhhbXBsZS5jb20Q"),
            subscription_digest("FQBtYWlsMDEuZXhhbXBsZS5jb20R"));
  EXPECT_NE(subscription_digest("S1"), subscription_digest("S2"));
}

TEST(RegistrationCache, ShortKeysWork) {
  RegistrationCache cache(64);
  cache.put("a", entry(1));
  cache.put_absent("b");
  EXPECT_EQ(cache.get("a").entry.id, 1);
  EXPECT_EQ(cache.get("b").hit, Hit::absent);
  EXPECT_EQ(cache.get("c").hit, Hit::miss);
}

TEST(RegistrationCache, PutReplacesAnEntryOrAnAbsence) {
  RegistrationCache cache(64);
  cache.put_absent(key(1));
  cache.put(key(1), entry(1));
  EXPECT_EQ(cache.get(key(1)).hit, Hit::found);
  cache.put(key(1), entry(2, 7));
  EXPECT_EQ(cache.get(key(1)).entry.id, 2);
  EXPECT_EQ(cache.get(key(1)).entry.subscription, std::optional<std::uint64_t>(7));
  cache.put_absent(key(1));
  EXPECT_EQ(cache.get(key(1)).hit, Hit::absent);
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.absent_size(), 1u);
}

TEST(RegistrationCache, AnEntryWithoutACustomerIsNotCached) {
  RegistrationCache cache(64);
  cache.put(key(1), CachedRegistration{1, 1, nullptr, {}});
  EXPECT_EQ(cache.get(key(1)).hit, Hit::miss);
}

TEST(RegistrationCache, EraseForgetsEntriesAndAbsences) {
  RegistrationCache cache(64);
  cache.put(key(1), entry(1));
  cache.put_absent(key(2));
  cache.put(key(3), entry(3));
  cache.erase(key(1));
  cache.erase(key(2));
  cache.erase(key(99));
  EXPECT_EQ(cache.get(key(1)).hit, Hit::miss);
  EXPECT_EQ(cache.get(key(2)).hit, Hit::miss);
  EXPECT_EQ(cache.get(key(3)).hit, Hit::found);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(RegistrationCache, TheNewestCustomerViewServesAllItsEntries) {
  RegistrationCache cache(64);
  const auto old_view = customer(5, "use1-acme");
  cache.put(key(1), {1, 1, old_view, {}});
  cache.put(key(2), {2, 2, old_view, {}});
  cache.put(key(3), {3, 3, customer(6), {}});
  EXPECT_EQ(cache.customer(5), old_view);
  EXPECT_EQ(cache.customer(99), nullptr);

  // The allow-list changed: the next entry read brings the new view, and it serves them all.
  auto changed = std::make_shared<CustomerView>(*old_view);
  changed->caller_cidrs = "192.0.2.0/24";
  cache.put(key(4), {4, 4, changed, {}});
  for (int i : {1, 2, 4}) EXPECT_EQ(cache.get(key(i)).entry.customer, changed) << i;
  EXPECT_EQ(cache.get(key(3)).entry.customer->id, 6);
  EXPECT_EQ(cache.customer(5), changed);
}

TEST(RegistrationCache, AbsenceExpiresAfterItsTtl) {
  RegistrationCache cache(64, 50ms);
  const auto start = std::chrono::steady_clock::now();
  cache.put_absent(key(1));
  cache.put(key(2), entry(1));
  EXPECT_EQ(cache.get(key(1)).hit, Hit::absent);

  // Poll with a bound rather than sleep a fixed time: fast on an idle machine, safe on a busy one.
  auto expired_at = start;
  while (cache.get(key(1)).hit == Hit::absent) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 2s) << "absent entry never expired";
    std::this_thread::sleep_for(5ms);
    expired_at = std::chrono::steady_clock::now();
  }
  EXPECT_GE(expired_at - start, 50ms) << "absent entry expired before its TTL";
  EXPECT_EQ(cache.get(key(1)).hit, Hit::miss);
  EXPECT_EQ(cache.get(key(2)).hit, Hit::found) << "found entries live for the found TTL (1 h)";
  EXPECT_EQ(cache.size(), 1u) << "the expired absence is gone";
}

TEST(RegistrationCache, FoundEntriesExpireAfterTheirTtl) {
  RegistrationCache cache(64, 1h, 50ms);
  const auto start = std::chrono::steady_clock::now();
  cache.put(key(1), entry(1));
  while (cache.get(key(1)).hit == Hit::found) {
    ASSERT_LT(std::chrono::steady_clock::now() - start, 2s) << "entry never expired";
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
}

TEST(RegistrationCache, FreshAbsenceRestartsTheTtl) {
  RegistrationCache cache(64, 300ms);
  cache.put_absent(key(1));
  std::this_thread::sleep_for(160ms);
  cache.put_absent(key(1));
  std::this_thread::sleep_for(160ms);  // past the first TTL, well inside the second
  EXPECT_EQ(cache.get(key(1)).hit, Hit::absent) << "the second put_absent should count from itself";
}

TEST(RegistrationCache, CapacityZeroCachesNothing) {
  RegistrationCache cache(0);
  cache.put(key(1), entry(1));
  cache.put_absent(key(2));
  EXPECT_EQ(cache.get(key(1)).hit, Hit::miss);
  EXPECT_EQ(cache.get(key(2)).hit, Hit::miss);
  EXPECT_EQ(cache.size(), 0u);
  cache.erase(key(1));
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
    EXPECT_GT(cache.size(), capacity / 2) << "evictions free room for new entries";
    EXPECT_EQ(cache.get(key(4999)).entry.id, 4999) << "the newest entry must be kept";
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
  const auto keys = same_shard_keys(5);
  RegistrationCache lru(64);  // 16 shards of 4
  for (std::size_t i = 0; i < 4; ++i) lru.put(keys[i], entry(static_cast<std::int64_t>(i)));
  ASSERT_EQ(lru.get(keys[0]).hit, Hit::found);  // keys[0] is now the most recently used
  lru.put(keys[4], entry(999));                 // one too many: keys[1] is the least recent
  EXPECT_EQ(lru.get(keys[1]).hit, Hit::miss);
  EXPECT_EQ(lru.get(keys[0]).hit, Hit::found);
  for (std::size_t i = 2; i <= 4; ++i) EXPECT_EQ(lru.get(keys[i]).hit, Hit::found) << i;
}

TEST(RegistrationCache, AnEntryInUseSurvivesAFlood) {
  RegistrationCache cache(64);
  cache.put(key(-1), entry(1));
  cache.put(key(-2), entry(2));
  for (int i = 0; i < 2000; ++i) {
    cache.put(key(i), entry(i));
    ASSERT_EQ(cache.get(key(-2)).hit, Hit::found) << "after " << i << " inserts";
  }
  EXPECT_EQ(cache.get(key(-1)).hit, Hit::miss);
}

// Random puts, absences, erases and gets against a map, with room for every key: the table's
// deletions (backward shift) and slot reuse must never lose or confuse an entry.
TEST(RegistrationCache, AgreesWithAReferenceModel) {
  for (const bool short_keys : {false, true}) {
    RegistrationCache cache(1 << 16);
    std::map<int, std::optional<std::int64_t>> model;  // nullopt: absent
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> pick(0, 3000);
    auto k = [&](int i) { return short_keys ? "k" + std::to_string(i) : key(i); };
    for (int step = 0; step < 60000; ++step) {
      const int i = pick(rng);
      switch (step % 5) {
        case 0:
        case 1:
          cache.put(k(i), entry(step));
          model[i] = step;
          break;
        case 2:
          cache.put_absent(k(i));
          model[i] = std::nullopt;
          break;
        case 3:
          cache.erase(k(i));
          model.erase(i);
          break;
        default: {
          const auto got = cache.get(k(i));
          const auto it = model.find(i);
          if (it == model.end()) {
            ASSERT_EQ(got.hit, Hit::miss) << "step " << step;
          } else if (!it->second) {
            ASSERT_EQ(got.hit, Hit::absent) << "step " << step;
          } else {
            ASSERT_EQ(got.hit, Hit::found) << "step " << step;
            ASSERT_EQ(got.entry.id, *it->second) << "step " << step;
          }
        }
      }
    }
    const auto found = std::count_if(model.begin(), model.end(),
                                     [](const auto& m) { return m.second.has_value(); });
    EXPECT_EQ(cache.size(), static_cast<std::size_t>(found));
    EXPECT_EQ(cache.absent_size(), model.size() - static_cast<std::size_t>(found));
    for (const auto& [i, v] : model) {
      ASSERT_EQ(cache.get(k(i)).hit, v ? Hit::found : Hit::absent) << i;
    }
  }
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
          default: {
            const auto got = cache.get(k);
            if (got.hit == Hit::found) {
              EXPECT_NE(got.entry.customer, nullptr);
              EXPECT_EQ(got.entry.mailbox_id, got.entry.id * 10);
            }
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(cache.size(), 256u);
}

}  // namespace
}  // namespace mp::relay
