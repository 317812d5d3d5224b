// H2Connection: connect, the read, write and keep-alive loops, and request completion.
#include "h2/h2_connection.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <iterator>
#include <optional>

#include "common/log.hpp"

namespace mp::h2 {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

// Past this the write loop's buffer is given back after a burst, so idle connections stay small.
constexpr std::size_t kMaxIdleWriteBuffer = 64 * 1024;
// The read loop's buffer: APNs answers are small; a bigger body takes a few SSL_reads.
constexpr std::size_t kReadChunk = 4 * 1024;
// How long a failed connection may take to send its GOAWAY before the socket closes anyway.
constexpr std::chrono::milliseconds kGoawayFlushTime{1000};

// Calls fn on every exit of a scope, exceptions and coroutine frame destruction included.
template <typename Fn>
class ScopeExit {
 public:
  explicit ScopeExit(Fn fn) : fn_(std::move(fn)) {}
  ~ScopeExit() { fn_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  Fn fn_;
};

std::string ms_text(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  (void)asio::ip::make_address(host, ec);
  return !ec;
}

bool is_tls_error(const boost::system::error_code& ec) {
  return ec.category() == asio::error::get_ssl_category();
}

// Words for a socket or TLS error on an established connection.
std::string describe_io_error(const boost::system::error_code& ec) {
  if (ec == asio::error::eof) return "the server closed the connection";
  if (ec == asio::ssl::error::stream_truncated) {
    return "the server closed the connection (no TLS close_notify)";
  }
  if (is_tls_error(ec)) return "TLS error: " + ec.message();
  return ec.message();
}

// Why the TLS handshake failed: an untrusted server certificate, a TLS error (conflict), or the
// network (unavailable).
Error handshake_failure(SSL* ssl, const boost::system::error_code& ec) {
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    return Error{Errc::conflict,
                 std::string("TLS handshake failed: server certificate not trusted: ") +
                     X509_verify_cert_error_string(verify)};
  }
  return Error{is_tls_error(ec) ? Errc::conflict : Errc::unavailable,
               "TLS handshake failed: " + describe_io_error(ec)};
}

// Why the server's ALPN choice is not h2; nullopt when it is.
std::optional<std::string> not_h2(SSL* ssl) {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  const std::string protocol(reinterpret_cast<const char*>(alpn), alpn_len);
  if (protocol == "h2") return std::nullopt;
  return protocol.empty()
             ? "server did not negotiate HTTP/2: no ALPN protocol selected"
             : "server did not negotiate HTTP/2: ALPN selected '" + protocol + "' instead of 'h2'";
}

void log_spawn_failure(const char* what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    log::error("h2.internal_error", {{"where", what}, {"error", ex.what()}});
  }
}

}  // namespace

const char* connection_state_name(ConnectionState state) noexcept {
  switch (state) {
    case ConnectionState::created:
      return "created";
    case ConnectionState::connecting:
      return "connecting";
    case ConnectionState::open:
      return "open";
    case ConnectionState::draining:
      return "draining";
    case ConnectionState::closed:
      return "closed";
  }
  return "?";
}

// A request waiting in do_request; lives in that coroutine's frame until it is completed.
struct H2Connection::Pending {
  Pending(const Executor& ex, std::uint64_t request_id, const Request& req)
      : id(request_id), request(&req), wake(ex) {}
  std::uint64_t id;
  const Request* request;
  std::int32_t stream_id = 0;  // 0 while queued
  std::optional<Result<Response>> result;
  asio::steady_timer wake;  // expires at the request's deadline; cancelled on completion
};

// The caller's cancellation, handed to the strand. The work itself never sees the caller's
// cancellation slot (Asio would tear its frame down while the connection still points at it).
struct H2Connection::CallerCancel {
  bool cancelled = false;      // on the strand
  Pending* pending = nullptr;  // on the strand; set while the request waits
};

std::shared_ptr<H2Connection> H2Connection::create(const Executor& executor,
                                                   std::shared_ptr<asio::ssl::context> tls,
                                                   ConnectionOptions options) {
  return std::shared_ptr<H2Connection>(
      new H2Connection(executor, std::move(tls), std::move(options)));
}

