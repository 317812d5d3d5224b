// A bounded, sharded LRU of registrations by secret hash, so a callback costs no database round
// trip; remembers unknown secrets for a short while too. Correctness of bindings and deletions
// does not rest on it: every write re-checks the registration in the database, and a stale entry
// is dropped and re-read. Entries also expire, so settings read with them (the customer's caller
// allow-list) reach every instance within `found_ttl`.
#pragma once

#include <array>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/cidr.hpp"
#include "store/callback_store.hpp"

namespace mp::relay {

struct CachedRegistration {
  store::RegistrationRecord record;
  std::vector<Cidr> allowed_callers;  // parsed customer allow-list; empty = any caller
  bool allow_list_invalid = false;    // unparseable allow-list: refuse every caller
};

class RegistrationCache {
 public:
  // At most `capacity` entries in all (0 disables caching); unknown secrets are remembered for
  // `absent_ttl`, known ones for `found_ttl`.
  explicit RegistrationCache(std::size_t capacity,
                             std::chrono::milliseconds absent_ttl = std::chrono::seconds(30),
                             std::chrono::milliseconds found_ttl = std::chrono::hours(1));

  enum class Hit { miss, found, absent };
  struct Lookup {
    Hit hit = Hit::miss;
    std::shared_ptr<const CachedRegistration> entry;
  };

  Lookup get(const std::string& key);
  void put(const std::string& key, std::shared_ptr<const CachedRegistration> entry);
  void put_absent(const std::string& key);
  void erase(const std::string& key);
  std::size_t size() const;

 private:
  struct Item {
    std::string key;
    std::shared_ptr<const CachedRegistration> entry;  // null: known absent
    std::chrono::steady_clock::time_point expires;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::list<Item> lru;  // most recent first
    std::unordered_map<std::string, std::list<Item>::iterator> index;
  };
  static constexpr std::size_t kShards = 16;

  Shard& shard_of(const std::string& key);
  void insert(const std::string& key, Item item);

  std::size_t shards_used_;  // fewer than kShards for tiny capacities, so the bound holds
  std::size_t per_shard_;
  std::chrono::milliseconds absent_ttl_;
  std::chrono::milliseconds found_ttl_;
  std::array<Shard, kShards> shards_;
};

}  // namespace mp::relay
