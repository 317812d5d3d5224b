// Accept loop and per-connection coroutine of HttpsServer.
#include "http/https_server.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <tuple>

#include "common/log.hpp"
#include "http/client_address.hpp"
#include "http/first_bytes.hpp"
#include "http/message_io.hpp"

namespace mp::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

// Errors of Beast's HTTP parser (other than a clean close) mean the peer sent malformed HTTP.
bool is_malformed_http(const boost::system::error_code& ec) {
  static const auto& category = make_error_code(beast_http::error::bad_target).category();
  return ec && ec.category() == category && ec != beast_http::error::end_of_stream &&
         ec != beast_http::error::partial_message;
}

Response refusal(unsigned version, beast_http::status status, std::string_view code,
                 std::string_view message) {
  Response res{status, version};
  res.set(beast_http::field::content_type, "application/json");
  res.set(beast_http::field::cache_control, "no-store");
  res.keep_alive(false);
  res.body() = nlohmann::json{{"error", code}, {"message", message}}.dump();
  res.prepare_payload();
  return res;
}

// A request answered from its header alone: a body announced up to this size is read and dropped
// after the answer (the connection then stays open: a new TLS handshake costs more); a longer
// one closes the connection.
constexpr std::uint64_t kDrainBytes = 64 * 1024;

std::int64_t now_ns() {
  return std::chrono::steady_clock::now().time_since_epoch().count();
}

bool is_get_or_head(beast_http::verb v) {
  return v == beast_http::verb::get || v == beast_http::verb::head;
}

// What Transfer-Encoding allows: none, or exactly "chunked" once and without Content-Length.
// Anything else (gzip, "chunked, chunked", both framings) is how requests are smuggled past
// proxies that read the framing differently.
bool acceptable_framing(const beast_http::request_header<>& header) {
  const auto te = header.count(beast_http::field::transfer_encoding);
  if (te == 0) return header.count(beast_http::field::content_length) <= 1;
  if (te > 1 || header.count(beast_http::field::content_length) > 0) return false;
  std::string_view value = header[beast_http::field::transfer_encoding];
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return beast::iequals(value, "chunked");
}

}  // namespace

struct HttpsServer::Session : std::enable_shared_from_this<Session> {
  Session(tcp::socket socket, std::shared_ptr<asio::ssl::context> context)
      : context(std::move(context)),
        tls(std::move(socket), *this->context),
        deadline(tls.socket().get_executor()) {}

  // From now on, what is outstanding on the socket ends with operation_aborted after `timeout`
  // (and outcome() says timeout): the deadline of the handshake, an idle wait, or a request.
  void arm(std::chrono::steady_clock::duration timeout) {
    timed_out = false;
    deadline.expires_after(timeout);
    deadline.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      const auto self = weak.lock();
      if (ec || !self) return;
      self->timed_out = true;
      self->tls.cancel();
    });
  }
  // An operation's error, with an abort caused by the deadline told apart as timeout.
  boost::system::error_code outcome(boost::system::error_code ec) const {
    return ec == asio::error::operation_aborted && timed_out ? beast::error::timeout : ec;
  }

  // Idle (before the first byte of a handshake or a request) since this steady-clock time in
  // nanoseconds; 0 while busy. Read by the accept loop to pick whom to close at the limit.
  void mark_idle(bool is_idle) {
    idle_since.store(is_idle ? now_ns() : 0, std::memory_order_relaxed);
  }

  std::shared_ptr<asio::ssl::context> context;  // the pair it began with, even after a reload
  net::TlsSocket tls;
  asio::steady_timer deadline;
  asio::ip::address peer;            // the TCP peer: the load balancer's address behind one
  IpAddress client;                  // the peer, or the client a trusted PROXY header named
  asio::ip::address client_address;  // `client`, for RequestContext::peer
  std::string limit_key;             // what per-address limits counted it under; "" when exempt
  std::atomic<std::int64_t> idle_since{now_ns()};
  bool evicted = false;  // under the server's mutex
  // Only touched on the session's strand.
  bool idle = true;       // waiting for the first byte of a request: safe to close at shutdown
  bool draining = false;  // finish the current request, then close
  bool closing = false;   // its work is done; only the TLS goodbye is left
  bool timed_out = false;
};

