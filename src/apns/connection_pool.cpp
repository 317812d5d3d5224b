// ApnsConnectionPool: acquiring connections, the send loop with its retries, the breaker's
// bookkeeping, close() and status().
#include "apns/connection_pool.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <variant>

#include "apns/device_token.hpp"
#include "common/log.hpp"

namespace mp::apns {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

long long ms_until(Clock::time_point t, Clock::time_point now) {
  if (t == Clock::time_point::max()) return -1;
  if (t <= now) return 0;
  return std::chrono::duration_cast<milliseconds>(t - now).count();
}

std::string header_value(const h2::Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

void log_spawn_failure(const char* where, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log::error("apns.internal_error", {{"where", where}, {"error", ex.what()}});
  }
}

}  // namespace

std::shared_ptr<ApnsConnectionPool> ApnsConnectionPool::create(const Executor& executor,
                                                               ApnsCredential credential,
                                                               PoolOptions options,
                                                               ApnsMetrics* metrics) {
  return std::shared_ptr<ApnsConnectionPool>(
      new ApnsConnectionPool(executor, std::move(credential), std::move(options), metrics));
}

ApnsConnectionPool::ApnsConnectionPool(const Executor& executor, ApnsCredential credential,
                                       PoolOptions options, ApnsMetrics* metrics)
    : strand_(asio::make_strand(executor)),
      executor_(executor),
      credential_(std::move(credential)),
      options_(std::move(options)),
      label_(credential_.customer_id + "/" + environment_name(credential_.environment)),
      breaker_(options_.breaker),
      rng_(options_.seed != 0 ? options_.seed : std::random_device{}()) {
  if (options_.connection.host.empty()) {
    options_.connection.host = std::string(apns_host(credential_.environment));
  }
  // What H2Connection would default to; set on every request so it needs no copy there.
  authority_ = !options_.connection.authority.empty() ? options_.connection.authority
               : options_.connection.port == 443
                   ? options_.connection.host
                   : options_.connection.host + ":" + std::to_string(options_.connection.port);
  options_.max_connections = std::max<std::size_t>(1, options_.max_connections);
  options_.max_attempts = std::max(1, options_.max_attempts);
  if (metrics != nullptr) {
    metrics_ =
        metrics->for_pool(credential_.customer_id, environment_name(credential_.environment));
    metrics_->breaker_state(0);
  }
}

ApnsConnectionPool::~ApnsConnectionPool() {
  // Connections hold themselves alive through their loops; without close() they go now.
  for (const auto& slot : slots_) slot->connection->abort("pool destroyed");
}

// ---------------------------------------------------------------------------------------------
// send

asio::awaitable<SendResult> ApnsConnectionPool::send(const BadgeNotification& notification) {
  auto self = shared_from_this();
  if (strand_.running_in_this_thread()) {
    // The caller already runs on the pool's strand (see executor()): no hop needed.
    SendResult direct = co_await do_send(self, notification);
    co_return direct;
  }
  auto work = do_send(self, notification);
  SendResult result = co_await asio::co_spawn(strand_, std::move(work), asio::use_awaitable);
  co_return result;
}