H2Connection::H2Connection(const Executor& executor, std::shared_ptr<asio::ssl::context> tls,
                           ConnectionOptions options)
    : strand_(asio::make_strand(executor)),
      tls_(std::move(tls)),
      options_(std::move(options)),
      peer_(options_.host + ":" + std::to_string(options_.port)),
      resolver_(strand_),
      stream_(strand_, *tls_),
      connect_watchdog_(strand_),
      write_wake_(strand_),
      keepalive_timer_(strand_),
      closed_signal_(strand_),
      flush_deadline_(strand_) {
  if (options_.server_name.empty()) options_.server_name = options_.host;
  if (options_.authority.empty()) {
    options_.authority = options_.port == 443 ? options_.host : peer_;
  }
}

H2Connection::~H2Connection() = default;

// ---------------------------------------------------------------------------------------------
// connect

asio::awaitable<Status> H2Connection::connect() {
  auto self = shared_from_this();
  // A cancelled caller closes the connection; the connect then fails at once.
  asio::cancellation_state caller = co_await asio::this_coro::cancellation_state;
  asio::cancellation_slot slot = caller.slot();
  if (slot.is_connected()) {
    slot.assign([self](asio::cancellation_type) {
      asio::post(self->strand_, [self] { self->stop_connecting(); });
    });
  }
  auto work = do_connect(self);
  auto detached_from_caller =
      asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable);
  Status result = co_await asio::co_spawn(strand_, std::move(work), detached_from_caller);
  if (slot.is_connected()) slot.clear();
  co_return result;
}

void H2Connection::stop_connecting() {
  if (state_ != ConnectionState::connecting) return;
  state_ = ConnectionState::closed;  // connect() sees it after its current step and fails
  resolver_.cancel();
  close_socket();
}

asio::awaitable<Status> H2Connection::do_connect(std::shared_ptr<H2Connection> self) {
  if (state_ != ConnectionState::created) {
    co_return Error{Errc::conflict, "connect() on a connection that is " +
                                        std::string(connection_state_name(state_))};
  }
  state_ = ConnectionState::connecting;

  // One deadline for all of it: on expiry, cancel whatever step is running. It follows this
  // call, not the state: close() during the connect must not switch it off.
  auto connect_done = std::make_shared<bool>(false);
  ScopeExit mark_done([connect_done] { *connect_done = true; });
  connect_watchdog_.expires_after(options_.connect_timeout);
  connect_watchdog_.async_wait([self, connect_done](const boost::system::error_code& ec) {
    if (ec || *connect_done) return;
    self->connect_timed_out_ = true;
    self->resolver_.cancel();
    self->close_socket();
  });
  // close() or abort() ran during the last step: stop before the next one reopens anything.
  const std::string closed_while_connecting = "closed while connecting";

  std::vector<tcp::endpoint> endpoints = options_.endpoints;
  if (endpoints.empty()) {
    const std::string port_text = std::to_string(options_.port);
    auto [ec, results] = co_await resolver_.async_resolve(options_.host, port_text, nothrow);
    if (state_ != ConnectionState::connecting) {
      co_return connect_failed(Errc::unavailable, closed_while_connecting);
    }
    if (ec) co_return connect_failed(Errc::unavailable, "cannot resolve host: " + ec.message());
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }
  {
    auto [ec, endpoint] = co_await asio::async_connect(stream_.socket(), endpoints, nothrow);
    if (state_ != ConnectionState::connecting) {
      co_return connect_failed(Errc::unavailable, closed_while_connecting);
    }
    if (ec) co_return connect_failed(Errc::unavailable, "TCP connect failed: " + ec.message());
    boost::system::error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
  }
  if (Status st = configure_tls(); !st)
    co_return connect_failed(st.error().code, st.error().message);
  {
    const boost::system::error_code ec = co_await stream_.async_handshake();
    if (state_ != ConnectionState::connecting) {
      co_return connect_failed(Errc::unavailable, closed_while_connecting);
    }
    if (ec) {
      const Error failure = handshake_failure(stream_.native_handle(), ec);
      co_return connect_failed(failure.code, failure.message);
    }
  }
  if (const auto problem = not_h2(stream_.native_handle())) {
    co_return connect_failed(Errc::conflict, *problem);
  }
  auto session = H2Session::create(options_.limits);
  if (!session) co_return connect_failed(session.error().code, session.error().message);
  session_ = std::move(session).value();
  Status prefaces = co_await exchange_prefaces();
  if (state_ != ConnectionState::connecting) {
    co_return connect_failed(Errc::unavailable, closed_while_connecting);
  }
  if (!prefaces) co_return connect_failed(prefaces.error().code, prefaces.error().message);
  connect_watchdog_.cancel();
  state_ = ConnectionState::open;
  const auto now = Clock::now();
  idle_since_ = now;
  next_ping_at_ = now + options_.ping_interval;
  log::info("h2.connected", {{"peer", peer_},
                             {"tls", SSL_get_version(stream_.native_handle())},
                             {"max_concurrent_streams", session_->peer_max_concurrent_streams()}});
  dispatch_events();  // what came with the server's SETTINGS (a GOAWAY: draining at once)

  auto reader = read_loop(self);
  asio::co_spawn(strand_, std::move(reader),
                 [](std::exception_ptr e) { log_spawn_failure("read_loop", e); });
  auto writer = write_loop(self);
  asio::co_spawn(strand_, std::move(writer),
                 [](std::exception_ptr e) { log_spawn_failure("write_loop", e); });
  auto keepalive = keepalive_loop(self);
  asio::co_spawn(strand_, std::move(keepalive),
                 [](std::exception_ptr e) { log_spawn_failure("keepalive_loop", e); });
  co_return Status{};
}

