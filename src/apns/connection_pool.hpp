// ApnsConnectionPool: the HTTP/2 connections of one customer credential to one APNs host, and
// the send loop that turns a BadgeNotification into a final outcome.
//
// Everything runs on the pool's strand; no locks. Connections are H2Connection (src/h2), opened
// lazily on the first send, kept open (Apple blocks providers that reconnect often) and
// replaced when they close. A second connection, up to max_connections, opens only when every
// open one has requests waiting for a stream (SETTINGS_MAX_CONCURRENT_STREAMS reached). At most
// one connection is being opened at a time.
//
// send(): build the request -> admitted by the CredentialBreaker? -> take the least busy open
// connection (or wait for one) -> request -> classify (apns/response.hpp) -> one of:
//   delivered, unregistered (+timestamp), bad_device_token, topic_mismatch,
//   credential_failed (breaker opens), permanent_payload: final, returned.
//   a failure or answer that may be retried: resent at once (never processed) or after
//     retry_backoff(attempt), within max_attempts and the send deadline -> else retry_exhausted.
//     Which is which: docs/apns-client.md, "Retries" (h2::retry_safety decides the failures).
// Resending after a lost answer may deliver a badge twice. That is harmless by design: the
// payload is an absolute badge count, not an increment, so APNs showing the same N twice
// changes nothing, while not resending could leave a stale badge. SendResult counts these
// resends so a caller (and the tests) can tell duplicates from losses.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "apns/credential.hpp"
#include "apns/credential_breaker.hpp"
#include "apns/pool_metrics.hpp"
#include "apns/request.hpp"
#include "apns/response.hpp"
#include "common/result.hpp"
#include "h2/h2_connection.hpp"

