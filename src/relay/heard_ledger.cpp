// The heartbeat ledger; see heard_ledger.hpp.
#include "relay/heard_ledger.hpp"

#include <algorithm>
#include <cstring>

namespace mp::relay {

HeardLedger::HeardLedger(std::size_t max_entries) : max_entries_(max_entries) {}

bool HeardLedger::note(std::string_view cache_key, std::int64_t registration_id,
                       std::string_view subscription_id, std::int64_t heard_at) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(registration_id);
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_) return false;
    it = entries_.try_emplace(registration_id).first;
    Entry& e = it->second;
    e.heard.registration_id = registration_id;
    std::memcpy(e.cache_key.data(), cache_key.data(),
                std::min(cache_key.size(), e.cache_key.size()));
  }
  Entry& e = it->second;
  // The usual repeat heartbeat changes only the time: no allocation.
  if (e.heard.subscription_id != subscription_id) e.heard.subscription_id = subscription_id;
  e.heard.heard_at = std::max(e.heard.heard_at, heard_at);
  return true;
}

std::vector<HeardLedger::Entry> HeardLedger::take() {
  std::unordered_map<std::int64_t, Entry> taken;
  {
    std::lock_guard lock(mutex_);
    taken.swap(entries_);
  }
  std::vector<Entry> out;
  out.reserve(taken.size());
  for (auto& [id, e] : taken) out.push_back(std::move(e));
  return out;
}

bool HeardLedger::merge_locked(Entry&& e) {
  auto it = entries_.find(e.heard.registration_id);
  if (it == entries_.end()) {
    if (entries_.size() >= max_entries_) return false;
    entries_.emplace(e.heard.registration_id, std::move(e));
    return true;
  }
  // Heard again since it was taken: the newer heartbeat (and its subscription) stays.
  if (it->second.heard.heard_at < e.heard.heard_at) it->second = std::move(e);
  return true;
}

std::size_t HeardLedger::put_back(std::vector<Entry> entries) {
  std::size_t dropped = 0;
  std::lock_guard lock(mutex_);
  for (auto& e : entries) {
    if (!merge_locked(std::move(e))) ++dropped;
  }
  return dropped;
}

std::size_t HeardLedger::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

}  // namespace mp::relay