// One request and its answer: lives only while a request is being served.
struct HttpsServer::Exchange {
  RequestParser parser;
  std::optional<Response> refused;
  bool answered_early = false;  // by the route's header check
  bool body_unread = false;     // answered without reading an announced body: close after
  bool drain = false;           // answered from the header: read and drop the small body after
  std::string_view route = "unmatched";
  std::chrono::steady_clock::time_point started;
};

HttpsServer::HttpsServer(asio::io_context& ioc, const ListenerTls& tls, ServerOptions options,
                         const Router& router, ServerMetrics& metrics)
    : ioc_(ioc),
      tls_(tls),
      options_(std::move(options)),
      router_(router),
      metrics_(metrics),
      acceptor_(asio::make_strand(ioc)),
      new_connections_(options_.connection_burst_per_address,
                       options_.connections_per_second_per_address, 100000) {}

HttpsServer::~HttpsServer() = default;

Status HttpsServer::listen() {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(options_.bind_address, ec);
  if (ec)
    return make_error(Errc::invalid_argument,
                      "listener.bind_address: " + options_.bind_address + " is not an IP address");
  const tcp::endpoint endpoint{address, options_.port};
  const std::string where = options_.bind_address + ":" + std::to_string(options_.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::io, "cannot listen on " + where + ": " + ec.message());
  port_ = acceptor_.local_endpoint().port();
  return {};
}

void HttpsServer::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::error("http.accept_loop_failed", {{"error", ex.what()}});
    }
  });
}

std::size_t HttpsServer::active_connections() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

bool HttpsServer::evict_idle_locked() {
  // A linear walk, only at the limit: cheaper than keeping an ordered index on every request.
  std::shared_ptr<Session> oldest;
  std::int64_t oldest_since = 0;
  for (auto& [raw, weak] : sessions_) {
    const std::int64_t since = raw->idle_since.load(std::memory_order_relaxed);
    if (since == 0 || raw->evicted || (oldest && since >= oldest_since)) continue;
    if (auto s = weak.lock()) {
      oldest = std::move(s);
      oldest_since = since;
    }
  }
  if (!oldest) return false;
  oldest->evicted = true;
  ++evicting_;
  metrics_.connection_evicted();
  asio::post(oldest->tls.socket().get_executor(), [oldest] {
    // Bytes already waiting mean a request has arrived: it is served, then the connection closes.
    // (idle_since is cleared on this strand as soon as a byte arrives.)
    oldest->draining = true;
    if (oldest->idle_since.load(std::memory_order_relaxed) != 0) oldest->tls.cancel();
  });
  return true;
}

asio::awaitable<void> HttpsServer::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(ioc_), nothrow);
    if (ec) {
      if (!acceptor_.is_open() || ec == asio::error::operation_aborted) break;
      log::warn("http.accept_failed", {{"error", ec.message()}});
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space) {
        // Out of file descriptors: pause instead of spinning on the same error.
        asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(nothrow);
      }
      continue;
    }
    std::shared_ptr<Session> session;
    {
      std::lock_guard lock(mutex_);
      if (shutting_down_) break;
      if (sessions_.size() - evicting_ >= options_.max_connections && !evict_idle_locked()) {
        metrics_.connection_rejected("max_connections");
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      boost::system::error_code peer_ec;
      // Small request/reply exchanges (a TLS ticket, then the reply) must not wait on delayed ACKs.
      socket.set_option(tcp::no_delay(true), peer_ec);
      const auto remote = socket.remote_endpoint(peer_ec);
      session = std::make_shared<Session>(std::move(socket), tls_.current());
      if (!peer_ec) session->peer = remote.address();
      session->client = to_ip(session->peer);
      session->client_address = session->peer;
      sessions_.emplace(session.get(), session);
    }
    metrics_.connection_opened();
    auto executor = session->tls.socket().get_executor();
    asio::co_spawn(executor, serve(session), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::error("http.session_failed", {{"error", ex.what()}});
      }
    });
  }
}

void HttpsServer::forget(Session* session) {
  bool drained = false;
  {
    std::lock_guard lock(mutex_);
    sessions_.erase(session);
    if (session->evicted) --evicting_;
    if (!session->limit_key.empty()) {
      if (auto it = per_address_.find(session->limit_key);
          it != per_address_.end() && --it->second == 0) {
        per_address_.erase(it);
      }
    }
    drained = shutting_down_ && sessions_.empty();
  }
  metrics_.connection_closed();
  if (drained) finish_drain();
}