namespace mp::apns {

struct PoolOptions {
  // Host and port (or fixed endpoints), server name, timeouts, PING keep-alive of every
  // connection. An empty host means apns_host(credential.environment).
  h2::ConnectionOptions connection;
  std::size_t max_connections = 1;
  // Resends that waited a backoff (429/5xx/Shutdown, answer lost): the send gives up after this
  // many attempts of that kind.
  int max_attempts = 6;
  // Resends of requests APNs never processed; at once, so bounded separately (a server that
  // refuses everything must not make a busy loop).
  int max_unprocessed_resends = 20;
  // A send never takes longer than this (waiting for a connection included).
  std::chrono::milliseconds send_deadline{120'000};
  std::chrono::milliseconds retry_base = kRetryBackoffBase;  // retry_backoff's base and cap
  std::chrono::milliseconds retry_cap = kRetryBackoffCap;
  BreakerConfig breaker;
  std::chrono::milliseconds close_grace{5'000};  // close(): for sends, then for each GOAWAY
  std::uint64_t seed = 0;                        // jitter seed; 0 draws one
};

struct SendResult {
  SendOutcome outcome = SendOutcome::retry_exhausted;
  std::string reason;       // Apple's reason, or ours ("BreakerOpen", "Unreachable", ...)
  std::string explanation;  // for logs and operators; never holds a token or key material
  int http_status = 0;      // of the last answer; 0 when none came
  std::string apns_id;
  std::optional<std::chrono::system_clock::time_point> unregistered_at;
  int requests = 0;             // requests handed to a connection for this send
  int unprocessed_resends = 0;  // resent because APNs never processed them
  int lost_answer_resends = 0;  // resent although APNs may have processed them (duplicates)
  int backoff_attempts = 0;     // waits of retry_backoff
  std::chrono::milliseconds backoff_total{0};
};

// What the pool looks like now, for tests, `mailpushctl` and debugging.
struct PoolConnectionStatus {
  std::uint64_t id = 0;
  h2::ConnectionState state = h2::ConnectionState::created;
  std::size_t assigned = 0;  // this pool's requests on it now
  std::uint64_t streams_opened = 0, queued = 0, goaway = 0, pings_sent = 0, pings_acked = 0;
};
struct PoolStatus {
  BreakerState breaker = BreakerState::closed;
  std::string breaker_reason;
  int consecutive_unreachable = 0;
  bool connecting = false;
  bool closing = false;
  std::size_t sends_in_flight = 0;
  std::uint64_t connection_attempts = 0;  // since creation
  std::uint64_t connections_opened = 0;
  std::vector<PoolConnectionStatus> connections;
};

class ApnsConnectionPool : public std::enable_shared_from_this<ApnsConnectionPool> {
 public:
  using Executor = boost::asio::any_io_executor;

  // `metrics` may be null (no metrics) and must outlive the pool.
  static std::shared_ptr<ApnsConnectionPool> create(const Executor& executor,
                                                    ApnsCredential credential, PoolOptions options,
                                                    ApnsMetrics* metrics = nullptr);
  ~ApnsConnectionPool();
  ApnsConnectionPool(const ApnsConnectionPool&) = delete;
  ApnsConnectionPool& operator=(const ApnsConnectionPool&) = delete;

  // Sends one badge and retries internally (see the top of this file); always completes with a
  // final SendResult. `notification` must outlive the call.
  boost::asio::awaitable<SendResult> send(const BadgeNotification& notification);
  // Opens one connection now if none is open (warm-up, onboarding's test connection). Subject
  // to the breaker and the reconnect backoff like any other attempt.
  boost::asio::awaitable<Status> connect();
  // Graceful: new sends end at once (retry_exhausted "PoolClosed"), sends waiting for a backoff
  // or a connection end, requests on the wire get close_grace to finish, then each connection
  // sends GOAWAY and closes (again within close_grace).
  boost::asio::awaitable<void> close();

  boost::asio::awaitable<PoolStatus> status();
  const ApnsCredential& credential() const noexcept { return credential_; }
  // The pool's strand. Coroutines that call send() from it skip one executor hop per send (a
  // dispatcher draining one customer's queue can run there); from anywhere else send() hops.
  boost::asio::strand<Executor> executor() const { return strand_; }

 private:
  // One connection as the pool sees it. The H2Connection knows its own state (read live);
  // the pool adds what it assigned to it and whether the open-connections gauge counts it.
  struct Slot {
    std::uint64_t id = 0;
    std::shared_ptr<h2::H2Connection> connection;
    std::size_t assigned = 0;  // requests of this pool on it now
    bool counted_open = false;
  };
  using SlotPtr = std::shared_ptr<Slot>;
  // Why acquire() returned no connection.
  struct NoConnection {
    SendOutcome outcome;
    std::string reason, explanation;
  };

  ApnsConnectionPool(const Executor& executor, ApnsCredential credential, PoolOptions options,
                     ApnsMetrics* metrics);

  // What a send does after one attempt.
  enum class AfterAttempt { done, resend_now, backoff, backoff_lost_answer };

  boost::asio::awaitable<SendResult> do_send(std::shared_ptr<ApnsConnectionPool> self,
                                             const BadgeNotification& notification);
  // Attempts `request` until an attempt is final, the retries run out or no connection comes.
  boost::asio::awaitable<void> send_until_final(const h2::Request& request,
                                                const BadgeNotification& notification, bool probe,
                                                SendResult& result);
  AfterAttempt judge_failure(const Error& error, SendResult& result);
  AfterAttempt judge_answer(h2::Response& response, SendResult& result);
  // The wait before the next attempt, counted in `result`; none when the attempts or the
  // deadline are used up (`result` then says so).
  std::optional<std::chrono::milliseconds> backoff_before_next(
      int retryable_answers, std::chrono::steady_clock::time_point deadline,
      const char* backoff_kind, const BadgeNotification& notification, SendResult& result);
  boost::asio::awaitable<std::variant<SlotPtr, NoConnection>> acquire(
      std::chrono::steady_clock::time_point deadline, bool probe);
  boost::asio::awaitable<void> open_connection(std::shared_ptr<ApnsConnectionPool> self);
  boost::asio::awaitable<Status> do_connect(std::shared_ptr<ApnsConnectionPool> self);
  boost::asio::awaitable<Status> do_connect_now(std::shared_ptr<ApnsConnectionPool> self);
  boost::asio::awaitable<void> do_close(std::shared_ptr<ApnsConnectionPool> self);
  boost::asio::awaitable<PoolStatus> do_status(std::shared_ptr<ApnsConnectionPool> self);
  // Waits until something changes (a connection opened or failed, a request ended, close())
  // or `until`. Returns false when `until` passed.
  boost::asio::awaitable<bool> wait_for_change(std::chrono::steady_clock::time_point until);
  // Sleeps for a backoff; only close() cuts it short.
  boost::asio::awaitable<void> sleep(std::chrono::milliseconds delay);

  void start_connect();
  bool may_open_more() const;
  SlotPtr least_busy() const;
  // An open connection a send may use at once, or null when acquire() must decide (none open,
  // saturated and allowed to grow, breaker not closed, probe, closing, expired).
  SlotPtr ready_connection(bool probe);
  void prune_closed();
  void wake_waiters();
  void set_breaker_gauge();
  void breaker_opened(const std::string& reason, const std::string& explanation);
  void breaker_answered();
  SendResult finish(SendResult result, const BadgeNotification& notification);
  bool expired_locally() const;

  boost::asio::strand<Executor> strand_;
  Executor executor_;  // connections get their own strands on it
  ApnsCredential credential_;
  PoolOptions options_;
  std::optional<PoolMetrics> metrics_;
  std::string label_;      // "customer/environment" for logs
  std::string authority_;  // :authority of every request

  CredentialBreaker breaker_;
  std::mt19937_64 rng_;
  std::vector<SlotPtr> slots_;
  bool connecting_ = false;
  bool closing_ = false;
  bool closed_ = false;
  std::size_t sends_in_flight_ = 0;
  std::uint64_t next_slot_id_ = 1;
  std::uint64_t connection_attempts_ = 0;
  std::uint64_t connections_opened_ = 0;
  std::string last_connect_error_;
  // Timers of coroutines waiting in wait_for_change / sleep; cancelled to wake them.
  std::vector<boost::asio::steady_timer*> waiters_;
  std::vector<boost::asio::steady_timer*> sleepers_;
};

}  // namespace mp::apns