Status H2Connection::connect_failed(Errc code, const std::string& what) {
  connect_watchdog_.cancel();
  std::string message = "connect to " + peer_ + ": " + what;
  if (connect_timed_out_) {
    code = Errc::unavailable;
    message = "connect to " + peer_ + " timed out after " + ms_text(options_.connect_timeout) +
              " (" + what + ")";
  }
  log::warn("h2.connect_failed", {{"peer", peer_}, {"reason", message}});
  state_ = ConnectionState::closed;
  close_socket();
  return Error{code, message};
}

Status H2Connection::configure_tls() {
  SSL* ssl = stream_.native_handle();
  const std::string& name = options_.server_name;
  if (is_ip_literal(name)) {
    // No SNI for addresses (RFC 6066); the certificate must name the IP.
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1) {
      return Error{Errc::invalid_argument, "cannot check the certificate against " + name};
    }
  } else {
    if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1 || SSL_set1_host(ssl, name.c_str()) != 1) {
      return Error{Errc::invalid_argument, "cannot set SNI / host check to " + name};
    }
  }
  return {};
}

// Our preface and SETTINGS out, the server's SETTINGS in, before anyone may send a request: an
// HTTP/2 server that rejects our certificate (TLS 1.3 says so only now) or is not HTTP/2 at all
// fails connect(), and the first requests respect its stream limit.
asio::awaitable<Status> H2Connection::exchange_prefaces() {
  std::string out;
  if (Status st = session_->send(out); !st) co_return st;
  {
    const boost::system::error_code ec = co_await stream_.async_write_all(out);
    if (ec) {
      co_return Error{is_tls_error(ec) ? Errc::conflict : Errc::unavailable,
                      "sending the HTTP/2 preface failed: " + describe_io_error(ec)};
    }
  }
  std::array<std::uint8_t, kReadChunk> buf;
  for (;;) {
    auto [ec, n] = co_await stream_.async_read_some(std::span<std::uint8_t>(buf));
    if (ec) {
      co_return Error{is_tls_error(ec) ? Errc::conflict : Errc::unavailable,
                      "no HTTP/2 SETTINGS from the server: " + describe_io_error(ec)};
    }
    if (Status st = session_->receive(std::span<const std::uint8_t>(buf.data(), n)); !st) {
      co_return Error{Errc::conflict, "server is not speaking HTTP/2: " + st.error().message};
    }
    bool settled = false;
    for (auto& ev : session_->take_events()) {
      if (std::holds_alternative<SettingsReceived>(ev)) settled = true;
      early_events_.push_back(std::move(ev));  // dispatched once the connection is open
    }
    // A protocol error shows once nghttp2 has written its GOAWAY.
    std::string probe;
    if (Status st = session_->send(probe); !st) {
      if (!probe.empty()) {  // best effort: the server learns why
        (void)co_await stream_.async_write_all(probe);
      }
      co_return Error{Errc::conflict, "server is not speaking HTTP/2: " + st.error().message};
    }
    if (!probe.empty()) {
      const boost::system::error_code wec = co_await stream_.async_write_all(probe);
      if (wec) co_return Error{Errc::unavailable, "write failed: " + describe_io_error(wec)};
    }
    if (settled) co_return Status{};
  }
}