bool HttpsServer::admit(Session& s) {
  if (options_.max_connections_per_address == 0 && options_.connections_per_second_per_address <= 0)
    return true;  // no per-address limit: nothing to count
  const bool via_proxy = any_contains(options_.trusted_proxies, to_ip(s.peer));
  if (via_proxy && !options_.proxy_protocol) return true;   // the balancer's own limits apply
  if (via_proxy && s.client == to_ip(s.peer)) return true;  // LOCAL: the balancer's check
  const std::string key = address_limit_key(s.client);
  const char* refused = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto& open = per_address_[key];
    if (options_.max_connections_per_address > 0 && open >= options_.max_connections_per_address) {
      refused = "per_address";
    } else if (options_.connections_per_second_per_address > 0 &&
               new_connections_.take(key, TokenBucketLimiter::Clock::now())) {
      refused = "address_rate";
    } else {
      ++open;
      s.limit_key = key;
    }
    if (open == 0) per_address_.erase(key);
  }
  if (!refused) return true;
  metrics_.connection_rejected(refused);
  log::debug("http.connection_refused", {{"reason", refused}, {"client", s.client.to_string()}});
  return false;
}

asio::awaitable<bool> HttpsServer::read_proxy_header(Session& s) {
  if (!options_.proxy_protocol || !any_contains(options_.trusted_proxies, to_ip(s.peer))) {
    co_return true;
  }
  // The header comes before the TLS ClientHello: peek until it is whole, then take exactly it,
  // so that the TLS layer starts at the first byte after it.
  std::array<std::uint8_t, kMaxProxyHeader> peeked;
  for (;;) {
    auto ec = s.outcome(co_await s.tls.async_wait_readable());
    if (ec) co_return false;
    std::size_t n = s.tls.socket().receive(asio::buffer(peeked), tcp::socket::message_peek, ec);
    if (ec || n == 0) co_return false;
    ProxyHeader header;
    const auto parsed = parse_proxy_header(std::span(peeked.data(), n), header);
    if (parsed == ProxyParse::invalid) {
      metrics_.handshake_failed();
      log::info("http.proxy_header_invalid", {{"peer", s.peer.to_string()}});
      co_return false;
    }
    if (parsed == ProxyParse::need_more) {
      // Part of a header, then nothing: the handshake deadline ends the wait (the pause below is
      // not a socket operation, so the deadline's cancel does not reach it).
      if (n == peeked.size() || s.timed_out) co_return false;
      // Not whole yet: wait a moment for the rest rather than spin on the same bytes.
      asio::steady_timer pause(s.tls.socket().get_executor(), std::chrono::milliseconds(5));
      co_await pause.async_wait(nothrow);
      continue;
    }
    asio::read(s.tls.socket(), asio::buffer(peeked.data(), header.length), ec);
    if (ec) co_return false;
    if (header.source) {
      s.client = *header.source;
      boost::system::error_code bad;
      const auto named = asio::ip::make_address(header.source->to_string(), bad);
      if (!bad) s.client_address = named;
    }
    co_return true;
  }
}

asio::awaitable<void> HttpsServer::serve(std::shared_ptr<Session> s) {
  // A coroutine abandoned at the shutdown deadline is destroyed with the io_context, which may
  // outlive this server: only report back while the server exists.
  struct Forget {
    HttpsServer* server;
    std::weak_ptr<int> server_alive;
    Session* session;
    ~Forget() {
      if (!server_alive.expired()) server->forget(session);
    }
  } forget_on_exit{this, lifetime_, s.get()};

  Next how = Next::close_abruptly;
  s->arm(options_.handshake_timeout);
  if (co_await read_proxy_header(*s) && admit(*s) && co_await handshake(s)) {
    how = co_await serve_connection(s);
  }
  s->closing = true;
  s->mark_idle(false);
  if (how == Next::close_politely) co_await linger(s);
  s->deadline.cancel();
  s->tls.close();
}

