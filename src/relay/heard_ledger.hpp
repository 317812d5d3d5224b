// Heartbeats heard and not yet written: the newest last-heard time of each registration, kept in
// memory between the listener's bulk writes (EwsCallbackService::flush_heard), bounded.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "store/callback_store.hpp"

namespace mp::relay {

class HeardLedger {
 public:
  // The registration cache identifies an entry by the first 16 bytes of its key.
  using CacheKey = std::array<char, 16>;
  struct Entry {
    store::Heard heard;
    CacheKey cache_key{};  // to drop the cached registration when the write finds it changed
  };

  // At most `max_entries` registrations at once: ~250 bytes each with Exchange's subscription
  // ids, ~700 with the longest the listener takes (512 characters).
  explicit HeardLedger(std::size_t max_entries);

  // Notes a heartbeat of `registration_id` on `subscription_id` at `heard_at` (UTC seconds):
  // false when the ledger is full and the registration is not in it (the caller then writes the
  // heartbeat durably instead). Thread-safe, as every member.
  bool note(std::string_view cache_key, std::int64_t registration_id,
            std::string_view subscription_id, std::int64_t heard_at);
  // Everything noted so far; the ledger is empty after it.
  std::vector<Entry> take();
  // Entries whose write failed, back in for the next one: a registration heard again meanwhile
  // keeps the newer time. Returns how many were dropped because the ledger was full.
  std::size_t put_back(std::vector<Entry> entries);
  std::size_t size() const;
  std::size_t capacity() const noexcept { return max_entries_; }

 private:
  // Under mutex_: merges `e` unless full; false when dropped.
  bool merge_locked(Entry&& e);

  const std::size_t max_entries_;
  mutable std::mutex mutex_;
  std::unordered_map<std::int64_t, Entry> entries_;  // by registration id
};

}  // namespace mp::relay