// ---------------------------------------------------------------------------------------------
// requests

asio::awaitable<Result<Response>> H2Connection::request(const Request& request) {
  auto self = shared_from_this();
  // A cancelled caller ends the request early (like a timeout), on the strand.
  auto cancel = std::make_shared<CallerCancel>();
  asio::cancellation_state caller = co_await asio::this_coro::cancellation_state;
  asio::cancellation_slot slot = caller.slot();
  if (slot.is_connected()) {
    slot.assign([self, cancel](asio::cancellation_type) {
      asio::post(self->strand_, [self, cancel] { self->on_caller_cancelled(*cancel); });
    });
  }
  auto work = do_request(self, request, cancel);
  auto detached_from_caller =
      asio::bind_cancellation_slot(asio::cancellation_slot(), asio::use_awaitable);
  // co_spawn needs a default-constructible result, hence the optional.
  std::optional<Result<Response>> result =
      co_await asio::co_spawn(strand_, std::move(work), detached_from_caller);
  if (slot.is_connected()) slot.clear();
  co_return std::move(*result);
}

void H2Connection::on_caller_cancelled(CallerCancel& cancel) {
  cancel.cancelled = true;
  if (cancel.pending == nullptr || cancel.pending->result) return;
  give_up(*cancel.pending, "request cancelled by the caller");
}

asio::awaitable<std::optional<Result<Response>>> H2Connection::do_request(
    [[maybe_unused]] std::shared_ptr<H2Connection> self, const Request& request,
    std::shared_ptr<CallerCancel> cancel) {
  if (cancel->cancelled) {
    co_return Result<Response>{
        Error{Errc::unavailable, "request cancelled by the caller before it was sent"}};
  }
  if (state_ != ConnectionState::open) {
    co_return Result<Response>{Error{Errc::unavailable, "connection to " + peer_ + " is " +
                                                            connection_state_name(state_) +
                                                            ": request not sent, safe to retry"}};
  }
  if (queue_.size() >= options_.max_queued_requests) {
    co_return Result<Response>{Error{Errc::busy, "request queue of the connection to " + peer_ +
                                                     " is full (" + std::to_string(queue_.size()) +
                                                     ")"}};
  }
  Request with_authority;
  const Request* to_send = &request;
  if (request.authority.empty()) {
    with_authority = request;
    with_authority.authority = options_.authority;
    to_send = &with_authority;
  }
  Pending pending(strand_, next_request_id_++, *to_send);
  pending.wake.expires_after(options_.request_timeout);
  pending_.emplace(pending.id, &pending);
  queue_.push_back(&pending);
  cancel->pending = &pending;
  // However this frame ends, nothing may point at `pending` after it.
  ScopeExit forget([this, &pending, &cancel] {
    cancel->pending = nullptr;
    const bool was_pending = pending_.erase(pending.id) != 0;
    const bool was_queued = std::erase(queue_, &pending) != 0;
    if (was_pending || was_queued) update_gauges();
  });
  update_gauges();
  wake_writer();

  while (!pending.result) {
    auto [ec] = co_await pending.wake.async_wait(nothrow);
    // Success means the deadline passed; a cancel means news (usually the result).
    if (!ec && !pending.result) on_request_timeout(pending);
  }
  std::optional<Result<Response>> result = std::move(pending.result);
  co_return result;
}

void H2Connection::on_request_timeout(Pending& pending) {
  counters_.timeouts++;
  log::warn("h2.request_timeout", {{"peer", peer_},
                                   {"path", loggable_path(pending.request->path)},
                                   {"stream", pending.stream_id}});
  give_up(pending, "request timed out after " + ms_text(options_.request_timeout));
}

