// A bounded, sharded LRU of registrations by secret hash, so a callback costs no database round
// trip; remembers unknown secrets for a short while too. Correctness of bindings and deletions
// does not rest on it: every write re-checks the registration in the database, and a stale entry
// is dropped and re-read. Entries also expire, so settings read with them (the customer's caller
// allow-list) reach every instance within `found_ttl`.
//
// It is built to hold every registration of a region (2M registrations under 300 MiB):
// an entry is one 64-byte slot in a per-shard array, found through an open-addressing table of
// 4-byte slot numbers, and linked into its shard's LRU list by slot number. What a whole customer
// shares (its Customer ID and parsed allow-list) is kept once per customer, and the newest one
// read serves every cached registration of that customer. The bound subscription id is kept as a
// 64-bit digest only: a callback whose id matches it needs nothing else, and any other id is
// decided on the full record read from the database (see EwsCallbackService).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/cidr.hpp"

namespace mp::relay {

// What a customer's registrations share.
struct CustomerView {
  std::int64_t id = 0;
  std::string public_id;              // "use1-…", for logs
  std::string caller_cidrs;           // as stored; "" = any caller
  std::vector<Cidr> allowed_callers;  // parsed; empty = any caller
  bool allow_list_invalid = false;    // unparseable allow-list: refuse every caller
};

struct CachedRegistration {
  std::int64_t id = 0;
  std::int64_t mailbox_id = 0;
  std::shared_ptr<const CustomerView> customer;
  // Digest of the bound EWS subscription id (subscription_digest); none before the first.
  std::optional<std::uint64_t> subscription;
};

// The digest kept for a bound subscription id. Equal digests are only a hint: the write that
// follows checks the id itself in the database and reports a stale registration otherwise.
std::uint64_t subscription_digest(std::string_view subscription_id) noexcept;

class RegistrationCache {
 public:
  // At most `capacity` registrations (0 disables caching), kept for `found_ttl`. Unknown secrets
  // are remembered apart, at most `absent_capacity` of them for `absent_ttl`: a flood of made-up
  // secrets evicts only other made-up secrets, never a registration. Memory grows with the
  // entries held, ~72 bytes each.
  explicit RegistrationCache(std::size_t capacity,
                             std::chrono::milliseconds absent_ttl = std::chrono::seconds(30),
                             std::chrono::milliseconds found_ttl = std::chrono::hours(1),
                             std::size_t absent_capacity = 65536);

  enum class Hit { miss, found, absent };
  struct Lookup {
    Hit hit = Hit::miss;
    CachedRegistration entry;  // with `found`
  };

  // Keys are digests (the SHA-384 of a secret): 16 bytes of them identify an entry, and shorter
  // keys are zero-padded. `entry.customer` must be set.
  Lookup get(std::string_view key);
  void put(std::string_view key, const CachedRegistration& entry);
  // Caches `entry` unless the key is cached already (as found or absent), to live `ttl_share` of
  // the found TTL; true when it did. For preloading: what live traffic put is never replaced.
  bool put_if_missing(std::string_view key, const CachedRegistration& entry, double ttl_share);
  void put_absent(std::string_view key);
  void erase(std::string_view key);
  std::size_t size() const;  // registrations held
  std::size_t absent_size() const;
  std::size_t capacity() const noexcept { return found_.per_shard * found_.shards_used; }
  // The newest view of a customer put with any entry, or null.
  std::shared_ptr<const CustomerView> customer(std::int64_t id) const;

 private:
  using Key = std::array<std::uint8_t, 16>;
  static constexpr std::uint32_t kNone = 0;      // slot 0 is each shard's LRU list head
  static constexpr std::uint32_t kAbsent = ~0u;  // customer index of a remembered absence

  struct Slot {
    Key key{};
    std::int64_t id = 0;
    std::int64_t mailbox_id = 0;
    std::uint64_t subscription = 0;
    std::int64_t expires_ms = 0;  // since epoch_
    std::uint32_t customer = 0;   // index into customers_, or kAbsent
    std::uint32_t prev = 0;       // LRU neighbours (slot numbers; 0 = the head); free list: next
    std::uint32_t next = 0;
    bool bound = false;
  };

  struct Shard {
    mutable std::mutex mutex;
    std::vector<Slot> slots;           // [0] is the LRU head; reserved once, never reallocated
    std::vector<std::uint32_t> table;  // open addressing, linear probing; 0 = empty
    std::uint32_t free = kNone;        // first free slot, chained through `next`
    std::size_t used = 0;
  };
  static constexpr std::size_t kShards = 16;
  // One bounded LRU: the registrations, or the unknown secrets.
  struct Table {
    explicit Table(std::size_t capacity);
    Shard& shard_of(const Key& k);
    std::size_t size() const;
    std::size_t shards_used;  // fewer than kShards for tiny capacities, so the bound holds
    std::size_t per_shard;
    std::array<Shard, kShards> shards;
  };

  static Key key_of(std::string_view key) noexcept;
  static std::uint64_t mix(const Key& k) noexcept;
  std::int64_t now_ms() const;

  // Shard operations, with its mutex held.
  static std::size_t find(const Shard& s, const Key& k);  // table position, or table.size()
  static void remove_at(Shard& s, std::size_t pos);
  static void unlink(Shard& s, std::uint32_t slot);
  static void push_front(Shard& s, std::uint32_t slot);
  static void grow_table(Shard& s);
  // Replaces an entry of the same key unless `keep_existing`; false when it kept one.
  static bool insert(Table& t, const Key& k, const Slot& value, bool keep_existing = false);
  static void erase(Table& t, const Key& k);
  // A live entry of `t` (refreshed in its LRU), or nullopt; an expired one is dropped.
  std::optional<Slot> lookup(Table& t, const Key& k);
  Slot slot_of(const CachedRegistration& entry, std::chrono::milliseconds ttl);

  std::uint32_t intern(const std::shared_ptr<const CustomerView>& customer);
  std::shared_ptr<const CustomerView> customer_at(std::uint32_t index) const;

  std::chrono::milliseconds absent_ttl_;
  std::chrono::milliseconds found_ttl_;
  std::chrono::steady_clock::time_point epoch_;
  Table found_;
  Table absent_;

  mutable std::mutex customers_mutex_;
  std::vector<std::shared_ptr<const CustomerView>> customers_;  // the newest view of each
  std::unordered_map<std::int64_t, std::uint32_t> customer_index_;
};

}  // namespace mp::relay
