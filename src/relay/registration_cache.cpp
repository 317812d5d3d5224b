// The sharded LRU behind RegistrationCache.
#include "relay/registration_cache.hpp"

#include <functional>

namespace mp::relay {

RegistrationCache::RegistrationCache(std::size_t capacity, std::chrono::milliseconds absent_ttl,
                                     std::chrono::milliseconds found_ttl)
    : shards_used_(std::max<std::size_t>(1, std::min(kShards, capacity))),
      per_shard_(capacity / shards_used_),
      absent_ttl_(absent_ttl),
      found_ttl_(found_ttl) {}

RegistrationCache::Shard& RegistrationCache::shard_of(const std::string& key) {
  return shards_[std::hash<std::string>{}(key) % shards_used_];
}

RegistrationCache::Lookup RegistrationCache::get(const std::string& key) {
  if (per_shard_ == 0) return {};
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mutex);
  auto it = s.index.find(key);
  if (it == s.index.end()) return {};
  if (std::chrono::steady_clock::now() > it->second->expires) {
    s.lru.erase(it->second);
    s.index.erase(it);
    return {};
  }
  s.lru.splice(s.lru.begin(), s.lru, it->second);
  if (!it->second->entry) return {Hit::absent, nullptr};
  return {Hit::found, it->second->entry};
}

namespace {
template <class Shard>
void remove_locked(Shard& s, const std::string& key) {
  if (auto it = s.index.find(key); it != s.index.end()) {
    s.lru.erase(it->second);
    s.index.erase(it);
  }
}
}  // namespace

void RegistrationCache::insert(const std::string& key, Item item) {
  if (per_shard_ == 0) return;
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mutex);
  remove_locked(s, key);
  s.lru.push_front(std::move(item));
  s.index[key] = s.lru.begin();
  while (s.lru.size() > per_shard_) {
    s.index.erase(s.lru.back().key);
    s.lru.pop_back();
  }
}

void RegistrationCache::put(const std::string& key,
                            std::shared_ptr<const CachedRegistration> entry) {
  insert(key, {key, std::move(entry), std::chrono::steady_clock::now() + found_ttl_});
}

void RegistrationCache::put_absent(const std::string& key) {
  insert(key, {key, nullptr, std::chrono::steady_clock::now() + absent_ttl_});
}

void RegistrationCache::erase(const std::string& key) {
  if (per_shard_ == 0) return;
  Shard& s = shard_of(key);
  std::lock_guard lock(s.mutex);
  remove_locked(s, key);
}

std::size_t RegistrationCache::size() const {
  std::size_t n = 0;
  for (const auto& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.lru.size();
  }
  return n;
}

}  // namespace mp::relay