// Ends a request nobody waits for any more: out of the queue, or its stream reset (CANCEL).
void H2Connection::give_up(Pending& pending, const std::string& why) {
  if (pending.stream_id == 0) {
    std::erase(queue_, &pending);
    complete(pending, Error{Errc::unavailable, why + " waiting for a free stream; never sent, "
                                                     "safe to retry"});
    return;
  }
  std::optional<Error> error = session_->cancel(pending.stream_id, why);
  if (error && error->code == Errc::io) counters_.reset++;
  complete(pending, error ? std::move(*error)
                          : Error{Errc::io, why + "; it may or may not have been processed"});
  wake_writer();
}

void H2Connection::complete(Pending& pending, Result<Response> result) {
  if (pending.result) return;
  if (result.ok()) {
    counters_.completed++;
  } else {
    counters_.failed++;
  }
  pending.result = std::move(result);
  pending_.erase(pending.id);
  pending.wake.cancel();
  if (pending_.empty()) idle_since_ = Clock::now();
  update_gauges();
}

void H2Connection::submit_queued() {
  while (!queue_.empty() && session_->can_submit()) {
    Pending* p = queue_.front();
    queue_.pop_front();
    auto stream_id = session_->submit(*p->request, p->id);
    if (!stream_id) {
      complete(*p, std::move(stream_id).error());
      continue;
    }
    p->stream_id = *stream_id;
    counters_.streams_opened++;
  }
  if (session_->stream_ids_exhausted()) {
    // The session said GOAWAY; the streams in flight finish, the pool opens a new connection.
    if (state_ == ConnectionState::open) {
      state_ = ConnectionState::draining;
      log::info("h2.stream_ids_exhausted", {{"peer", peer_}});
    }
    fail_queued("stream ids of the connection to " + peer_ +
                " are used up: request never sent, retry on a new connection");
  }
  update_gauges();
}

void H2Connection::dispatch_events() {
  std::vector<Event> events = session_->take_events();
  if (!early_events_.empty()) {
    events.insert(events.begin(), std::make_move_iterator(early_events_.begin()),
                  std::make_move_iterator(early_events_.end()));
    early_events_.clear();
  }
  for (auto& event : events) {
    if (auto* done = std::get_if<StreamDone>(&event)) {
      if (done->reset_code) counters_.reset++;
      auto it = pending_.find(done->request_id);
      if (it != pending_.end()) complete(*it->second, std::move(done->result));
    } else if (auto* goaway = std::get_if<GoawayReceived>(&event)) {
      counters_.goaway++;
      log::info("h2.goaway_received", {{"peer", peer_},
                                       {"last_stream_id", goaway->last_stream_id},
                                       {"error_code", goaway->error_code},
                                       {"debug", goaway->debug_data}});
      if (state_ == ConnectionState::open) state_ = ConnectionState::draining;
      fail_queued(
          "the server sent GOAWAY before the request was sent: not processed, retry on a "
          "new connection");
    } else if (auto* ack = std::get_if<PingAcked>(&event)) {
      if (ping_outstanding_ && *ping_outstanding_ == ack->opaque) {
        ping_outstanding_.reset();
        counters_.pings_acked++;
        keepalive_timer_.cancel();  // it slept until the ack deadline; plan the next PING
      }
    } else if (auto* settings = std::get_if<SettingsReceived>(&event)) {
      log::debug("h2.settings",
                 {{"peer", peer_}, {"max_concurrent_streams", settings->max_concurrent_streams}});
    }
  }
}

void H2Connection::fail_queued(const std::string& why) {
  while (!queue_.empty()) {
    Pending* p = queue_.front();
    queue_.pop_front();
    complete(*p, Error{Errc::unavailable, why});
  }
}

void H2Connection::update_gauges() {
  counters_.queued = queue_.size();
  counters_.in_flight = pending_.size() - queue_.size();
}

// ---------------------------------------------------------------------------------------------
// the loops

