// The callback use case, step by step; see ews_callback_service.hpp.
#include "relay/ews_callback_service.hpp"

#include <algorithm>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <random>

#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/text.hpp"
#include "relay/callback_rules.hpp"

namespace mp::relay {
namespace asio = boost::asio;

const char* callback_outcome_name(CallbackOutcome r) noexcept {
  switch (r) {
    case CallbackOutcome::ok:
      return "ok";
    case CallbackOutcome::unsubscribe_unknown:
      return "unsubscribe_unknown";
    case CallbackOutcome::unsubscribe_superseded:
      return "unsubscribe_superseded";
    case CallbackOutcome::forbidden:
      return "forbidden";
    case CallbackOutcome::unavailable:
      return "unavailable";
    case CallbackOutcome::invalid:
      return "invalid";
    case CallbackOutcome::rate_limited:
      return "rate_limited";
  }
  return "unavailable";
}

EwsCallbackService::EwsCallbackService(store::CallbackStore& store, RegistrationCache& cache,
                                       prometheus::Registry& registry, UnknownSecretLimit limit)
    : store_(store),
      cache_(cache),
      limit_(limit),
      unknown_by_address_(limit.burst, limit.per_second, 100000),
      callbacks_(prometheus::BuildCounter()
                     .Name("mailpush_ews_callbacks_total")
                     .Help("EWS callbacks handled, by result")
                     .Register(registry)),
      events_(prometheus::BuildCounter()
                  .Name("mailpush_ews_events_total")
                  .Help("EWS events received in recorded callbacks, by type")
                  .Register(registry)),
      error_messages_(
          prometheus::BuildCounter()
              .Name("mailpush_ews_error_messages_total")
              .Help("SendNotification messages whose ResponseClass is not Success, by ResponseCode")
              .Register(registry)),
      cache_lookups_(prometheus::BuildCounter()
                         .Name("mailpush_registration_cache_lookups_total")
                         .Help("Registration lookups by secret, by cache result")
                         .Register(registry)),
      heartbeats_(prometheus::BuildCounter()
                      .Name("mailpush_ews_heartbeats_total")
                      .Help("Heartbeats (callbacks that bind nothing and move no count) whose "
                            "last-heard time waits in memory, by what became of it")
                      .Register(registry)) {
  // Every series exists from the start (at 0, for alerts).
  for (std::size_t r = 0; r < kCallbackOutcomeCount; ++r) {
    callbacks_by_result_[r] =
        &callbacks_.Add({{"result", callback_outcome_name(static_cast<CallbackOutcome>(r))}});
  }
  for (std::size_t t = 0; t < ews::kEventTypeCount; ++t) {
    events_by_type_[t] =
        &events_.Add({{"type", ews::event_type_name(static_cast<ews::EventType>(t))}});
  }
  cache_hit_ = &cache_lookups_.Add({{"result", "hit"}});
  cache_absent_ = &cache_lookups_.Add({{"result", "absent"}});
  cache_miss_ = &cache_lookups_.Add({{"result", "miss"}});
  heard_deferred_ = &heartbeats_.Add({{"result", "deferred"}});
  heard_full_ = &heartbeats_.Add({{"result", "recorded_ledger_full"}});
  heard_written_ = &heartbeats_.Add({{"result", "written"}});
  heard_changed_ = &heartbeats_.Add({{"result", "registration_changed"}});
  heard_dropped_ = &heartbeats_.Add({{"result", "dropped"}});
  heard_write_failures_ = &heartbeats_.Add({{"result", "write_failed"}});
}

void EwsCallbackService::defer_heartbeats(std::size_t max_pending) {
  heard_ = max_pending > 0 ? std::make_unique<HeardLedger>(max_pending) : nullptr;
}

asio::awaitable<void> EwsCallbackService::flush_heard() {
  if (!heard_) co_return;
  std::vector<HeardLedger::Entry> taken = heard_->take();
  if (taken.empty()) co_return;
  // The entries move into the rows the store reads; their cache keys stay beside them.
  std::vector<store::Heard> rows;
  rows.reserve(taken.size());
  for (auto& e : taken) rows.push_back(std::move(e.heard));
  auto changed = co_await store_.record_heard(rows);
  if (!changed) {
    heard_write_failures_->Increment(static_cast<double>(rows.size()));
    for (std::size_t i = 0; i < rows.size(); ++i) taken[i].heard = std::move(rows[i]);
    const std::size_t dropped = heard_->put_back(std::move(taken));
    heard_dropped_->Increment(static_cast<double>(dropped));
    log::warn("ews.heard_write_failed",
              {{"registrations", rows.size()},
               {"dropped", dropped},
               {"error", changed.error().message},
               {"effect", "last-heard times kept in memory and written with the next flush"}});
    co_return;
  }
  heard_written_->Increment(static_cast<double>(rows.size() - changed->size()));
  if (changed->empty()) co_return;
  heard_changed_->Increment(static_cast<double>(changed->size()));
  // Ended or rebound since they were cached: read them again on their next callback.
  std::sort(changed->begin(), changed->end());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (std::binary_search(changed->begin(), changed->end(), rows[i].registration_id)) {
      cache_.erase(std::string_view(taken[i].cache_key.data(), taken[i].cache_key.size()));
    }
  }
  log::info("ews.heard_registrations_changed", {{"registrations", changed->size()}});
}

