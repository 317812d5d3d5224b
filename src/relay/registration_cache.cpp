// The compact sharded LRU behind RegistrationCache.
#include "relay/registration_cache.hpp"

#include <algorithm>
#include <cstring>
#include <functional>

namespace mp::relay {

std::uint64_t subscription_digest(std::string_view subscription_id) noexcept {
  return std::hash<std::string_view>{}(subscription_id);
}

RegistrationCache::Table::Table(std::size_t capacity)
    : shards_used(std::max<std::size_t>(1, std::min(kShards, capacity))),
      per_shard(std::min<std::size_t>(capacity / shards_used, 0x7fffffff)) {
  if (per_shard == 0) return;
  for (std::size_t i = 0; i < shards_used; ++i) {
    // Reserved, not touched: the pages become resident only as entries fill them, and slot
    // numbers stay valid because the array never moves.
    shards[i].slots.reserve(per_shard + 1);
    shards[i].slots.emplace_back();  // the LRU head
    shards[i].table.assign(16, 0);
  }
}

std::size_t RegistrationCache::Table::size() const {
  std::size_t n = 0;
  for (const auto& s : shards) {
    std::lock_guard lock(s.mutex);
    n += s.used;
  }
  return n;
}

RegistrationCache::RegistrationCache(std::size_t capacity, std::chrono::milliseconds absent_ttl,
                                     std::chrono::milliseconds found_ttl,
                                     std::size_t absent_capacity)
    : absent_ttl_(absent_ttl),
      found_ttl_(found_ttl),
      epoch_(std::chrono::steady_clock::now()),
      found_(capacity),
      absent_(capacity == 0 ? 0 : absent_capacity) {
  static_assert(sizeof(Slot) <= 64, "a cache entry is one 64-byte slot");
}

RegistrationCache::Key RegistrationCache::key_of(std::string_view key) noexcept {
  Key k{};
  std::memcpy(k.data(), key.data(), std::min(key.size(), k.size()));
  return k;
}

// Digest keys are uniform already; the mix keeps short or patterned keys (tests) spread too.
std::uint64_t RegistrationCache::mix(const Key& k) noexcept {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::memcpy(&a, k.data(), 8);
  std::memcpy(&b, k.data() + 8, 8);
  std::uint64_t x = a ^ (b * 0x9e3779b97f4a7c15ULL);
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

RegistrationCache::Shard& RegistrationCache::Table::shard_of(const Key& k) {
  return shards[(mix(k) >> 56) % shards_used];
}

std::int64_t RegistrationCache::now_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               epoch_)
      .count();
}

std::size_t RegistrationCache::find(const Shard& s, const Key& k) {
  const std::size_t mask = s.table.size() - 1;
  for (std::size_t pos = mix(k) & mask;; pos = (pos + 1) & mask) {
    const std::uint32_t slot = s.table[pos];
    if (slot == kNone) return s.table.size();
    if (s.slots[slot].key == k) return pos;
  }
}

void RegistrationCache::unlink(Shard& s, std::uint32_t slot) {
  Slot& e = s.slots[slot];
  s.slots[e.prev].next = e.next;
  s.slots[e.next].prev = e.prev;
}

void RegistrationCache::push_front(Shard& s, std::uint32_t slot) {
  Slot& head = s.slots[kNone];
  Slot& e = s.slots[slot];
  e.prev = kNone;
  e.next = head.next;
  s.slots[head.next].prev = slot;
  head.next = slot;
}

// Frees the slot at table position `pos` and closes the gap (backward-shift deletion), so lookups
// never need tombstones.
void RegistrationCache::remove_at(Shard& s, std::size_t pos) {
  const std::uint32_t slot = s.table[pos];
  unlink(s, slot);
  s.slots[slot] = Slot{};
  s.slots[slot].next = s.free;
  s.free = slot;
  --s.used;

  const std::size_t mask = s.table.size() - 1;
  std::size_t hole = pos;
  for (std::size_t j = (hole + 1) & mask; s.table[j] != kNone; j = (j + 1) & mask) {
    const std::size_t home = mix(s.slots[s.table[j]].key) & mask;
    // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
    const bool stays = hole < j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (stays) continue;
    s.table[hole] = s.table[j];
    hole = j;
  }
  s.table[hole] = kNone;
}

// Keeps the table at most half full.
void RegistrationCache::grow_table(Shard& s) {
  if ((s.used + 1) * 2 <= s.table.size()) return;
  std::vector<std::uint32_t> bigger(s.table.size() * 2, kNone);
  const std::size_t mask = bigger.size() - 1;
  for (const std::uint32_t slot : s.table) {
    if (slot == kNone) continue;
    std::size_t pos = mix(s.slots[slot].key) & mask;
    while (bigger[pos] != kNone) pos = (pos + 1) & mask;
    bigger[pos] = slot;
  }
  s.table.swap(bigger);
}

