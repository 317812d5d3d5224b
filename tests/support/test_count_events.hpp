// Count events as the listener makes them from EWS events, for store tests: `n` new mails with
// items never seen before, or a folder's UnreadCount (the truth).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "store/registration_counts.hpp"

namespace mp::test {

inline std::vector<store::CountEvent> new_mails(std::int64_t n,
                                                const std::string& folder = "inbox") {
  static std::atomic<std::uint64_t> next{1};
  std::vector<store::CountEvent> out;
  for (std::int64_t i = 0; i < n; ++i) {
    out.push_back({store::CountEvent::Kind::new_item, 0, folder,
                   store::item_digest("test-item-" + std::to_string(next++))});
  }
  return out;
}

inline std::vector<store::CountEvent> unread_truth(std::int64_t n,
                                                   const std::string& folder = "inbox") {
  return {{store::CountEvent::Kind::truth, n, folder, ""}};
}

// What the old per-mailbox effect {set, value} was: a truth of `value`, or `value` new mails.
inline std::vector<store::CountEvent> count_change(bool set, std::int64_t value) {
  return set ? unread_truth(value) : new_mails(value);
}

}  // namespace mp::test