CallbackResult EwsCallbackService::count(CallbackResult outcome) {
  callbacks_by_result_[static_cast<std::size_t>(outcome.outcome)]->Increment();
  return outcome;
}

CachedRegistration EwsCallbackService::cache_entry(const store::RegistrationRecord& record) {
  CachedRegistration entry;
  entry.id = record.id;
  entry.mailbox_id = record.mailbox_id;
  if (record.subscription_id) entry.subscription = subscription_digest(*record.subscription_id);
  entry.customer = cache_.customer(record.customer_id);
  if (entry.customer && entry.customer->public_id == record.customer_public_id &&
      entry.customer->caller_cidrs == record.caller_cidrs) {
    return entry;  // the customer's view as cached: no need to parse its allow-list again
  }
  auto customer = std::make_shared<CustomerView>();
  customer->id = record.customer_id;
  customer->public_id = record.customer_public_id;
  customer->caller_cidrs = record.caller_cidrs;
  auto cidrs = parse_cidr_list(record.caller_cidrs);
  if (!cidrs) {
    // A bad allow-list must not open the door: refuse every caller and say why.
    log::error("ews.caller_allow_list_invalid",
               {{"customer", record.customer_public_id}, {"error", cidrs.error().message}});
    customer->allow_list_invalid = true;
  } else {
    customer->allowed_callers = std::move(*cidrs);
  }
  entry.customer = std::move(customer);
  return entry;
}

asio::awaitable<Result<std::size_t>> EwsCallbackService::preload_cache(
    const std::atomic<bool>& stopping, std::size_t page) {
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> share(0.5, 1.0);
  std::size_t cached = 0;
  std::int64_t after = 0;
  for (;;) {
    if (stopping.load() || cache_.size() >= cache_.capacity()) break;
    auto rows = co_await store_.active_registrations(after, page);
    if (!rows) co_return std::move(rows).error();
    for (const auto& row : rows->registrations) {
      if (cache_.put_if_missing(row.secret_hash, cache_entry(row.record), share(rng))) ++cached;
    }
    if (rows->done) break;
    after = rows->next_after;
  }
  co_return cached;
}

asio::awaitable<Result<EwsCallbackService::Found>> EwsCallbackService::registration(
    const std::string& key, const Bytes& hash, bool bypass_cache) {
  if (!bypass_cache) {
    auto hit = cache_.get(key);
    if (hit.hit == RegistrationCache::Hit::found) {
      cache_hit_->Increment();
      co_return Found{std::move(hit.entry), std::nullopt};
    }
    if (hit.hit == RegistrationCache::Hit::absent) {
      cache_absent_->Increment();
      co_return Found{};
    }
  }
  cache_miss_->Increment();
  auto found = co_await store_.find_registration(hash);
  if (!found) co_return std::move(found).error();
  if (!*found) {
    cache_.put_absent(key);
    co_return Found{};
  }
  store::RegistrationRecord& record = **found;
  CachedRegistration entry = cache_entry(record);
  cache_.put(key, entry);
  co_return Found{std::move(entry), std::move(record)};
}

namespace {

// Values the columns cannot hold would fail a whole batch: refuse them alone, up front.
std::optional<std::string> invalid_values(const CallbackSummary& s) {
  if (s.subscription_id && (s.subscription_id->size() > store::kMaxSubscriptionIdLength ||
                            !is_visible_ascii(*s.subscription_id))) {
    return "SubscriptionId is longer than " + std::to_string(store::kMaxSubscriptionIdLength) +
           " characters or not printable ASCII";
  }
  if (s.watermark.size() > store::kMaxWatermarkLength || !is_visible_ascii(s.watermark)) {
    return "Watermark is longer than " + std::to_string(store::kMaxWatermarkLength) +
           " characters or not printable ASCII";
  }
  return std::nullopt;
}

// ResponseCode values become metric labels: only known ones, so a caller cannot mint series.
std::string known_response_code(std::string_view code) {
  static constexpr std::string_view kKnown[] = {"NoError",
                                                "ErrorReadEventsFailed",
                                                "ErrorSubscriptionNotFound",
                                                "ErrorInvalidSubscription",
                                                "ErrorExpiredSubscription",
                                                "ErrorMissedNotificationEvents",
                                                "ErrorInternalServerError",
                                                "ErrorServerBusy",
                                                "ErrorMailboxMoveInProgress",
                                                "ErrorMailboxStoreUnavailable",
                                                "ErrorConnectionFailed",
                                                "ErrorAccessDenied"};
  for (auto k : kKnown) {
    if (code == k) return std::string(k);
  }
  return "other";
}

}  // namespace