asio::awaitable<void> HttpsServer::linger(std::shared_ptr<Session> s) {
  // close_notify and FIN, then read until the peer's EOF (2 s at most): closing with its bytes
  // unread would reset the connection and could destroy the answer it has not read yet.
  s->tls.shutdown();
  boost::system::error_code ec;
  s->tls.socket().shutdown(tcp::socket::shutdown_send, ec);
  s->arm(std::chrono::seconds(2));
  std::array<char, 256> sink;
  while (!ec) {
    std::tie(ec, std::ignore) = co_await s->tls.socket().async_receive(asio::buffer(sink), nothrow);
  }
}

asio::awaitable<bool> HttpsServer::handshake(std::shared_ptr<Session> s) {
  // The handshake counts as idle until its first byte: a connection that has not sent anything
  // may be dropped. Nothing but the socket is held until the client's first byte arrives. The
  // deadline was armed when the connection was accepted (before any PROXY header).
  auto ec = s->outcome(co_await s->tls.async_wait_readable());
  s->mark_idle(false);
  if (!ec) ec = s->outcome(co_await s->tls.async_handshake());
  if (!ec) co_return true;
  metrics_.handshake_failed();
  log::debug("http.tls_handshake_failed", {{"peer", s->peer.to_string()}, {"error", ec.message()}});
  co_return false;
}

asio::awaitable<HttpsServer::Next> HttpsServer::serve_connection(std::shared_ptr<Session> s) {
  beast::flat_buffer buffer;  // holds a pipelined request's bytes between requests
  for (;;) {
    if (s->draining) co_return Next::close_politely;
    s->idle = buffer.size() == 0;
    if (s->idle && !s->tls.has_buffered_input()) {
      // Between requests nothing is held but the socket, the SSL and the coroutine frames.
      buffer = beast::flat_buffer();
      s->tls.release_idle_buffers();
      s->arm(options_.idle_timeout);
      s->mark_idle(true);
      const auto ec = s->outcome(co_await s->tls.async_wait_readable());
      s->mark_idle(false);
      if (ec == asio::error::operation_aborted && s->draining) co_return Next::close_politely;
      if (ec) co_return Next::close_abruptly;
    }
    // From the request's first byte, its header must be complete within header_timeout: a
    // client sending a byte at a time cannot hold the connection for the idle timeout.
    s->arm(options_.header_timeout);
    if (const Next next = co_await serve_request(s, buffer); next != Next::request) co_return next;
  }
}

asio::awaitable<HttpsServer::Next> HttpsServer::serve_request(std::shared_ptr<Session> s,
                                                              beast::flat_buffer& buffer) {
  Exchange ex;
  if (const Next next = co_await read_request(*s, buffer, ex); next != Next::request) {
    co_return next;
  }
  Response res = co_await respond(*s, ex);
  if (s->draining || ex.body_unread) res.keep_alive(false);
  s->arm(options_.request_timeout);
  boost::system::error_code wec;
  {
    const std::string bytes = serialize(res);
    wec = s->outcome(co_await s->tls.async_write_all(bytes));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ex.started).count();
  metrics_.request_done(ex.route, static_cast<unsigned>(res.result_int()), seconds);
  log_answer(*s, ex, res);
  if (wec) co_return Next::close_abruptly;
  if (!res.keep_alive()) co_return Next::close_politely;
  if (ex.drain) {
    const auto dec =
        s->outcome(co_await async_read_request(s->tls, buffer, ex.parser, ReadUntil::message));
    if (dec) co_return Next::close_abruptly;
  }
  co_return Next::request;
}

void HttpsServer::refuse(Exchange& ex, std::string_view reason, beast_http::status status,
                         std::string_view code, std::string_view message) {
  metrics_.request_refused(reason);
  ex.refused = refusal(11, status, code, message);
}

void HttpsServer::refuse_body_too_large(Exchange& ex, std::uint64_t limit) {
  refuse(ex, "body_limit", beast_http::status::payload_too_large, "too_large",
         "request body exceeds " + std::to_string(limit) + " bytes");
}

void HttpsServer::refuse_malformed(Exchange& ex, const boost::system::error_code& ec) {
  refuse(ex, "bad_request", beast_http::status::bad_request, "bad_request",
         ec == beast_http::error::bad_method && !ex.parser.got_some()
             ? std::string("not an HTTP/1.1 request")
             : "malformed HTTP request: " + ec.message());
}

