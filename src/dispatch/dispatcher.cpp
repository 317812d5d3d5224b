// Implementation of the dispatcher's rounds.
#include "dispatch/dispatcher.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "apns/device_token.hpp"
#include "common/log.hpp"

namespace mp::dispatch {
namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

prometheus::Family<prometheus::Counter>& results_family(prometheus::Registry& r) {
  return prometheus::BuildCounter()
      .Name("mailpush_dispatch_rows_total")
      .Help("Outbox rows by what the dispatcher did with them")
      .Register(r);
}

}  // namespace

Dispatcher::Dispatcher(asio::io_context& ioc, store::DispatchStore& store, BadgeSender& sender,
                       CredentialLookup credentials, DispatcherOptions options,
                       prometheus::Registry& registry)
    : strand_(asio::make_strand(ioc)),
      store_(store),
      sender_(sender),
      credentials_(std::move(credentials)),
      options_(std::move(options)),
      rng_(std::random_device{}()),
      wake_timer_(strand_),
      dead_reasons_(prometheus::BuildCounter()
                        .Name("mailpush_outbox_dead_letters_total")
                        .Help("Notifications dead-lettered, by reason")
                        .Register(registry)),
      wakes_(prometheus::BuildCounter()
                 .Name("mailpush_dispatch_wakes_total")
                 .Help("Background pushes that wake the app to renew, reauthorize or resync its "
                       "subscription, by reason and result (sent, failed, limited, dropped)")
                 .Register(registry)),
      delay_(prometheus::BuildHistogram()
                 .Name("mailpush_notification_delay_seconds")
                 .Help("From the callback's commit to APNs accepting the badge")
                 .Register(registry)
                 .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.02,
                                                                  0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10,
                                                                  30, 60, 300})),
      round_rows_(prometheus::BuildHistogram()
                      .Name("mailpush_dispatch_round_rows")
                      .Help("Outbox rows read per dispatch round")
                      .Register(registry)
                      .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128,
                                                                       256, 512, 1024})),
      paused_gauge_(prometheus::BuildGauge()
                        .Name("mailpush_dispatch_paused_customers")
                        .Help("Customers whose queue this instance paused (credential failures)")
                        .Register(registry)
                        .Add({})),
      queued_gauge_(prometheus::BuildGauge()
                        .Name("mailpush_outbox_queued")
                        .Help("Notifications queued in the region's outbox")
                        .Register(registry)
                        .Add({})),
      dead_gauge_(prometheus::BuildGauge()
                      .Name("mailpush_outbox_dead")
                      .Help("Dead-lettered notifications kept in the outbox")
                      .Register(registry)
                      .Add({})),
      oldest_gauge_(prometheus::BuildGauge()
                        .Name("mailpush_outbox_oldest_seconds")
                        .Help("Age of the oldest queued notification of the region")
                        .Register(registry)
                        .Add({})),
      taken_over_(prometheus::BuildCounter()
                      .Name("mailpush_outbox_taken_over_total")
                      .Help("Outbox rows this instance took over from instances that went away")
                      .Register(registry)
                      .Add({})),
      result_write_failures_(prometheus::BuildCounter()
                                 .Name("mailpush_dispatch_result_write_failures_total")
                                 .Help("Rounds whose results could not be written (rows resent)")
                                 .Register(registry)
                                 .Add({})) {
  auto& family = results_family(registry);
  for (std::size_t i = 0; i < kRowOutcomeCount; ++i) {
    results_[i] = &family.Add({{"result", row_outcome_name(static_cast<RowOutcome>(i))}});
  }
}

Dispatcher::~Dispatcher() = default;

void Dispatcher::start() {
  asio::post(strand_, [this] {
    if (running_ || stopping_) return;
    running_ = true;
    asio::co_spawn(strand_, run(), asio::detached);
  });
}

void Dispatcher::wake() {
  if (wake_pending_.exchange(true)) return;
  asio::post(strand_, [this] {
    if (!gathering_) wake_timer_.cancel();
  });
}

void Dispatcher::stop(std::function<void()> done) {
  asio::post(strand_, [this, done = std::move(done)]() mutable {
    stopping_ = true;
    on_stopped_ = std::move(done);
    wake_timer_.cancel();
    if (!running_) {
      auto cb = std::move(on_stopped_);
      if (cb) cb();
    }
  });
}