CallbackResult EwsCallbackService::unknown(const IpAddress& caller, std::string reason) {
  if (limit_.per_second > 0) {
    (void)unknown_by_address_.take(address_limit_key(caller), TokenBucketLimiter::Clock::now());
  }
  return count({CallbackOutcome::unsubscribe_unknown, std::move(reason), ""});
}

void EwsCallbackService::set_callback_limits(const CallbackLimits& limits) {
  if (limits.registration_per_second > 0) {
    per_registration_.emplace(limits.registration_burst, limits.registration_per_second, 200000);
  }
  if (limits.customer_per_second > 0) {
    per_customer_.emplace(limits.customer_burst, limits.customer_per_second, 100000);
  }
}

asio::awaitable<std::optional<CallbackResult>> EwsCallbackService::precheck(
    std::string_view secret, const IpAddress& caller) {
  const bool plausible = plausible_secret(secret) && (!filter_ || filter_(secret));
  const Bytes hash = sha384(secret);
  const std::string key(hash.begin(), hash.end());
  // A cached registration is counted as a hit by the handler that follows, not here.
  const auto cached = plausible ? cache_.get(key) : RegistrationCache::Lookup{};
  if (limit_.per_second > 0 &&
      unknown_by_address_.blocked(address_limit_key(caller), TokenBucketLimiter::Clock::now())) {
    // Known secrets from this address still pass: a cache hit costs nothing.
    if (cached.hit == RegistrationCache::Hit::found) co_return std::nullopt;
    co_return count(
        {CallbackOutcome::rate_limited, "too many unknown secrets from " + caller.to_string(), ""});
  }
  if (!plausible) co_return unknown(caller, "malformed secret");
  if (cached.hit == RegistrationCache::Hit::found) co_return std::nullopt;
  if (cached.hit == RegistrationCache::Hit::absent) {
    cache_absent_->Increment();
    co_return unknown(caller, "no active registration");
  }
  auto reg = co_await registration(key, hash, /*bypass_cache=*/true);
  if (!reg) co_return count({CallbackOutcome::unavailable, reg.error().message, ""});
  if (!reg->entry) co_return unknown(caller, "no active registration");
  co_return std::nullopt;
}

namespace {

// The forbidden outcome when `caller` is outside the customer's allow-list (or the list is
// unreadable); none when it may call.
std::optional<CallbackResult> refused_caller(const CustomerView& customer,
                                             const IpAddress& caller) {
  if (customer.allow_list_invalid ||
      (!customer.allowed_callers.empty() && !any_contains(customer.allowed_callers, caller))) {
    return CallbackResult{CallbackOutcome::forbidden,
                          "caller " + caller.to_string() + " is outside the customer's allow-list",
                          customer.public_id};
  }
  return std::nullopt;
}

store::CallbackWrite callback_write(const CachedRegistration& entry, const CallbackSummary& summary,
                                    const BindingDecision& decision) {
  store::CallbackWrite write;
  write.registration_id = entry.id;
  write.mailbox_id = entry.mailbox_id;
  write.subscription_id = *summary.subscription_id;
  write.bind = decision.bind;
  write.expected_current = decision.expected_current;
  write.count_events = summary.count_events;
  return write;
}

}  // namespace

std::optional<CallbackResult> EwsCallbackService::over_callback_rate(
    const CachedRegistration& entry) {
  const CustomerView& customer = *entry.customer;
  const auto now = TokenBucketLimiter::Clock::now();
  if (per_registration_ && per_registration_->take(std::to_string(entry.id), now)) {
    return CallbackResult{CallbackOutcome::rate_limited,
                          "registration " + std::to_string(entry.id) + " over its callback rate",
                          customer.public_id};
  }
  if (per_customer_ && per_customer_->take(customer.public_id, now)) {
    return CallbackResult{CallbackOutcome::rate_limited, "customer over its callback rate",
                          customer.public_id};
  }
  return std::nullopt;
}