asio::awaitable<void> H2Connection::read_loop([[maybe_unused]] std::shared_ptr<H2Connection> self) {
  // Allocated when bytes arrive, given back when no request waits: idle connections hold none.
  std::unique_ptr<std::uint8_t[]> buf;
  while (state_ != ConnectionState::closed) {
    if (!stream_.has_buffered_input()) {
      const boost::system::error_code ec = co_await stream_.async_wait_readable();
      if (state_ == ConnectionState::closed) break;
      if (ec) {
        fail(Error{Errc::io, "connection to " + peer_ + " lost: " + describe_io_error(ec)});
        break;
      }
    }
    if (!buf) buf = std::make_unique_for_overwrite<std::uint8_t[]>(kReadChunk);
    auto [ec, n] = co_await stream_.async_read_some(std::span<std::uint8_t>(buf.get(), kReadChunk));
    if (state_ == ConnectionState::closed) break;
    if (ec) {
      fail(Error{Errc::io, "connection to " + peer_ + " lost: " + describe_io_error(ec)});
      break;
    }
    Status st = session_->receive(std::span<const std::uint8_t>(buf.get(), n));
    dispatch_events();
    if (!st) {
      fail_after_flush(st.error());
      break;
    }
    if (pending_.empty() && !stream_.has_buffered_input()) buf.reset();
    wake_writer();
  }
}

// The session is dead but may hold a GOAWAY saying why: the write loop sends it (for at most
// kGoawayFlushTime), then the connection fails.
void H2Connection::fail_after_flush(const Error& why) {
  if (state_ == ConnectionState::closed || protocol_failure_) return;
  protocol_failure_ = why;
  state_ = ConnectionState::draining;
  flush_deadline_.expires_after(kGoawayFlushTime);
  flush_deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->fail(*self->protocol_failure_);
  });
  wake_writer();
}

asio::awaitable<void> H2Connection::write_loop(
    [[maybe_unused]] std::shared_ptr<H2Connection> self) {
  std::string out;
  while (state_ != ConnectionState::closed) {
    submit_queued();
    out.clear();
    Status st = session_->send(out);
    dispatch_events();
    if (!st || protocol_failure_) {
      const Error why = protocol_failure_ ? *protocol_failure_ : st.error();
      if (!out.empty()) {  // best effort: our GOAWAY tells the server what went wrong
        fail_after_flush(why);
        (void)co_await stream_.async_write_all(out);
      }
      fail(why);
      break;
    }
    if (!out.empty() || stream_.has_pending_output()) {
      // has_pending_output: TLS records the read side produced (alerts, KeyUpdate answers).
      boost::system::error_code ec;
      if (out.empty()) {
        ec = co_await stream_.async_flush();
      } else {
        ec = co_await stream_.async_write_all(out);
      }
      if (state_ == ConnectionState::closed) break;
      if (ec) {
        fail(Error{Errc::io,
                   "connection to " + peer_ + " lost: write failed: " + describe_io_error(ec)});
        break;
      }
      continue;
    }
    if (!session_->wants_read() && !session_->wants_write()) {
      finish("both sides are done (GOAWAY, no stream left)");
      break;
    }
    // A burst is over: big buffers go back; with no request left, all of them (idle memory).
    if (pending_.empty()) {
      std::string().swap(out);
      stream_.release_idle_buffers();
    } else if (out.capacity() > kMaxIdleWriteBuffer) {
      std::string().swap(out);
    }
    write_wake_.expires_at(Clock::time_point::max());
    (void)co_await write_wake_.async_wait(nothrow);
  }
}