asio::awaitable<SendResult> ApnsConnectionPool::do_send(
    [[maybe_unused]] std::shared_ptr<ApnsConnectionPool> self,
    const BadgeNotification& notification) {
  SendResult result;
  ++sends_in_flight_;
  if (metrics_) metrics_->in_flight(1);

  auto built = build_request(notification);
  if (!built) {
    result.outcome = SendOutcome::permanent_payload;
    result.reason = "InvalidRequest";
    result.explanation = built.error().message;
    co_return finish(std::move(result), notification);
  }
  h2::Request request;
  request.authority = authority_;  // set here, so the connection does not copy the request
  request.path = std::move(built->path);
  request.headers = std::move(built->headers);
  request.body = std::move(built->body);

  if (closing_) {
    result.reason = "PoolClosed";
    result.explanation = "the pool is closing; not sent";
    co_return finish(std::move(result), notification);
  }
  const SendAdmission admission = breaker_.admit_send(Clock::now());
  set_breaker_gauge();
  if (!admission.admitted) {
    // Fail fast: the credential was refused and its interval has not passed (or a probe runs).
    result.outcome = SendOutcome::credential_failed;
    result.reason = breaker_.reason();
    result.explanation = "credential failed, not sent (breaker " +
                         std::string(breaker_state_name(breaker_.state())) + ", next try in " +
                         std::to_string(ms_until(breaker_.open_until(), Clock::now())) + " ms)";
    co_return finish(std::move(result), notification);
  }
  const bool probe = admission.probe;
  if (probe) log::info("apns.breaker_probe", {{"pool", label_}});

  co_await send_until_final(request, notification, probe, result);
  if (probe && breaker_.state() == BreakerState::half_open) {
    // The probe ended without an answer from APNs: nothing learnt, keep the credential paused.
    breaker_.probe_inconclusive(Clock::now());
    set_breaker_gauge();
  }
  co_return finish(std::move(result), notification);
}

asio::awaitable<void> ApnsConnectionPool::send_until_final(const h2::Request& request,
                                                           const BadgeNotification& notification,
                                                           bool probe, SendResult& result) {
  const auto deadline = Clock::now() + options_.send_deadline;
  int retryable_answers = 0;
  for (;;) {
    // Fast path (the usual case under load): an open connection with free streams, no waiting.
    SlotPtr slot = ready_connection(probe);
    if (!slot) {
      auto acquired = co_await acquire(deadline, probe);
      if (auto* none = std::get_if<NoConnection>(&acquired)) {
        result.outcome = none->outcome;
        result.reason = none->reason;
        result.explanation = none->explanation;
        co_return;
      }
      slot = std::get<SlotPtr>(std::move(acquired));
    }
    ++slot->assigned;
    ++result.requests;
    auto response = co_await slot->connection->request(request);
    --slot->assigned;

    const AfterAttempt next =
        response ? judge_answer(*response, result) : judge_failure(response.error(), result);
    if (next == AfterAttempt::done) co_return;
    if (next == AfterAttempt::resend_now) continue;
    const char* backoff_kind =
        next == AfterAttempt::backoff_lost_answer ? "lost_answer" : "backoff";
    const auto delay =
        backoff_before_next(++retryable_answers, deadline, backoff_kind, notification, result);
    if (!delay) co_return;
    co_await sleep(*delay);
  }
}

ApnsConnectionPool::AfterAttempt ApnsConnectionPool::judge_failure(const Error& error,
                                                                   SendResult& result) {
  // Which failures are safe to resend: h2::RetrySafety (docs/apns-client.md, "Retries").
  const h2::RetrySafety safety = h2::retry_safety(error);
  if (safety == h2::RetrySafety::safe) {
    // Never processed by APNs: at once, but not forever.
    if (result.unprocessed_resends >= options_.max_unprocessed_resends) {
      result.reason = "NotProcessed";
      result.explanation = "gave up after " + std::to_string(result.unprocessed_resends) +
                           " resends that APNs did not process: " + error.message;
      return AfterAttempt::done;
    }
    ++result.unprocessed_resends;
    if (metrics_) metrics_->retry("not_processed");
    return AfterAttempt::resend_now;
  }
  if (safety != h2::RetrySafety::unknown && error.code != Errc::busy) {
    result.outcome = SendOutcome::permanent_payload;
    result.reason = "RequestRefused";
    result.explanation = error.message;
    return AfterAttempt::done;
  }
  result.reason = error.code == Errc::busy ? "ConnectionBusy" : "AnswerLost";
  result.explanation = error.message;
  // An answer lost may have been delivered: a resend may duplicate.
  return safety == h2::RetrySafety::unknown ? AfterAttempt::backoff_lost_answer
                                            : AfterAttempt::backoff;
}

