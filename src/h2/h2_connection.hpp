// H2Connection: one HTTP/2 client connection over TLS (Asio + our TlsSocket), driving an H2Session.
//
// Everything runs on the connection's strand; no locks. The coroutines hold a shared_ptr to the
// connection, so it lives until it is closed (close(), abort(), or a failure) and they end.
//
//   connect()      resolve (or take the given endpoints) -> TCP connect -> TLS handshake (SNI,
//                  server verification, hostname check, client certificate from memory) ->
//                  ALPN must be "h2" -> send our preface -> wait for the server's SETTINGS.
//                  One deadline (connect_timeout) covers all of it. Then three coroutines start:
//   read loop      async_read_some (into a 4 KiB buffer held only while requests are pending)
//                  -> H2Session::receive (nghttp2_session_mem_recv) -> hand the
//                  session's events out (responses, resets, GOAWAY, PING acks, SETTINGS) -> wake
//                  the write loop. Never writes.
//   write loop     moves queued requests into the session while can_submit() (the server's
//                  SETTINGS_MAX_CONCURRENT_STREAMS), drains H2Session::send (mem_send) and
//                  async_writes it; sleeps on a timer that anyone with news cancels.
//   keep-alive     PING every ping_interval; no ack within ping_timeout -> the connection is
//                  declared dead. Also closes (GOAWAY) a connection idle for idle_timeout.
//
// A request's life: request() -> queued (waits for a free stream, FIFO) -> submitted (a stream
// id; H2Session's record goes queued -> open -> half_closed -> closed) -> completed exactly once
// with a Response (any HTTP status; APNs reasons are the caller's business) or an Error whose
// code says whether a resend is safe: h2::retry_safety(error) reads it, and the table of which
// failure gives which code is in docs/apns-client.md, "Retries". A connection that failed or
// closed stays closed: make a new one (the pool's job). When its stream ids run out
// (SessionLimits::max_stream_id) it says GOAWAY and goes draining; queued requests fail with
// Errc::unavailable.
//
// Cancelling the coroutine that awaits request() (e.g. `||` with a timer) ends that request like
// a timeout; cancelling the one that awaits connect() closes the connection. The work itself runs
// apart from the caller's cancellation, so it is never torn down half-way.
//
// connect() errors: Errc::unavailable when the server cannot be reached (resolve, TCP, timeout,
// closed during the handshake, close()/abort() during connect()); Errc::conflict when TLS or HTTP/2
// refuses (certificate not trusted or for another name, our client certificate refused, ALPN not
// "h2").
//
// Logs never hold a full path (device tokens): see h2::loggable_path.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/result.hpp"
#include "h2/h2_session.hpp"
#include "net/tls_socket.hpp"

