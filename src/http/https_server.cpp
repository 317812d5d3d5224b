// Accept loop and per-connection coroutine of HttpsServer.
#include "http/https_server.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <nlohmann/json.hpp>

#include "common/log.hpp"

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

}  // namespace

struct HttpsServer::Session {
  Session(tcp::socket socket, std::shared_ptr<asio::ssl::context> context)
      : tls(std::move(context)), stream(std::move(socket), *tls) {}
  std::shared_ptr<asio::ssl::context> tls;  // the pair it began with, even after a reload
  beast::ssl_stream<beast::tcp_stream> stream;
  asio::ip::address peer;
  // Both only touched on the session's strand.
  bool idle = true;       // waiting for the first byte of a request: safe to close at shutdown
  bool draining = false;  // finish the current request, then close
  bool closing = false;   // its work is done; only the TLS goodbye is left
};

HttpsServer::HttpsServer(asio::io_context& ioc, const ListenerTls& tls, ServerOptions options,
                         const Router& router, ServerMetrics& metrics)
    : ioc_(ioc),
      tls_(tls),
      options_(std::move(options)),
      router_(router),
      metrics_(metrics),
      acceptor_(asio::make_strand(ioc)) {}

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
      if (sessions_.size() >= options_.max_connections) {
        metrics_.connection_rejected();
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
      sessions_.emplace(session.get(), session);
    }
    metrics_.connection_opened();
    auto executor = session->stream.get_executor();
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
    drained = shutting_down_ && sessions_.empty();
  }
  metrics_.connection_closed();
  if (drained) finish_drain();
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

  auto& tcp_layer = beast::get_lowest_layer(s->stream);
  // The handshake counts as idle: a connection that has not sent a request yet may be dropped.
  tcp_layer.expires_after(options_.handshake_timeout);
  if (auto [ec] = co_await s->stream.async_handshake(asio::ssl::stream_base::server, nothrow); ec) {
    metrics_.handshake_failed();
    log::debug("http.tls_handshake_failed",
               {{"peer", s->peer.to_string()}, {"error", ec.message()}});
    co_return;
  }

  beast::flat_buffer buffer;
  bool close_politely = true;
  for (;;) {
    if (s->draining) break;
    s->idle = buffer.size() == 0;
    tcp_layer.expires_after(options_.idle_timeout);
    beast_http::request_parser<beast_http::string_body> parser;
    parser.header_limit(options_.max_header_bytes);
    parser.body_limit(options_.max_body_bytes);

    auto [hec, hn] = co_await beast_http::async_read_header(s->stream, buffer, parser, nothrow);
    s->idle = false;
    std::optional<Response> refused;
    if (hec == beast_http::error::body_limit) {
      // The parser checks Content-Length against the limit as soon as the headers are complete.
      metrics_.request_refused("body_limit");
      refused =
          refusal(parser.get().version(), beast_http::status::payload_too_large, "body_too_large",
                  "request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes");
    } else if (hec == beast_http::error::header_limit) {
      metrics_.request_refused("header_limit");
      refused =
          refusal(11, beast_http::status::request_header_fields_too_large, "headers_too_large",
                  "request headers exceed " + std::to_string(options_.max_header_bytes) + " bytes");
    } else if (is_malformed_http(hec)) {
      metrics_.request_refused("bad_request");
      refused = refusal(11, beast_http::status::bad_request, "bad_request",
                        "malformed HTTP request: " + hec.message());
    } else if (hec) {
      // End of stream, timeout, reset or shutdown: nothing to answer.
      if (hec == beast::error::timeout && buffer.size() > 0) metrics_.request_refused("timeout");
      // A connection closed for shutdown still gets a TLS close_notify; a timed-out one does not.
      close_politely =
          hec == asio::error::operation_aborted ? s->draining : hec != beast::error::timeout;
      break;
    }

    const auto started = std::chrono::steady_clock::now();
    std::string_view route = "unmatched";
    if (!refused) {
      tcp_layer.expires_after(options_.request_timeout);
      const auto& header = parser.get();
      const auto length = parser.content_length();
      if (length && *length > options_.max_body_bytes) {
        metrics_.request_refused("body_limit");
        refused =
            refusal(header.version(), beast_http::status::payload_too_large, "body_too_large",
                    "request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes");
      } else if (beast::iequals(header[beast_http::field::expect], "100-continue")) {
        // .NET clients (Exchange among them) wait for this before sending the body.
        beast_http::response<beast_http::empty_body> cont{beast_http::status::continue_,
                                                          header.version()};
        if (auto [cec, cn] = co_await beast_http::async_write(s->stream, cont, nothrow); cec) break;
      }
    }
    if (!refused) {
      auto [bec, bn] = co_await beast_http::async_read(s->stream, buffer, parser, nothrow);
      if (bec == beast_http::error::body_limit) {
        metrics_.request_refused("body_limit");
        refused =
            refusal(parser.get().version(), beast_http::status::payload_too_large, "body_too_large",
                    "request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes");
      } else if (is_malformed_http(bec)) {
        metrics_.request_refused("bad_request");
        refused = refusal(parser.get().version(), beast_http::status::bad_request, "bad_request",
                          "malformed HTTP request: " + bec.message());
      } else if (bec) {
        if (bec == beast::error::timeout) metrics_.request_refused("timeout");
        close_politely = false;
        break;
      }
    }

    Response res;
    if (refused) {
      res = std::move(*refused);
    } else {
      Request req = parser.release();
      const auto match = router_.match(req.method(), req.target());
      route = match.route;
      if (match.handler) {
        RequestContext ctx{s->peer, match.route, match.path_rest, port_};
        try {
          res = co_await (*match.handler)(req, ctx);
        } catch (const std::exception& e) {
          log::error("http.handler_failed", {{"route", match.route}, {"error", e.what()}});
          res = refusal(req.version(), beast_http::status::internal_server_error, "internal_error",
                        "the server failed to handle this request; it has been logged");
        }
      } else if (!match.allow.empty()) {
        res = refusal(req.version(), beast_http::status::method_not_allowed, "method_not_allowed",
                      "allowed: " + match.allow);
        res.set(beast_http::field::allow, match.allow);
        res.keep_alive(req.keep_alive());
      } else {
        res =
            refusal(req.version(), beast_http::status::not_found, "not_found", "no such resource");
        res.keep_alive(req.keep_alive());
      }
    }
    if (s->draining) res.keep_alive(false);
    tcp_layer.expires_after(options_.request_timeout);
    auto [wec, wn] = co_await beast_http::async_write(s->stream, res, nothrow);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    metrics_.request_done(route, static_cast<unsigned>(res.result_int()), seconds);
    if (res.result_int() >= 500) {
      log::warn("http.server_error",
                {{"route", route}, {"status", res.result_int()}, {"peer", s->peer.to_string()}});
    } else if (refused || route == "unmatched" || res.result_int() == 405) {
      // Refused before any handler: limits, malformed HTTP, unknown path or method. The path is
      // not logged (callback paths carry secrets); the route name and status say enough.
      log::info("http.refused",
                {{"route", route}, {"status", res.result_int()}, {"peer", s->peer.to_string()}});
    }
    if (wec) {
      close_politely = false;
      break;
    }
    if (!res.keep_alive()) break;
  }

  s->closing = true;
  if (close_politely) {
    tcp_layer.expires_after(std::chrono::seconds(2));
    co_await s->stream.async_shutdown(nothrow);
  }
  boost::system::error_code ignored;
  tcp_layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
  tcp_layer.close();
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
    asio::post(s->stream.get_executor(), [this, s, only_idle] {
      s->draining = true;
      if (only_idle) {
        // Bytes already waiting mean a request has arrived: serve it rather than drop it.
        boost::system::error_code ec;
        const bool request_waiting = beast::get_lowest_layer(s->stream).socket().available(ec) > 0;
        if (!s->idle || request_waiting) return;
      }
      if (!only_idle && !s->idle && !s->closing) {
        std::lock_guard lock(mutex_);
        ++forced_;
      }
      beast::get_lowest_layer(s->stream).cancel();
      if (!only_idle) beast::get_lowest_layer(s->stream).close();
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