ApnsConnectionPool::AfterAttempt ApnsConnectionPool::judge_answer(h2::Response& response,
                                                                  SendResult& result) {
  ResponseAction action =
      classify_response(response.status, response.body, header_value(response.headers, "apns-id"));
  result.http_status = action.http_status;
  result.apns_id = std::move(action.apns_id);
  result.reason = std::move(action.reason);
  result.explanation = std::move(action.explanation);
  // Any answer but a credential failure proves the credential works.
  if (action.outcome != SendOutcome::credential_failed) breaker_answered();
  result.outcome = action.outcome;
  switch (action.outcome) {
    case SendOutcome::unregistered:
      result.unregistered_at = action.unregistered_at;
      break;
    case SendOutcome::credential_failed:
      if (result.reason.empty()) result.reason = "Forbidden";
      breaker_opened(result.reason, result.explanation);
      break;
    case SendOutcome::retry_later:
      if (result.reason.empty()) result.reason = "HTTP " + std::to_string(result.http_status);
      return AfterAttempt::backoff;
    case SendOutcome::delivered:
    case SendOutcome::bad_device_token:
    case SendOutcome::topic_mismatch:
    case SendOutcome::permanent_payload:
    case SendOutcome::retry_exhausted:  // not an answer's outcome
      break;
  }
  return AfterAttempt::done;
}

std::optional<milliseconds> ApnsConnectionPool::backoff_before_next(
    int retryable_answers, Clock::time_point deadline, const char* backoff_kind,
    const BadgeNotification& notification, SendResult& result) {
  // Retry later: 429/5xx/Shutdown, an answer lost, or a full connection queue.
  result.outcome = SendOutcome::retry_exhausted;
  if (retryable_answers >= options_.max_attempts) {
    result.explanation = "gave up after " + std::to_string(retryable_answers) +
                         " attempts; last: " + result.explanation;
    return std::nullopt;
  }
  const milliseconds delay =
      retry_backoff(retryable_answers, rng_, options_.retry_base, options_.retry_cap);
  if (Clock::now() + delay >= deadline) {
    result.explanation =
        "the next attempt would pass the send deadline; last: " + result.explanation;
    return std::nullopt;
  }
  ++result.backoff_attempts;
  result.backoff_total += delay;
  if (std::string_view(backoff_kind) == "lost_answer") ++result.lost_answer_resends;
  if (metrics_) metrics_->retry(backoff_kind);
  if (log::enabled(log::Level::debug)) {
    log::debug("apns.retry", {{"pool", label_},
                              {"token", display_token(notification.device_token_hex)},
                              {"attempt", retryable_answers},
                              {"delay_ms", delay.count()},
                              {"kind", backoff_kind},
                              {"reason", result.reason}});
  }
  return delay;
}

SendResult ApnsConnectionPool::finish(SendResult result, const BadgeNotification& notification) {
  --sends_in_flight_;
  if (metrics_) {
    metrics_->in_flight(-1);
    if (result.outcome == SendOutcome::delivered) {
      metrics_->sent();
    } else {
      metrics_->failed(send_outcome_name(result.outcome));
    }
  }
  if (result.outcome != SendOutcome::delivered) {
    // Fail-fast credential failures are not logged one by one: the breaker said it once.
    const bool quiet = result.outcome == SendOutcome::credential_failed && result.requests == 0;
    const bool serious = result.outcome == SendOutcome::retry_exhausted ||
                         result.outcome == SendOutcome::permanent_payload ||
                         result.outcome == SendOutcome::credential_failed;
    nlohmann::json fields = {{"pool", label_},
                             {"token", display_token(notification.device_token_hex)},
                             {"outcome", send_outcome_name(result.outcome)},
                             {"reason", result.reason},
                             {"explanation", result.explanation},
                             {"status", result.http_status},
                             {"apns_id", result.apns_id},
                             {"requests", result.requests}};
    if (quiet) {
      log::debug("apns.send_failed", std::move(fields));
    } else if (serious) {
      log::warn("apns.send_failed", std::move(fields));
    } else {
      log::info("apns.send_failed", std::move(fields));
    }
  }
  if (closing_) wake_waiters();
  return result;
}

// ---------------------------------------------------------------------------------------------
// connections

