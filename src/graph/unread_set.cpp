// The unread set's transitions and its stored form (8 bytes per entry, little-endian).
#include "graph/unread_set.hpp"

#include <algorithm>

#include "common/crypto.hpp"

namespace mp::graph {
namespace {

constexpr std::uint64_t kUnreadBit = 1;

std::uint64_t key_of(std::uint64_t entry) {
  return entry & ~kUnreadBit;
}

}  // namespace

std::uint64_t UnreadSet::digest(std::string_view message_id) {
  const Bytes h = sha256(message_id);
  std::uint64_t d = 0;
  for (std::size_t i = 0; i < 8; ++i) d = (d << 8) | h[i];
  return d & ~kUnreadBit;
}

UnreadSet UnreadSet::decode(std::string_view bytes, std::uint32_t baseline) {
  UnreadSet set;
  set.baseline_ = std::min(baseline, kMaxCount);
  const std::size_t n = bytes.size() / 8;
  set.entries_.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t e = 0;
    for (std::size_t b = 0; b < 8; ++b) {
      e |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[i * 8 + b])) << (8 * b);
    }
    // A digest stored twice (never written so) counts once.
    if (set.find(key_of(e)) != set.entries_.size()) continue;
    set.entries_.push_back(e);
    if (e & kUnreadBit) ++set.unread_;
  }
  set.enforce_bounds();
  return set;
}

std::string UnreadSet::encode() const {
  std::string out;
  out.resize(entries_.size() * 8);
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    for (std::size_t b = 0; b < 8; ++b) {
      out[i * 8 + b] = static_cast<char>((entries_[i] >> (8 * b)) & 0xFF);
    }
  }
  return out;
}

std::size_t UnreadSet::find(std::uint64_t digest) const {
  const std::uint64_t key = key_of(digest);
  for (std::size_t i = entries_.size(); i-- > 0;) {
    if (key_of(entries_[i]) == key) return i;
  }
  return entries_.size();
}

void UnreadSet::push(std::uint64_t digest, bool unread) {
  entries_.push_back(key_of(digest) | (unread ? kUnreadBit : 0));
  if (unread) ++unread_;
  enforce_bounds();
}

void UnreadSet::erase_at(std::size_t i) {
  if (entries_[i] & kUnreadBit) --unread_;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
}

void UnreadSet::enforce_bounds() {
  // The oldest unread digest folds into the baseline; the oldest read one is forgotten.
  while (unread_ > kMaxUnread) {
    const auto it = std::find_if(entries_.begin(), entries_.end(),
                                 [](std::uint64_t e) { return (e & kUnreadBit) != 0; });
    erase_at(static_cast<std::size_t>(it - entries_.begin()));
    baseline_ = std::min(baseline_ + 1, kMaxCount);
  }
  while (entries_.size() - unread_ > kMaxRead) {
    const auto it = std::find_if(entries_.begin(), entries_.end(),
                                 [](std::uint64_t e) { return (e & kUnreadBit) == 0; });
    erase_at(static_cast<std::size_t>(it - entries_.begin()));
  }
}

UnreadSet::Change UnreadSet::created(std::uint64_t digest) {
  const std::size_t i = find(digest);
  if (i != entries_.size()) {
    if (entries_[i] & kUnreadBit) return Change::unchanged;  // a resend, or created + updated
    erase_at(i);                                             // read, now unread again
  }
  if (count() >= kMaxCount) {
    push(digest, false);
    return Change::unchanged;
  }
  push(digest, true);
  return Change::added;
}

UnreadSet::Change UnreadSet::deleted(std::uint64_t digest) {
  const std::size_t i = find(digest);
  if (i != entries_.size()) {
    if (!(entries_[i] & kUnreadBit)) return Change::unchanged;  // a resend
    erase_at(i);
    push(digest, false);
    return Change::removed;
  }
  // A message unread before this set knew it: part of the baseline, if the baseline has any.
  push(digest, false);
  if (baseline_ == 0) return Change::unchanged;
  --baseline_;
  return Change::removed;
}

void UnreadSet::resync(std::uint32_t count) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [](std::uint64_t e) { return (e & kUnreadBit) != 0; }),
                 entries_.end());
  unread_ = 0;
  baseline_ = std::min(count, kMaxCount);
}

std::uint32_t UnreadSet::count() const noexcept {
  return static_cast<std::uint32_t>(
      std::min<std::uint64_t>(std::uint64_t{baseline_} + unread_, kMaxCount));
}

}  // namespace mp::graph