CallbackResult EwsCallbackService::recorded(const std::string& key, const CachedRegistration& entry,
                                            const BindingDecision& decision,
                                            const CallbackSummary& summary,
                                            const ews::SendNotification& callback) {
  const CustomerView& customer = *entry.customer;
  if (decision.bind) {
    CachedRegistration rebound = entry;
    rebound.subscription = subscription_digest(*summary.subscription_id);
    cache_.put(key, rebound);
    log::info("ews.subscription_bound", {{"customer", customer.public_id},
                                         {"registration", entry.id},
                                         {"rebind", decision.expected_current.has_value()}});
  }
  for (const auto& m : callback.messages) {
    if (!m.notification || m.subscription_id() != summary.subscription_id) continue;
    for (const auto& e : m.notification->events) {
      events_by_type_[static_cast<std::size_t>(e.type)]->Increment();
    }
  }
  return count({CallbackOutcome::ok, "recorded", customer.public_id});
}

asio::awaitable<CallbackResult> EwsCallbackService::handle(std::string_view secret,
                                                           const ews::SendNotification& callback,
                                                           const IpAddress& caller) {
  if (!plausible_secret(secret) || (filter_ && !filter_(secret))) {
    co_return unknown(caller, "malformed secret");
  }
  const Bytes hash = sha384(secret);
  const std::string key(hash.begin(), hash.end());
  const CallbackSummary summary = summarize(callback);
  if (auto problem = invalid_values(summary)) {
    co_return count({CallbackOutcome::invalid, *problem, ""});
  }

  // Three rounds at most: a cached registration bound to another subscription is decided on the
  // full record, read again; and a registration that changed under a write is read again, once.
  bool bypass_cache = false;
  int stale_writes = 0;
  for (int round = 0; round < 3; ++round) {
    auto reg = co_await registration(key, hash, bypass_cache);
    if (!reg) co_return count({CallbackOutcome::unavailable, reg.error().message, ""});
    if (!reg->entry) {
      co_return unknown(caller, "no active registration");
    }
    const CachedRegistration& entry = *reg->entry;
    const CustomerView& customer = *entry.customer;
    if (auto refused = refused_caller(customer, caller)) co_return count(std::move(*refused));
    if (round == 0) {
      if (auto limited = over_callback_rate(entry)) co_return count(std::move(*limited));
      for (const auto& code : summary.error_codes) {
        error_messages_.Add({{"code", known_response_code(code)}}).Increment();
      }
    }
    if (!summary.subscription_id) {
      co_return count(
          {CallbackOutcome::ok, "no subscription id: nothing to record", customer.public_id});
    }
    // The usual callback comes from the bound subscription: the cached digest decides it. Any
    // other id (the first, the app's new one, a superseded one) needs the full record.
    BindingDecision decision;
    if (reg->record) {
      decision = decide_binding(*reg->record, *summary.subscription_id);
    } else if (entry.subscription != subscription_digest(*summary.subscription_id)) {
      bypass_cache = true;
      continue;
    }
    if (decision.unsubscribe) {
      co_return count({CallbackOutcome::unsubscribe_superseded,
                       "subscription superseded by a newer one", customer.public_id});
    }
    if (!summary.has_notification) {
      // Only error messages (e.g. ErrorReadEventsFailed): no events to record and no reason to
      // bind; the app must subscribe again, which the silent-subscription report will show. No
      // write checks the registration here, so a cached one is read again first.
      if (!bypass_cache) {
        bypass_cache = true;
        continue;
      }
      co_return count({CallbackOutcome::ok, "error message only", customer.public_id});
    }

    if (heard_ && !decision.bind && summary.count_events.empty()) {
      const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count();
      if (heard_->note(key, entry.id, *summary.subscription_id, now)) {
        heard_deferred_->Increment();
        co_return recorded(key, entry, decision, summary, callback);
      }
      heard_full_->Increment();
    }
    const store::CallbackWrite write = callback_write(entry, summary, decision);
    auto written = co_await store_.record(write);
    if (!written) {
      co_return count({CallbackOutcome::unavailable, written.error().message, customer.public_id});
    }
    if (*written == store::WriteOutcome::failed) {
      co_return count({CallbackOutcome::unavailable, "the database refused this callback's write",
                       customer.public_id});
    }
    if (*written == store::WriteOutcome::stale) {
      cache_.erase(key);
      if (++stale_writes == 2) break;
      bypass_cache = true;
      continue;
    }
    co_return recorded(key, entry, decision, summary, callback);
  }
  co_return count(
      {CallbackOutcome::unavailable, "registration changed twice while recording; retry", ""});
}

}  // namespace mp::relay