asio::awaitable<std::variant<ApnsConnectionPool::SlotPtr, ApnsConnectionPool::NoConnection>>
ApnsConnectionPool::acquire(Clock::time_point deadline, bool probe) {
  using Outcome = std::variant<SlotPtr, NoConnection>;
  for (;;) {
    prune_closed();
    const auto now = Clock::now();
    if (closing_) {
      co_return Outcome{NoConnection{SendOutcome::retry_exhausted, "PoolClosed",
                                     "the pool closed before the notification was delivered"}};
    }
    if (expired_locally()) {
      breaker_opened("CertificateExpired", "the customer's push certificate has expired");
    }
    if (!breaker_.still_admitted(probe) || breaker_.state() == BreakerState::open) {
      co_return Outcome{NoConnection{SendOutcome::credential_failed, breaker_.reason(),
                                     "credential failed: " + breaker_.reason()}};
    }
    if (SlotPtr best = least_busy()) {
      // Every stream of the best connection taken: open another (if allowed), use this one now.
      if (best->connection->counters().queued > 0 && may_open_more() && breaker_.may_connect(now)) {
        start_connect();
      }
      co_return Outcome{std::move(best)};
    }
    if (!connecting_ && may_open_more() && breaker_.may_connect(now)) start_connect();
    if (now >= deadline) {
      co_return Outcome{
          NoConnection{SendOutcome::retry_exhausted, "Unreachable",
                       "no connection to APNs within the send deadline" +
                           (last_connect_error_.empty() ? std::string()
                                                        : "; last error: " + last_connect_error_)}};
    }
    auto until = deadline;
    if (!connecting_) until = std::min(until, breaker_.next_connect_at());
    (void)co_await wait_for_change(until);
  }
}

ApnsConnectionPool::SlotPtr ApnsConnectionPool::ready_connection(bool probe) {
  prune_closed();  // one or two slots: cheap, and keeps the gauge and the memory right
  if (closing_ || breaker_.state() != BreakerState::closed || probe || expired_locally()) {
    return nullptr;
  }
  SlotPtr best = least_busy();
  // Saturated and allowed to grow: let acquire() start another connection.
  if (best && best->connection->counters().queued > 0 && may_open_more()) return nullptr;
  return best;
}

ApnsConnectionPool::SlotPtr ApnsConnectionPool::least_busy() const {
  SlotPtr best;
  for (const auto& slot : slots_) {
    if (!slot->connection->accepting()) continue;
    if (!best || slot->assigned < best->assigned) best = slot;
  }
  return best;
}

bool ApnsConnectionPool::may_open_more() const {
  if (connecting_ || closing_) return false;
  std::size_t usable = 0;
  for (const auto& slot : slots_) {
    if (slot->connection->accepting()) ++usable;
  }
  return usable < options_.max_connections;
}

void ApnsConnectionPool::prune_closed() {
  std::erase_if(slots_, [this](const SlotPtr& slot) {
    if (slot->connection->state() != h2::ConnectionState::closed) return false;
    if (slot->counted_open && metrics_) metrics_->connection_closed();
    log::info("apns.connection_closed",
              {{"pool", label_},
               {"connection", slot->id},
               {"streams", slot->connection->counters().streams_opened.load()}});
    return true;
  });
}

bool ApnsConnectionPool::expired_locally() const {
  return credential_.not_after && std::chrono::system_clock::now() >= *credential_.not_after;
}

void ApnsConnectionPool::start_connect() {
  if (connecting_) return;
  connecting_ = true;
  auto work = open_connection(shared_from_this());
  asio::co_spawn(strand_, std::move(work),
                 [](std::exception_ptr e) { log_spawn_failure("apns.open_connection", e); });
}

asio::awaitable<void> ApnsConnectionPool::open_connection(
    std::shared_ptr<ApnsConnectionPool> self) {
  (void)co_await do_connect(self);
}