asio::awaitable<HttpsServer::Next> HttpsServer::read_request(Session& s, beast::flat_buffer& buffer,
                                                             Exchange& ex) {
  auto& parser = ex.parser;
  parser.header_limit(options_.max_header_bytes);
  // The body's limit is the route's, known once the header is: Content-Length is judged below.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  const auto hec = s.outcome(co_await async_read_request(s.tls, buffer, parser, ReadUntil::header));
  s.idle = false;
  ex.started = std::chrono::steady_clock::now();
  if (hec == beast_http::error::body_limit) {
    // The parser checks Content-Length against the limit as soon as the headers are complete.
    refuse_body_too_large(ex, options_.max_body_bytes);
  } else if (hec == beast_http::error::header_limit) {
    refuse(ex, "header_limit", beast_http::status::request_header_fields_too_large,
           "headers_too_large",
           "request headers exceed " + std::to_string(options_.max_header_bytes) + " bytes");
  } else if (is_malformed_http(hec)) {
    refuse_malformed(ex, hec);
  } else if (hec == beast::error::timeout && buffer.size() > 0) {
    // Part of a header, then nothing for header_timeout: say so, then close.
    refuse(ex, "header_timeout", beast_http::status::request_timeout, "header_timeout",
           "the request's header did not arrive within " +
               std::to_string(options_.header_timeout.count()) + " ms");
  } else if (hec) {
    // End of stream, timeout, reset or shutdown: nothing to answer. A connection closed for
    // shutdown still gets a TLS close_notify.
    co_return hec == asio::error::operation_aborted&& s.draining ? Next::close_politely
                                                                 : Next::close_abruptly;
  }
  if (ex.refused) {
    ex.body_unread = true;
    co_return Next::request;
  }
  s.arm(options_.request_timeout);
  co_return co_await read_body(s, buffer, ex);
}

asio::awaitable<HttpsServer::Next> HttpsServer::read_body(Session& s, beast::flat_buffer& buffer,
                                                          Exchange& ex) {
  auto& parser = ex.parser;
  const auto& header = parser.get();
  if (!acceptable_framing(header)) {
    refuse(ex, "framing", beast_http::status::bad_request, "bad_request",
           "Transfer-Encoding must be exactly 'chunked', without Content-Length");
    ex.body_unread = true;
    co_return Next::request;
  }
  const auto match = router_.match(header.method(), header.target());
  ex.route = match.route;
  const bool body_pending = !parser.is_done();
  const bool expects_continue = beast::iequals(header[beast_http::field::expect], "100-continue");
  // Answered from the header alone: a small body already on its way is read and dropped after
  // the answer so that the connection stays open; anything else closes it.
  const auto answer_early = [&] {
    const auto length = parser.content_length();
    if (body_pending && !expects_continue && length && *length <= kDrainBytes) {
      ex.drain = true;
    } else {
      ex.body_unread = body_pending;
    }
  };
  if (!match.handler) {
    answer_early();  // 404 or 405
    co_return Next::request;
  }
  const std::uint64_t limit = match.options->max_body_bytes.value_or(
      is_get_or_head(header.method()) ? 0 : options_.max_body_bytes);
  parser.body_limit(limit);
  if (const auto length = parser.content_length(); length && *length > limit) {
    refuse_body_too_large(ex, limit);
    ex.body_unread = true;
    co_return Next::request;
  }
  if (match.options->header_check) {
    RequestContext ctx{s.client_address, match.route, match.path_rest, port_};
    if (auto answer = co_await match.options->header_check(header, ctx)) {
      ex.refused = std::move(*answer);
      ex.answered_early = true;
      answer_early();
      co_return Next::request;
    }
  }
  if (body_pending && expects_continue) {
    // .NET clients (Exchange among them) wait for this before sending the body.
    beast_http::response<beast_http::empty_body> cont{beast_http::status::continue_,
                                                      header.version()};
    const std::string bytes = serialize(cont);
    if (s.outcome(co_await s.tls.async_write_all(bytes))) co_return Next::close_abruptly;
  }
  const auto bec =
      s.outcome(co_await async_read_request(s.tls, buffer, parser, ReadUntil::message));
  if (bec == beast_http::error::body_limit) {
    refuse_body_too_large(ex, limit);
  } else if (is_malformed_http(bec)) {
    refuse_malformed(ex, bec);
  } else if (bec) {
    if (bec == beast::error::timeout) metrics_.request_refused("timeout");
    co_return Next::close_abruptly;
  }
  if (ex.refused) ex.body_unread = true;
  co_return Next::request;
}