asio::awaitable<void> H2Connection::keepalive_loop(
    [[maybe_unused]] std::shared_ptr<H2Connection> self) {
  const bool pings = options_.ping_interval.count() > 0;
  const bool idle_check = options_.idle_timeout.count() > 0;
  while (state_ != ConnectionState::closed) {
    auto wake_at = Clock::time_point::max();
    if (ping_outstanding_) {
      wake_at = std::min(wake_at, ping_deadline_);
    } else if (pings) {
      wake_at = std::min(wake_at, next_ping_at_);
    }
    if (idle_check && pending_.empty() && state_ == ConnectionState::open) {
      wake_at = std::min(wake_at, idle_since_ + options_.idle_timeout);
    }
    keepalive_timer_.expires_at(wake_at);
    (void)co_await keepalive_timer_.async_wait(nothrow);
    if (state_ == ConnectionState::closed) break;

    const auto now = Clock::now();
    if (ping_outstanding_ && now >= ping_deadline_) {
      fail(Error{Errc::io, "connection to " + peer_ + " lost: PING not answered within " +
                               ms_text(options_.ping_timeout)});
      break;
    }
    if (idle_check && pending_.empty() && state_ == ConnectionState::open &&
        now >= idle_since_ + options_.idle_timeout) {
      log::info("h2.idle_close", {{"peer", peer_}, {"idle", ms_text(options_.idle_timeout)}});
      state_ = ConnectionState::draining;
      (void)session_->shutdown();
      wake_writer();
    }
    if (pings && !ping_outstanding_ && now >= next_ping_at_) {
      const std::uint64_t opaque = ++ping_sequence_;
      if (session_->ping(opaque)) {
        ping_outstanding_ = opaque;
        ping_deadline_ = now + options_.ping_timeout;
        counters_.pings_sent++;
      }
      next_ping_at_ = now + options_.ping_interval;
      wake_writer();
    }
  }
}

void H2Connection::wake_writer() {
  write_wake_.cancel();
}

// ---------------------------------------------------------------------------------------------
// the end

void H2Connection::fail(const Error& why) {
  if (state_ == ConnectionState::closed) return;
  log::warn("h2.connection_lost", {{"peer", peer_},
                                   {"reason", why.message},
                                   {"in_flight", pending_.size() - queue_.size()},
                                   {"queued", queue_.size()}});
  end(why);
}

void H2Connection::end(const Error& why) {
  state_ = ConnectionState::closed;
  if (session_) {
    session_->fail(why);  // every stream gets its StreamDone
    dispatch_events();
  }
  fail_queued(why.message + "; the request was never sent, safe to retry");
  close_socket();
}

void H2Connection::finish(const char* reason) {
  if (state_ == ConnectionState::closed) return;
  log::info("h2.closed", {{"peer", peer_}, {"reason", reason}});
  end(Error{Errc::unavailable, std::string("connection closed: ") + reason});
}

void H2Connection::close_socket() {
  stream_.shutdown();  // close_notify if it can go at once
  stream_.close();
  write_wake_.cancel();
  keepalive_timer_.cancel();
  closed_signal_.cancel();
  flush_deadline_.cancel();
}

asio::awaitable<void> H2Connection::close(std::chrono::milliseconds grace) {
  auto self = shared_from_this();
  auto work = do_close(self, grace);
  co_await asio::co_spawn(strand_, std::move(work), asio::use_awaitable);
}

asio::awaitable<void> H2Connection::do_close([[maybe_unused]] std::shared_ptr<H2Connection> self,
                                             std::chrono::milliseconds grace) {
  if (state_ == ConnectionState::closed) co_return;
  if (state_ != ConnectionState::open && state_ != ConnectionState::draining) {
    // Not connected yet (or connecting: the connect fails with "closed while connecting").
    state_ = ConnectionState::closed;
    resolver_.cancel();
    close_socket();
    co_return;
  }
  state_ = ConnectionState::draining;
  fail_queued("connection to " + peer_ + " is closing: request never sent, safe to retry");
  (void)session_->shutdown();
  wake_writer();
  closed_signal_.expires_after(grace);
  while (state_ != ConnectionState::closed) {
    auto [ec] = co_await closed_signal_.async_wait(nothrow);
    if (!ec && state_ != ConnectionState::closed) {
      fail(Error{Errc::io,
                 "connection to " + peer_ + " closed after the grace period of " + ms_text(grace)});
    }
  }
}

void H2Connection::abort(const std::string& reason) {
  auto self = shared_from_this();
  asio::post(strand_, [self, reason] {
    if (self->state_ == ConnectionState::connecting) {
      self->stop_connecting();  // connect() sees it and fails
      return;
    }
    self->fail(Error{Errc::io, "connection to " + self->peer_ + " aborted: " + reason});
  });
}

}  // namespace mp::h2