// One connection attempt; the caller set connecting_.
asio::awaitable<Status> ApnsConnectionPool::do_connect(
    [[maybe_unused]] std::shared_ptr<ApnsConnectionPool> self) {
  ++connection_attempts_;
  if (metrics_) metrics_->connection_attempt();
  breaker_.connect_started(Clock::now());
  auto connection = h2::H2Connection::create(executor_, credential_.tls, options_.connection);
  const std::uint64_t id = next_slot_id_++;
  const Status status = co_await connection->connect();
  connecting_ = false;
  const auto now = Clock::now();
  if (status) {
    auto slot = std::make_shared<Slot>();
    slot->id = id;
    slot->connection = std::move(connection);
    slot->counted_open = true;
    slots_.push_back(slot);
    ++connections_opened_;
    if (metrics_) metrics_->connection_opened();
    breaker_.connect_succeeded(now);
    last_connect_error_.clear();
    log::info("apns.connection_opened",
              {{"pool", label_}, {"connection", id}, {"peer", slot->connection->peer()}});
  } else if (status.error().code == Errc::conflict) {
    // TLS or HTTP/2 refused us: our certificate (alert, revoked, expired) or a set-up that
    // retrying cannot fix (server not trusted, no h2). Either way: the breaker, no storm.
    if (metrics_) metrics_->connection_failure("credential");
    last_connect_error_ = status.error().message;
    breaker_opened("TlsHandshakeRefused", status.error().message);
  } else {
    if (metrics_) metrics_->connection_failure("unreachable");
    last_connect_error_ = status.error().message;
    breaker_.connect_unreachable(now, rng_);
    set_breaker_gauge();
    log::warn("apns.connect_failed", {{"pool", label_},
                                      {"reason", status.error().message},
                                      {"failures", breaker_.consecutive_unreachable()},
                                      {"next_attempt_ms", ms_until(breaker_.reconnect_at(), now)}});
  }
  wake_waiters();
  co_return status;
}

asio::awaitable<Status> ApnsConnectionPool::connect() {
  auto self = shared_from_this();
  auto work = do_connect_now(self);
  Status status = co_await asio::co_spawn(strand_, std::move(work), asio::use_awaitable);
  co_return status;
}

asio::awaitable<Status> ApnsConnectionPool::do_connect_now(
    std::shared_ptr<ApnsConnectionPool> self) {
  // Two connect timeouts: one for an attempt already running, one for ours.
  const auto until = Clock::now() + 2 * options_.connection.connect_timeout;
  for (;;) {
    prune_closed();
    if (closing_) co_return Error{Errc::unavailable, "the pool is closing"};
    if (least_busy()) co_return Status{};
    if (breaker_.state() != BreakerState::closed) {
      co_return Error{Errc::unavailable, "credential failed: " + breaker_.reason()};
    }
    if (!connecting_) {
      if (!breaker_.may_connect(Clock::now())) {
        co_return Error{Errc::unavailable, "reconnect backoff; last error: " + last_connect_error_};
      }
      connecting_ = true;
      co_return co_await do_connect(self);
    }
    const bool in_time = co_await wait_for_change(until);
    if (!in_time) co_return Error{Errc::unavailable, "timed out waiting for the connection"};
  }
}

// ---------------------------------------------------------------------------------------------
// breaker bookkeeping

void ApnsConnectionPool::breaker_opened(const std::string& reason, const std::string& explanation) {
  const BreakerState before = breaker_.state();
  breaker_.credential_failed(Clock::now(), reason);
  set_breaker_gauge();
  // One error when the credential fails; then one warning per failed probe (once an interval).
  if (before == BreakerState::closed) {
    log::error("apns.breaker_opened", {{"pool", label_},
                                       {"reason", reason},
                                       {"explanation", explanation},
                                       {"fingerprint", credential_.fingerprint},
                                       {"retry_in_ms", breaker_.config().open_interval.count()}});
  } else if (before == BreakerState::half_open) {
    log::warn("apns.breaker_probe_failed",
              {{"pool", label_},
               {"reason", reason},
               {"explanation", explanation},
               {"retry_in_ms", breaker_.config().open_interval.count()}});
  }
  wake_waiters();
}

