// The region's HTTPS server: one coroutine per connection on its own strand, limits on every
// read, and a graceful shutdown that lets requests in flight finish within a deadline. An idle
// connection holds its socket, its SSL and a small coroutine frame: no TLS, read or body buffer
// (see net::TlsSocket), and before its first byte no SSL either.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/cidr.hpp"
#include "common/log.hpp"
#include "common/result.hpp"
#include "common/token_bucket.hpp"
#include "http/listener_tls.hpp"
#include "http/router.hpp"
#include "http/server_metrics.hpp"

namespace mp::http {

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint64_t max_body_bytes = 1024 * 1024;  // routes may set less (RouteOptions)
  std::uint32_t max_header_bytes = 16 * 1024;
  // At the limit the longest idle connection (keep-alive, or not yet sent a byte) is closed to
  // admit the new one; only when none is idle is the new one refused.
  std::uint32_t max_connections = 10000;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds header_timeout{10000};   // a request's first byte to its last header
  std::chrono::milliseconds request_timeout{15000};  // then its body, and writing the answer
  std::chrono::milliseconds idle_timeout{60000};     // keep-alive wait for the next request
  // Per client address (IPv4, or IPv6 /64): connections open at once, and new connections as a
  // token bucket (burst, then per second). 0 turns a limit off. Load balancers in
  // trusted_proxies are exempt unless they name the client with the PROXY protocol.
  std::uint32_t max_connections_per_address = 256;
  std::uint32_t connection_burst_per_address = 200;
  double connections_per_second_per_address = 50;
  std::vector<Cidr> trusted_proxies;
  // Connections from trusted_proxies begin with a PROXY protocol header (v1 or v2) naming the
  // client; others never may.
  bool proxy_protocol = false;
};

class HttpsServer {
 public:
  // Each accepted connection takes tls.current() and keeps it until it ends.
  HttpsServer(boost::asio::io_context& ioc, const ListenerTls& tls, ServerOptions options,
              const Router& router, ServerMetrics& metrics);
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  Status listen();  // binds; a taken port is an error naming the address
  std::uint16_t local_port() const noexcept { return port_; }
  void start();  // starts accepting
  // Stops accepting and closes idle connections; requests in flight get `grace` to finish, then
  // their connections are closed. `done(forced)` runs once: when every connection is gone, or
  // shortly after the deadline, with the number of connections that were closed while busy
  // (their coroutines end when the io_context does).
  void shutdown(std::chrono::milliseconds grace, std::function<void(std::size_t forced)> done);
  std::size_t active_connections() const;

 private:
  struct Session;
  enum class Next { request, close_politely, close_abruptly };
  struct Exchange;
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(std::shared_ptr<Session> session);
  boost::asio::awaitable<bool> handshake(std::shared_ptr<Session> session);
  // Reads a PROXY header when the peer must send one; false: close the connection.
  boost::asio::awaitable<bool> read_proxy_header(Session& session);
  // Per-address limits; false: refused (counted and logged).
  bool admit(Session& session);
  // At max_connections: asks the longest idle session to close; false when none is idle.
  bool evict_idle_locked();
  boost::asio::awaitable<void> linger(std::shared_ptr<Session> session);
  boost::asio::awaitable<Next> serve_connection(std::shared_ptr<Session> session);
  boost::asio::awaitable<Next> serve_request(std::shared_ptr<Session> session,
                                             boost::beast::flat_buffer& buffer);
  // The request's header, then read_body; a refusal answered before any handler is left in
  // the exchange.
  boost::asio::awaitable<Next> read_request(Session& session, boost::beast::flat_buffer& buffer,
                                            Exchange& exchange);
  // After a complete header: the route's body limit, its header check, 100-continue, the body.
  boost::asio::awaitable<Next> read_body(Session& session, boost::beast::flat_buffer& buffer,
                                         Exchange& exchange);
  // A refusal answered before any handler, counted under `reason`.
  void refuse(Exchange& exchange, std::string_view reason, boost::beast::http::status status,
              std::string_view code, std::string_view message);
  void refuse_body_too_large(Exchange& exchange, std::uint64_t limit);  // the one 413
  void refuse_malformed(Exchange& exchange, const boost::system::error_code& ec);
  boost::asio::awaitable<Response> respond(Session& session, Exchange& exchange);
  void log_answer(const Session& session, const Exchange& exchange, const Response& res);
  void forget(Session* session);
  void finish_drain();  // calls on_drained_ once
  void close_sessions(bool only_idle);

  boost::asio::io_context& ioc_;
  const ListenerTls& tls_;
  ServerOptions options_;
  const Router& router_;
  ServerMetrics& metrics_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;

  mutable std::mutex mutex_;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;
  std::size_t evicting_ = 0;  // sessions asked to close for a new one, still open
  std::unordered_map<std::string, std::uint32_t> per_address_;
  TokenBucketLimiter new_connections_;
  log::Throttle refused_log_;  // "http.refused": any client can cause it
  bool shutting_down_ = false;
  std::size_t forced_ = 0;
  std::function<void(std::size_t)> on_drained_;
  std::unique_ptr<boost::asio::steady_timer> grace_timer_;
  std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);  // sessions hold a weak_ptr to it
};

}  // namespace mp::http