void Dispatcher::count(RowOutcome r, std::size_t n) {
  results_[static_cast<std::size_t>(r)]->Increment(static_cast<double>(n));
}

asio::awaitable<void> Dispatcher::run() {
  log::info(
      "dispatch.started",
      {{"owner", options_.owner}, {"batch", options_.batch}, {"lease_s", options_.lease.count()}});
  while (!stopping_) {
    co_await housekeeping();
    if (stopping_) break;
    wake_pending_.store(false);
    const std::size_t rows = co_await round();
    if (stopping_) break;
    marks_rate_.add(rows);
    if (rows >= options_.batch) continue;
    if (!wake_pending_.load()) {
      wake_timer_.expires_after(options_.poll);
      co_await wake_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    // Only at a low rate: under load rounds are large and follow each other, and a wait would
    // only add to the badges' delay.
    if (options_.gather.count() > 0 && marks_rate_.per_second() < kGatherBelowPerSecond &&
        !stopping_ && wake_pending_.load()) {
      gathering_ = true;  // a wake now would only cut the wait short
      wake_timer_.expires_after(options_.gather);
      co_await wake_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
      gathering_ = false;
    }
  }
  co_await sender_.close();
  running_ = false;
  log::info("dispatch.stopped", {{"owner", options_.owner}});
  auto cb = std::move(on_stopped_);
  if (cb) cb();
}

asio::awaitable<void> Dispatcher::housekeeping() {
  const auto now = Clock::now();
  co_await resume_paused();
  if (now >= next_takeover_) {
    next_takeover_ =
        now + std::max<std::chrono::seconds>(std::chrono::seconds(1), options_.lease / 2);
    const auto lease = options_.lease;
    auto moved = co_await store_.take_over_outbox(options_.owner, lease, 10000);
    if (moved && *moved > 0) {
      taken_over_.Increment(static_cast<double>(*moved));
      log::warn("dispatch.took_over", {{"rows", *moved}, {"lease_s", lease.count()}});
      next_takeover_ = now;  // more may wait
    }
  }
  if (now >= next_stats_) {
    next_stats_ = now + options_.stats_interval;
    const auto keep = options_.dead_letter_retention;
    auto purged = co_await store_.purge_dead_letters(keep, 10000);
    if (purged && *purged > 0)
      log::info("dispatch.dead_letters_purged",
                {{"rows", *purged}, {"older_than_h", keep.count()}});
    auto stats = co_await store_.outbox_stats();
    if (stats) {
      queued_gauge_.Set(static_cast<double>(stats->queued));
      dead_gauge_.Set(static_cast<double>(stats->dead));
      oldest_gauge_.Set(static_cast<double>(stats->oldest_queued_seconds));
    }
  }
}

asio::awaitable<void> Dispatcher::resume_paused() {
  const auto now = Clock::now();
  for (auto it = paused_.begin(); it != paused_.end();) {
    const auto loaded = credentials_(it->second.customer_public_id);
    const bool renewed = loaded && loaded->fingerprint != it->second.fingerprint;
    const bool probe = now - it->second.since >= options_.pause_probe;
    if (!renewed && !probe) {
      ++it;
      continue;
    }
    log::info("dispatch.customer_resumed",
              {{"customer", it->second.customer_public_id},
               {"why", renewed ? "new credential" : "probe"},
               {"paused_for_s",
                std::chrono::duration_cast<std::chrono::seconds>(now - it->second.since).count()}});
    const std::int64_t id = it->first;
    it = paused_.erase(it);
    const std::optional<std::string> resumed;
    (void)co_await store_.set_customer_paused(id, resumed);
  }
  paused_gauge_.Set(static_cast<double>(paused_.size()));
}

asio::awaitable<void> Dispatcher::pause(std::int64_t customer_id, const std::string& public_id,
                                        const std::string& fingerprint,
                                        const CustomerSignal& signal) {
  if (paused_.count(customer_id)) co_return;
  paused_[customer_id] = {public_id, fingerprint, Clock::now(), signal.reason};
  paused_gauge_.Set(static_cast<double>(paused_.size()));
  // A customer just onboarded may reach the dispatcher before the credential refresh (seconds):
  // that wait is not worth an error line.
  const bool waiting = signal.reason == "NoActiveCredential";
  (waiting ? log::warn : log::error)(
      "dispatch.customer_paused",
      {{"customer", public_id},
       {"reason", signal.reason},
       {"explanation", signal.explanation},
       {"action",
        "the customer's notifications stay queued and its devices are kept; they resume "
        "when a new certificate is active (portal renewal) or at the next probe"},
       {"probe_s", options_.pause_probe.count()}});
  const std::optional<std::string> reason = signal.reason;
  (void)co_await store_.set_customer_paused(customer_id, reason);
}

asio::awaitable<std::size_t> Dispatcher::round() {
  std::vector<std::int64_t> paused_ids;
  for (const auto& [id, p] : paused_) paused_ids.push_back(id);
  auto rows = co_await store_.read_due_outbox(options_.owner, options_.batch, paused_ids);
  if (!rows) {
    if (!db_down_logged_) {
      log::error("dispatch.read_failed", {{"error", rows.error().message},
                                          {"action", "notifications stay queued; retrying"}});
      db_down_logged_ = true;
    }
    co_return 0;
  }
  if (db_down_logged_) {
    log::info("dispatch.read_recovered", {});
    db_down_logged_ = false;
  }
  if (rows->empty()) co_return 0;
  round_rows_.Observe(static_cast<double>(rows->size()));

  for (auto& r : *rows) r.expired = std::chrono::microseconds(r.age_us) >= options_.ttl;
  RoundPlan plan = plan_round(*rows);
  for (const auto& [result, reason] : plan.counted) {
    count(result);
    if (result == RowOutcome::dead) dead_reasons_.Add({{"reason", reason}}).Increment();
  }
  for (const auto& [result, reason] : plan.wakes_counted) count_wake(result, reason);
  store::DispatchWrites outcome = std::move(plan.outcome);

  // Every send of the round runs at once; the round ends when the last one has. The count and
  // its timer are shared by the coroutines, so that they stay valid whichever frame goes last
  // (a forced stop destroys suspended frames in no particular order).
  auto sends = std::make_shared<RoundSends>(strand_, plan.sends.size());
  for (auto& send : plan.sends) {
    asio::co_spawn(strand_, send_one(std::move(send), outcome, sends), asio::detached);
  }
  while (sends->pending > 0) {
    co_await sends->done.async_wait(asio::as_tuple(asio::use_awaitable));
  }

  // The results, in one transaction; until it is written the rows are still queued, and a round
  // that cannot write them retries for a while (then they are simply sent again).
  for (int attempt = 1;; ++attempt) {
    auto written = co_await store_.apply_dispatch_writes(outcome);
    if (written) break;
    if (attempt == 1) result_write_failures_.Increment();
    if (attempt >= 20 || stopping_) {
      log::error("dispatch.result_write_failed",
                 {{"error", written.error().message},
                  {"rows", rows->size()},
                  {"action", "the rows stay queued and are sent again (same badge, harmless)"}});
      break;
    }
    asio::steady_timer t(strand_);
    t.expires_after(std::chrono::milliseconds(100 * attempt));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return rows->size();
}

asio::awaitable<void> Dispatcher::send_one(PlannedSend send, store::DispatchWrites& outcome,
                                           std::shared_ptr<RoundSends> sends) {
  struct Done {  // ends the round's wait whatever path this coroutine leaves by
    std::shared_ptr<RoundSends> sends;
    ~Done() {
      if (--sends->pending == 0) sends->done.cancel();
    }
  } done{std::move(sends)};

  const store::OutboxRow& row = send.row;
  const auto loaded = credentials_(row.customer_public_id);
  if (!loaded) {
    count(RowOutcome::paused);
    // Named, not a temporary: GCC 12 may destroy temporaries of a co_await expression twice.
    const CustomerSignal none{true, "NoActiveCredential",
                              "the customer has no usable certificate (expired, failed to open, "
                              "or none uploaded): upload one through the portal"};
    co_await pause(row.customer_id, row.customer_public_id, "", none);
    co_return;
  }
  const bool production = row.environment == "production";
  const auto& credential = production ? loaded->production : loaded->development;
  if (!credential) {
    outcome.dead.push_back({mark(row), "NoCredentialForEnvironment"});
    count(RowOutcome::dead);
    dead_reasons_.Add({{"reason", "NoCredentialForEnvironment"}}).Increment();
    log::warn("dispatch.no_credential_for_environment",
              {{"customer", row.customer_public_id},
               {"environment", row.environment},
               {"device", apns::display_token(row.token_hex)},
               {"action",
                "the device registered for an environment the customer's certificate "
                "does not cover: check the app build or upload a matching certificate"}});
    co_return;
  }
  apns::BadgeNotification n;
  n.device_token_hex = row.token_hex;
  n.topic = loaded->topic;
  n.badge = static_cast<int>(std::clamp<std::int64_t>(row.badge, 0, 1000000));
  const auto age = std::chrono::microseconds(row.age_us);
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(options_.ttl - age);
  n.expires = std::chrono::system_clock::now() + std::max(std::chrono::seconds(1), left);
  n.collapse_id = std::string(kBadgeCollapseId);
  const auto started = Clock::now();
  const apns::SendResult result = co_await sender_.send(row.customer_public_id, *credential, n);
  CustomerSignal signal;
  const RowOutcome r = apply_send_result(send, result, options_.retry, rng_, outcome, signal);
  count(r);
  if (r == RowOutcome::delivered) {
    const std::chrono::duration<double> took = Clock::now() - started;
    delay_.Observe(static_cast<double>(row.age_us) / 1e6 + took.count());
  } else if (r == RowOutcome::dead) {
    dead_reasons_.Add({{"reason", outcome.dead.back().reason.substr(0, 40)}}).Increment();
  }
  if (r != RowOutcome::delivered && r != RowOutcome::paused) {
    log::info("dispatch.not_delivered", {{"customer", row.customer_public_id},
                                         {"device", apns::display_token(row.token_hex)},
                                         {"result", row_outcome_name(r)},
                                         {"reason", result.reason},
                                         {"status", result.http_status}});
  }
  if (!send.wake_marks.empty()) {
    if (r == RowOutcome::delivered) {
      co_await send_wake(send, *credential, loaded->topic, outcome);
    } else if (r == RowOutcome::unregistered || r == RowOutcome::bad_device_token ||
               r == RowOutcome::dead) {
      // The device cannot be woken: its wakes end with it.
      for (const auto& m : send.wake_marks) outcome.wakes.push_back({m, false});
      count_wake(WakeOutcome::dropped, send.wake_reason);
    }
    // A badge to retry, or a paused customer: the mark stays pending and its wake with it.
  }
  if (signal.pause)
    co_await pause(row.customer_id, row.customer_public_id, credential->fingerprint, signal);
}

asio::awaitable<void> Dispatcher::send_wake(const PlannedSend& send,
                                            const apns::ApnsCredential& credential,
                                            const std::string& topic,
                                            store::DispatchWrites& outcome) {
  const store::OutboxRow& row = send.row;
  apns::BadgeNotification n;
  n.device_token_hex = row.token_hex;
  n.topic = topic;
  n.background = true;
  n.priority = 5;
  // Worth little an hour later: the app is woken again at the next event, expiry or silence.
  n.expires = std::chrono::system_clock::now() + std::chrono::hours(1);
  const apns::SendResult result = co_await sender_.send(row.customer_public_id, credential, n);
  using apns::SendOutcome;
  switch (result.outcome) {
    case SendOutcome::delivered:
      for (const auto& m : send.wake_marks) outcome.wakes.push_back({m, true});
      count_wake(WakeOutcome::sent, send.wake_reason);
      co_return;
    case SendOutcome::unregistered:
    case SendOutcome::bad_device_token:
    case SendOutcome::topic_mismatch:
    case SendOutcome::permanent_payload:
      for (const auto& m : send.wake_marks) outcome.wakes.push_back({m, false});
      break;
    case SendOutcome::credential_failed:
    case SendOutcome::retry_exhausted:
    case SendOutcome::retry_later:
      // Retryable (the badge went through a moment ago): the wake stays pending; the upkeep marks
      // a registration whose wake waits without a mark again (store::mark_due_wakes).
      break;
  }
  count_wake(WakeOutcome::failed, send.wake_reason);
  log::info("dispatch.wake_not_sent", {{"customer", row.customer_public_id},
                                       {"device", apns::display_token(row.token_hex)},
                                       {"wake", send.wake_reason},
                                       {"reason", result.reason},
                                       {"status", result.http_status}});
}

void Dispatcher::count_wake(WakeOutcome w, const std::string& reason) {
  wakes_.Add({{"reason", reason}, {"result", wake_outcome_name(w)}}).Increment();
}

}  // namespace mp::dispatch