void ApnsConnectionPool::breaker_answered() {
  if (breaker_.state() == BreakerState::closed) return;
  breaker_.answered(Clock::now());
  set_breaker_gauge();
  log::info("apns.breaker_closed", {{"pool", label_}});
}

void ApnsConnectionPool::set_breaker_gauge() {
  if (!metrics_) return;
  switch (breaker_.state()) {
    case BreakerState::closed:
      metrics_->breaker_state(0);
      break;
    case BreakerState::open:
      metrics_->breaker_state(1);
      break;
    case BreakerState::half_open:
      metrics_->breaker_state(2);
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// waiting

asio::awaitable<bool> ApnsConnectionPool::wait_for_change(Clock::time_point until) {
  asio::steady_timer timer(strand_);
  timer.expires_at(until);
  waiters_.push_back(&timer);
  (void)co_await timer.async_wait(nothrow);
  std::erase(waiters_, &timer);
  co_return Clock::now() < until;
}

asio::awaitable<void> ApnsConnectionPool::sleep(milliseconds delay) {
  asio::steady_timer timer(strand_);
  timer.expires_after(delay);
  sleepers_.push_back(&timer);
  (void)co_await timer.async_wait(nothrow);
  std::erase(sleepers_, &timer);
}

void ApnsConnectionPool::wake_waiters() {
  for (auto* timer : waiters_) timer->cancel();
}

// ---------------------------------------------------------------------------------------------
// close and status

asio::awaitable<void> ApnsConnectionPool::close() {
  auto self = shared_from_this();
  auto work = do_close(self);
  co_await asio::co_spawn(strand_, std::move(work), asio::use_awaitable);
}

asio::awaitable<void> ApnsConnectionPool::do_close(
    [[maybe_unused]] std::shared_ptr<ApnsConnectionPool> self) {
  if (closing_) co_return;
  closing_ = true;
  log::info("apns.pool_closing", {{"pool", label_}, {"sends_in_flight", sends_in_flight_}});
  wake_waiters();
  for (auto* timer : sleepers_) timer->cancel();
  // Requests on the wire finish (their answers still count); the rest end as PoolClosed.
  const auto until = Clock::now() + options_.close_grace;
  // (A plain loop: GCC 12 evaluated a co_await inside `a && co_await b` even when a was false.)
  while (sends_in_flight_ > 0 || connecting_) {
    const bool in_time = co_await wait_for_change(until);
    if (!in_time) break;
  }
  std::vector<SlotPtr> slots = slots_;
  for (const auto& slot : slots) {
    co_await slot->connection->close(options_.close_grace);  // GOAWAY, then the socket
  }
  prune_closed();
  closed_ = true;
  log::info("apns.pool_closed", {{"pool", label_}, {"sends_in_flight", sends_in_flight_}});
}

asio::awaitable<PoolStatus> ApnsConnectionPool::status() {
  auto self = shared_from_this();
  auto work = do_status(self);
  PoolStatus s = co_await asio::co_spawn(strand_, std::move(work), asio::use_awaitable);
  co_return s;
}

asio::awaitable<PoolStatus> ApnsConnectionPool::do_status(
    [[maybe_unused]] std::shared_ptr<ApnsConnectionPool> self) {
  PoolStatus s;
  s.breaker = breaker_.state();
  s.breaker_reason = breaker_.reason();
  s.consecutive_unreachable = breaker_.consecutive_unreachable();
  s.connecting = connecting_;
  s.closing = closing_;
  s.sends_in_flight = sends_in_flight_;
  s.connection_attempts = connection_attempts_;
  s.connections_opened = connections_opened_;
  for (const auto& slot : slots_) {
    const auto& c = slot->connection->counters();
    PoolConnectionStatus cs;
    cs.id = slot->id;
    cs.state = slot->connection->state();
    cs.assigned = slot->assigned;
    cs.streams_opened = c.streams_opened;
    cs.queued = c.queued;
    cs.goaway = c.goaway;
    cs.pings_sent = c.pings_sent;
    cs.pings_acked = c.pings_acked;
    s.connections.push_back(cs);
  }
  co_return s;
}

}  // namespace mp::apns