bool RegistrationCache::insert(Table& t, const Key& k, const Slot& value, bool keep_existing) {
  if (t.per_shard == 0) return false;
  Shard& s = t.shard_of(k);
  std::lock_guard lock(s.mutex);
  if (const std::size_t pos = find(s, k); pos != s.table.size()) {
    if (keep_existing) return false;
    remove_at(s, pos);
  }
  if (s.used == t.per_shard) remove_at(s, find(s, s.slots[s.slots[kNone].prev].key));
  grow_table(s);

  std::uint32_t slot = s.free;
  if (slot != kNone) {
    s.free = s.slots[slot].next;
  } else {
    slot = static_cast<std::uint32_t>(s.slots.size());
    s.slots.emplace_back();
  }
  s.slots[slot] = value;
  s.slots[slot].key = k;
  push_front(s, slot);
  ++s.used;

  const std::size_t mask = s.table.size() - 1;
  std::size_t pos = mix(k) & mask;
  while (s.table[pos] != kNone) pos = (pos + 1) & mask;
  s.table[pos] = slot;
  return true;
}

std::optional<RegistrationCache::Slot> RegistrationCache::lookup(Table& t, const Key& k) {
  if (t.per_shard == 0) return std::nullopt;
  Shard& s = t.shard_of(k);
  std::lock_guard lock(s.mutex);
  const std::size_t pos = find(s, k);
  if (pos == s.table.size()) return std::nullopt;
  const std::uint32_t slot = s.table[pos];
  if (now_ms() > s.slots[slot].expires_ms) {
    remove_at(s, pos);
    return std::nullopt;
  }
  unlink(s, slot);
  push_front(s, slot);
  return s.slots[slot];
}

RegistrationCache::Lookup RegistrationCache::get(std::string_view key) {
  const Key k = key_of(key);
  if (auto found = lookup(found_, k)) {
    Lookup out{Hit::found, {found->id, found->mailbox_id, customer_at(found->customer), {}}};
    if (found->bound) out.entry.subscription = found->subscription;
    return out;
  }
  if (lookup(absent_, k)) return {Hit::absent, {}};
  return {};
}

RegistrationCache::Slot RegistrationCache::slot_of(const CachedRegistration& entry,
                                                   std::chrono::milliseconds ttl) {
  Slot value;
  value.id = entry.id;
  value.mailbox_id = entry.mailbox_id;
  value.bound = entry.subscription.has_value();
  value.subscription = entry.subscription.value_or(0);
  value.customer = intern(entry.customer);
  value.expires_ms = now_ms() + ttl.count();
  return value;
}

void RegistrationCache::put(std::string_view key, const CachedRegistration& entry) {
  if (found_.per_shard == 0 || !entry.customer) return;
  const Key k = key_of(key);
  erase(absent_, k);
  insert(found_, k, slot_of(entry, found_ttl_));
}

bool RegistrationCache::put_if_missing(std::string_view key, const CachedRegistration& entry,
                                       double ttl_share) {
  if (found_.per_shard == 0 || !entry.customer) return false;
  const auto ttl = std::chrono::milliseconds(static_cast<std::int64_t>(
      static_cast<double>(found_ttl_.count()) * std::clamp(ttl_share, 0.0, 1.0)));
  return insert(found_, key_of(key), slot_of(entry, ttl), true);
}

void RegistrationCache::put_absent(std::string_view key) {
  Slot value;
  value.customer = kAbsent;
  value.expires_ms = now_ms() + absent_ttl_.count();
  const Key k = key_of(key);
  erase(found_, k);
  insert(absent_, k, value);
}

void RegistrationCache::erase(Table& t, const Key& k) {
  if (t.per_shard == 0) return;
  Shard& s = t.shard_of(k);
  std::lock_guard lock(s.mutex);
  if (const std::size_t pos = find(s, k); pos != s.table.size()) remove_at(s, pos);
}

void RegistrationCache::erase(std::string_view key) {
  const Key k = key_of(key);
  erase(found_, k);
  erase(absent_, k);
}

std::size_t RegistrationCache::size() const {
  return found_.size();
}

std::size_t RegistrationCache::absent_size() const {
  return absent_.size();
}

// The newest view read of a customer replaces the one before for all its cached registrations.
std::uint32_t RegistrationCache::intern(const std::shared_ptr<const CustomerView>& customer) {
  std::lock_guard lock(customers_mutex_);
  auto [it, added] =
      customer_index_.try_emplace(customer->id, static_cast<std::uint32_t>(customers_.size()));
  if (added) {
    customers_.push_back(customer);
  } else {
    customers_[it->second] = customer;
  }
  return it->second;
}

std::shared_ptr<const CustomerView> RegistrationCache::customer(std::int64_t id) const {
  std::lock_guard lock(customers_mutex_);
  const auto it = customer_index_.find(id);
  return it == customer_index_.end() ? nullptr : customers_[it->second];
}

std::shared_ptr<const CustomerView> RegistrationCache::customer_at(std::uint32_t index) const {
  std::lock_guard lock(customers_mutex_);
  return customers_[index];
}

}  // namespace mp::relay
