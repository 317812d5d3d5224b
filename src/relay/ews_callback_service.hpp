// The "handle callback" use case: find the registration behind a secret, apply the binding
// rules, record the callback durably (a heartbeat: in memory, written in bulk), and say what to
// answer Exchange.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/cidr.hpp"
#include "common/token_bucket.hpp"
#include "ews/send_notification.hpp"
#include "relay/callback_rules.hpp"
#include "relay/heard_ledger.hpp"
#include "relay/registration_cache.hpp"
#include "store/callback_store.hpp"

namespace mp::relay {

enum class CallbackOutcome {
  ok,                      // recorded (or nothing to record): SubscriptionStatus OK
  unsubscribe_unknown,     // no such registration (never, or deleted): Unsubscribe
  unsubscribe_superseded,  // the app resubscribed; this is the old subscription: Unsubscribe
  forbidden,               // caller outside the customer's allow-list: 403, no reply to Exchange
  unavailable,             // the database cannot record it now: 503, Exchange retries
  invalid,                 // well-formed SOAP with values no EWS server sends (e.g. a 5 KB id): 400
  rate_limited,  // too many unknown secrets from the address, or callbacks of the registration or
                 // customer (CallbackLimits): 503 with Retry-After, nothing recorded
};
inline constexpr std::size_t kCallbackOutcomeCount = 7;
static_assert(static_cast<std::size_t>(CallbackOutcome::rate_limited) + 1 == kCallbackOutcomeCount);
const char* callback_outcome_name(CallbackOutcome r) noexcept;

struct CallbackResult {
  CallbackOutcome outcome = CallbackOutcome::unavailable;
  std::string reason;       // for the log line; never a secret
  std::string customer_id;  // public Customer ID when known
};

// Unknown secrets an address may present: a burst, then a steady rate (0: no limit).
struct UnknownSecretLimit {
  std::uint32_t burst = 100;
  double per_second = 20;
};

// Callbacks a registration and a customer may send: a burst, then a rate (0 per second: no
// limit). Beyond it the callback is answered 503 with Retry-After and nothing is recorded:
// Exchange sends it again later with the events still queued on its side (answering OK without
// recording would lose the count; 429 is not a status Exchange knows how to wait on).
struct CallbackLimits {
  std::uint32_t registration_burst = 120;
  double registration_per_second = 4;
  std::uint32_t customer_burst = 50000;
  double customer_per_second = 5000;
};

class EwsCallbackService {
 public:
  EwsCallbackService(store::CallbackStore& store, RegistrationCache& cache,
                     prometheus::Registry& registry, UnknownSecretLimit limit = {});

  // Before the body is read (the listener's header check): whether the secret belongs to an
  // active registration, from the cache or one lookup. nullopt: go on and read the body; else
  // the answer (unknown secret, the caller's address over its unknown-secret limit, or the
  // database unavailable). Every unknown secret counts against the caller's address.
  boost::asio::awaitable<std::optional<CallbackResult>> precheck(std::string_view secret,
                                                                 const IpAddress& caller);

  // Which secrets are worth a lookup, decided from the secret alone (the region's capability
  // tag, keys::RegionSecret::issued); the others are answered as unknown at once. Unset: every
  // plausible secret is looked up. Set before serving.
  using SecretFilter = std::function<bool(std::string_view secret)>;
  void set_secret_filter(SecretFilter filter) { filter_ = std::move(filter); }
  // Set before serving; without it callbacks are not limited per registration or customer.
  void set_callback_limits(const CallbackLimits& limits);

  // Heartbeats (callbacks on the bound subscription that bind nothing and move no count) are
  // answered without a durable write: their last-heard times wait in memory, at most
  // `max_pending` registrations, until flush_heard() writes them. Beyond that, or without this
  // call, a heartbeat is recorded like any callback. Set before serving.
  void defer_heartbeats(std::size_t max_pending);
  // Writes the heartbeats noted so far (call it every 30 s or so, and once after the listener
  // has stopped). Registrations found ended or rebound are dropped from the cache, so their
  // next callback reads them again (and is answered Unsubscribe when it should be). Entries
  // whose write failed are kept for the next call. Two at once are harmless (each writes what
  // it took).
  boost::asio::awaitable<void> flush_heard();
  std::size_t heard_pending() const { return heard_ ? heard_->size() : 0; }