namespace mp::h2 {

struct ConnectionOptions {
  std::string host;  // DNS name or IP literal
  std::uint16_t port = 443;
  // When not empty, connect to these instead of resolving `host` (tests, pinned addresses).
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;
  std::string server_name;  // SNI and the certificate name check; empty: `host`
  std::string authority;    // default :authority of requests that leave it empty; empty: host
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds request_timeout{15'000};
  std::chrono::milliseconds ping_interval{60'000};  // 0: no keep-alive PINGs
  std::chrono::milliseconds ping_timeout{10'000};
  std::chrono::milliseconds idle_timeout{0};  // close after this long without requests; 0: never
  std::size_t max_queued_requests = 10'000;
  SessionLimits limits;
};

enum class ConnectionState { created, connecting, open, draining, closed };
const char* connection_state_name(ConnectionState state) noexcept;

// Read from any thread (metrics); written on the strand.
struct ConnectionCounters {
  std::atomic<std::uint64_t> streams_opened{0};
  std::atomic<std::uint64_t> in_flight{0};  // gauge: submitted, not completed
  std::atomic<std::uint64_t> queued{0};     // gauge: waiting for a stream
  std::atomic<std::uint64_t> completed{0};  // answered with a response (any status)
  std::atomic<std::uint64_t> failed{0};     // ended with an error
  std::atomic<std::uint64_t> reset{0};      // streams reset by the server or by us
  std::atomic<std::uint64_t> timeouts{0};
  std::atomic<std::uint64_t> goaway{0};  // GOAWAY frames received
  std::atomic<std::uint64_t> pings_sent{0};
  std::atomic<std::uint64_t> pings_acked{0};
};

class H2Connection : public std::enable_shared_from_this<H2Connection> {
 public:
  using Executor = boost::asio::any_io_executor;

  // `tls` from make_client_tls_context (shared by the connections of one credential).
  static std::shared_ptr<H2Connection> create(const Executor& executor,
                                              std::shared_ptr<boost::asio::ssl::context> tls,
                                              ConnectionOptions options);
  ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  // Once per connection. On error the connection is closed.
  boost::asio::awaitable<Status> connect();
  // Completes exactly once (see the top of this file); `request` must outlive the call.
  boost::asio::awaitable<Result<Response>> request(const Request& request);
  // Graceful: no new requests (queued ones fail as not processed), GOAWAY, streams in flight get
  // `grace` to finish, then the rest fail (Errc::io) and the socket closes.
  boost::asio::awaitable<void> close(std::chrono::milliseconds grace);
  // Abrupt, from any thread: every pending request fails at once.
  void abort(const std::string& reason);

  ConnectionState state() const noexcept { return state_.load(); }
  // Open and not draining: new requests are welcome.
  bool accepting() const noexcept { return state() == ConnectionState::open; }
  const ConnectionCounters& counters() const noexcept { return counters_; }
  const std::string& peer() const noexcept { return peer_; }  // "host:port", for logs

 private:
  struct Pending;
  struct CallerCancel;
  H2Connection(const Executor& executor, std::shared_ptr<boost::asio::ssl::context> tls,
               ConnectionOptions options);

  boost::asio::awaitable<Status> do_connect(std::shared_ptr<H2Connection> self);
  Status configure_tls();
  boost::asio::awaitable<Status> exchange_prefaces();
  boost::asio::awaitable<std::optional<Result<Response>>> do_request(
      std::shared_ptr<H2Connection> self, const Request& request,
      std::shared_ptr<CallerCancel> cancel);
  Status connect_failed(Errc code, const std::string& what);
  boost::asio::awaitable<void> do_close(std::shared_ptr<H2Connection> self,
                                        std::chrono::milliseconds grace);
  boost::asio::awaitable<void> read_loop(std::shared_ptr<H2Connection> self);
  boost::asio::awaitable<void> write_loop(std::shared_ptr<H2Connection> self);
  boost::asio::awaitable<void> keepalive_loop(std::shared_ptr<H2Connection> self);

  void submit_queued();
  void dispatch_events();
  void complete(Pending& pending, Result<Response> result);
  void on_request_timeout(Pending& pending);
  void on_caller_cancelled(CallerCancel& cancel);
  void give_up(Pending& pending, const std::string& why);
  void stop_connecting();
  void fail_after_flush(const Error& why);
  void fail_queued(const std::string& why);
  void fail(const Error& why);      // abrupt end, logged as lost
  void end(const Error& why);       // closes; everything pending completes with `why`
  void finish(const char* reason);  // both sides done
  void close_socket();
  void wake_writer();
  void update_gauges();
  void mark_activity();

  boost::asio::strand<Executor> strand_;
  std::shared_ptr<boost::asio::ssl::context> tls_;
  ConnectionOptions options_;
  std::string peer_;
  boost::asio::ip::tcp::resolver resolver_;
  net::TlsSocket stream_;
  std::unique_ptr<H2Session> session_;
  std::atomic<ConnectionState> state_{ConnectionState::created};
  bool connect_timed_out_ = false;
  std::vector<Event> early_events_;        // arrived with the server's first SETTINGS
  std::optional<Error> protocol_failure_;  // the session failed; our GOAWAY is being flushed

  std::deque<Pending*> queue_;                           // waiting for a stream, FIFO
  std::unordered_map<std::uint64_t, Pending*> pending_;  // every request not completed
  std::uint64_t next_request_id_ = 1;

  boost::asio::steady_timer connect_watchdog_;
  boost::asio::steady_timer write_wake_;  // never expires; cancel() wakes the write loop
  boost::asio::steady_timer keepalive_timer_;
  boost::asio::steady_timer closed_signal_;   // cancelled when the connection closes
  boost::asio::steady_timer flush_deadline_;  // bounds the GOAWAY flush after a protocol error
  std::optional<std::uint64_t> ping_outstanding_;
  std::uint64_t ping_sequence_ = 0;
  std::chrono::steady_clock::time_point ping_deadline_{};
  std::chrono::steady_clock::time_point next_ping_at_{};
  std::chrono::steady_clock::time_point idle_since_{};

  ConnectionCounters counters_;
};

}  // namespace mp::h2
