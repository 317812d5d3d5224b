// The region's HTTPS server: one coroutine per connection on its own strand, limits on every
// read, and a graceful shutdown that lets requests in flight finish within a deadline.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/result.hpp"
#include "http/listener_tls.hpp"
#include "http/router.hpp"
#include "http/server_metrics.hpp"

namespace mp::http {

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint64_t max_body_bytes = 1024 * 1024;
  std::uint32_t max_header_bytes = 16 * 1024;
  std::uint32_t max_connections = 10000;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds request_timeout{15000};
  std::chrono::milliseconds idle_timeout{60000};
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
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(std::shared_ptr<Session> session);
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
  bool shutting_down_ = false;
  std::size_t forced_ = 0;
  std::function<void(std::size_t)> on_drained_;
  std::unique_ptr<boost::asio::steady_timer> grace_timer_;
  std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);  // sessions hold a weak_ptr to it
};

}  // namespace mp::http