  boost::asio::awaitable<CallbackResult> handle(std::string_view secret,
                                                const ews::SendNotification& callback,
                                                const IpAddress& caller);

  // Fills the registration cache with the active registrations, `page` at a time, until they are
  // all in or the cache is full, so a restarted listener answers from memory at once rather than
  // reading each registration on its first callback. Entries live a random 50-100 % of their TTL,
  // so their refreshes spread out; what callbacks cached meanwhile is kept. Returns the count
  // cached. Stops early when `stopping` becomes true.
  boost::asio::awaitable<Result<std::size_t>> preload_cache(const std::atomic<bool>& stopping,
                                                            std::size_t page = 5000);

 private:
  struct Found {
    std::optional<CachedRegistration> entry;          // none: no active registration
    std::optional<store::RegistrationRecord> record;  // when read from the database just now
  };
  // The registration behind the secret hash; `bypass_cache` reads it from the store.
  boost::asio::awaitable<Result<Found>> registration(const std::string& key, const Bytes& hash,
                                                     bool bypass_cache);
  CallbackResult count(CallbackResult outcome);
  // The cache's entry for a registration read from the store.
  CachedRegistration cache_entry(const store::RegistrationRecord& record);

  // Counts an unknown secret against the caller's address.
  CallbackResult unknown(const IpAddress& caller, std::string reason);
  // The rate-limited outcome when the registration or its customer is over its callback rate.
  std::optional<CallbackResult> over_callback_rate(const CachedRegistration& entry);
  // A callback written: the cache follows a new binding, the events are counted.
  CallbackResult recorded(const std::string& key, const CachedRegistration& entry,
                          const BindingDecision& decision, const CallbackSummary& summary,
                          const ews::SendNotification& callback);

  store::CallbackStore& store_;
  RegistrationCache& cache_;
  std::unique_ptr<HeardLedger> heard_;  // with defer_heartbeats()
  UnknownSecretLimit limit_;
  TokenBucketLimiter unknown_by_address_;
  SecretFilter filter_;
  // Buckets of registrations and customers that called lately (bounded: full ones go first).
  std::optional<TokenBucketLimiter> per_registration_;
  std::optional<TokenBucketLimiter> per_customer_;
  prometheus::Family<prometheus::Counter>& callbacks_;
  prometheus::Family<prometheus::Counter>& events_;
  prometheus::Family<prometheus::Counter>& error_messages_;
  prometheus::Family<prometheus::Counter>& cache_lookups_;
  prometheus::Family<prometheus::Counter>& heartbeats_;
  // The hot path's series, resolved once: Family::Add hashes a label map on every call.
  std::array<prometheus::Counter*, kCallbackOutcomeCount> callbacks_by_result_{};
  std::array<prometheus::Counter*, ews::kEventTypeCount> events_by_type_{};
  prometheus::Counter* cache_hit_ = nullptr;
  prometheus::Counter* cache_absent_ = nullptr;
  prometheus::Counter* cache_miss_ = nullptr;
  prometheus::Counter* heard_deferred_ = nullptr;  // answered from memory
  prometheus::Counter* heard_full_ = nullptr;      // recorded durably: the ledger was full
  prometheus::Counter* heard_written_ = nullptr;   // last-heard times written in bulk
  prometheus::Counter* heard_changed_ = nullptr;   // found ended or rebound when written
  prometheus::Counter* heard_dropped_ = nullptr;   // lost: a failed write and a full ledger
  prometheus::Counter* heard_write_failures_ = nullptr;
};

}  // namespace mp::relay