asio::awaitable<Response> HttpsServer::respond(Session& s, Exchange& ex) {
  if (ex.refused) co_return std::move(*ex.refused);
  {
    // No route: answered from the header, the parser kept (a small body may still be drained).
    const auto& header = ex.parser.get();
    const auto match = router_.match(header.method(), header.target());
    if (!match.handler) {
      Response res = match.allow.empty()
                         ? refusal(header.version(), beast_http::status::not_found, "not_found",
                                   "no such resource")
                         : refusal(header.version(), beast_http::status::method_not_allowed,
                                   "method_not_allowed", "allowed: " + match.allow);
      if (!match.allow.empty()) res.set(beast_http::field::allow, match.allow);
      res.keep_alive(wants_keep_alive(header));
      co_return res;
    }
  }
  Request req = ex.parser.release();
  const auto match = router_.match(req.method(), req.target());
  if (match.handler) {
    RequestContext ctx{s.client_address, match.route, match.path_rest, port_};
    try {
      co_return co_await (*match.handler)(req, ctx);
    } catch (const std::exception& e) {
      log::error("http.handler_failed", {{"route", match.route}, {"error", e.what()}});
    }
  }
  co_return refusal(req.version(), beast_http::status::internal_server_error, "internal_error",
                    "the server failed to handle this request; it has been logged");
}

void HttpsServer::log_answer(const Session& s, const Exchange& ex, const Response& res) {
  if (res.result_int() >= 500) {
    log::warn("http.server_error",
              {{"route", ex.route}, {"status", res.result_int()}, {"peer", s.peer.to_string()}});
  } else if ((ex.refused && !ex.answered_early) || ex.route == "unmatched" ||
             res.result_int() == 405) {
    // Refused before any handler: limits, malformed HTTP, unknown path or method. The path is
    // not logged (callback paths carry secrets); the route name and status say enough.
    refused_log_.write(
        log::Level::info, "http.refused",
        {{"route", ex.route}, {"status", res.result_int()}, {"peer", s.peer.to_string()}});
  }
}

void HttpsServer::close_sessions(bool only_idle) {
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard lock(mutex_);
    for (auto& [raw, weak] : sessions_) {
      if (auto s = weak.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) {
    asio::post(s->tls.socket().get_executor(), [this, s, only_idle] {
      s->draining = true;
      if (only_idle) {
        // Bytes already waiting mean a request has arrived: serve it rather than drop it.
        boost::system::error_code ec;
        const bool request_waiting =
            s->tls.socket().available(ec) > 0 || s->tls.has_buffered_input();
        if (!s->idle || request_waiting) return;
      }
      if (!only_idle && !s->idle && !s->closing) {
        std::lock_guard lock(mutex_);
        ++forced_;
      }
      s->tls.cancel();
      if (!only_idle) s->tls.close();
    });
  }
}

void HttpsServer::shutdown(std::chrono::milliseconds grace, std::function<void(std::size_t)> done) {
  bool already_empty = false;
  {
    std::lock_guard lock(mutex_);
    if (shutting_down_) return;
    shutting_down_ = true;
    already_empty = sessions_.empty();
    if (!already_empty) on_drained_ = std::move(done);
  }
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  if (already_empty) {
    if (done) done(0);
    return;
  }
  close_sessions(/*only_idle=*/true);
  grace_timer_ = std::make_unique<asio::steady_timer>(acceptor_.get_executor(), grace);
  grace_timer_->async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    close_sessions(/*only_idle=*/false);
    // Closed sockets end most sessions at once; a handler still suspended (say, on a database
    // call) cannot be interrupted, so the drain is declared over shortly after regardless.
    grace_timer_->expires_after(std::chrono::milliseconds(250));
    grace_timer_->async_wait([this](boost::system::error_code ec2) {
      if (!ec2) finish_drain();
    });
  });
}

void HttpsServer::finish_drain() {
  std::function<void(std::size_t)> done;
  std::size_t forced = 0;
  {
    std::lock_guard lock(mutex_);
    if (!on_drained_) return;
    done = std::move(on_drained_);
    on_drained_ = nullptr;
    forced = forced_;
  }
  done(forced);
}

}  // namespace mp::http
