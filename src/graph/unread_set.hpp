// A Graph registration's unread count, kept from created/deleted notifications of a subscription
// on `messages?$filter=isRead eq false` (a message becoming unread is `created`, leaving the
// filter — read or deleted — is `deleted`). No notification carries a count, and Graph sends
// duplicates and resends, so the count is a baseline (what the app reported, of messages this
// set never saw) plus the messages known unread, with the messages known read remembered so that
// a resent `deleted` does not lower the count twice. Bounded: at most kMaxUnread unread and
// kMaxRead read message digests per registration (~5 KiB); past that the oldest unread digest
// folds into the baseline (the count stays right) and the oldest read one is forgotten.
// Pure code; the bytes (`encode`) are stored in registrations.graph_items.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace mp::graph {

class UnreadSet {
 public:
  static constexpr std::size_t kMaxUnread = 512;
  static constexpr std::size_t kMaxRead = 128;
  static constexpr std::uint32_t kMaxCount = 1000000;  // the EWS count's cap

  // The digest a message id is remembered by: 63 bits of its SHA-256.
  static std::uint64_t digest(std::string_view message_id);

  UnreadSet() = default;
  // From the stored bytes and baseline. Bytes that are not a whole number of entries (never
  // written by encode) are read up to the last whole entry.
  static UnreadSet decode(std::string_view bytes, std::uint32_t baseline);
  std::string encode() const;

  // What a notification did to the count.
  enum class Change { added, removed, unchanged };
  Change created(std::uint64_t digest);
  Change deleted(std::uint64_t digest);
  // The app says how many unread messages it sees now: they become the baseline, and the
  // digests known unread are forgotten (the app's count holds them); the read ones stay, so a
  // late `deleted` of one of them still changes nothing.
  void resync(std::uint32_t count);

  std::uint32_t count() const noexcept;
  std::uint32_t baseline() const noexcept { return baseline_; }
  std::size_t unread_entries() const noexcept { return unread_; }
  std::size_t read_entries() const noexcept { return entries_.size() - unread_; }

 private:
  // Oldest first. Bit 0: unread; bits 1-63: the digest.
  std::vector<std::uint64_t> entries_;
  std::size_t unread_ = 0;
  std::uint32_t baseline_ = 0;

  std::size_t find(std::uint64_t digest) const;
  void push(std::uint64_t digest, bool unread);
  void erase_at(std::size_t i);
  void enforce_bounds();
};

}  // namespace mp::graph
