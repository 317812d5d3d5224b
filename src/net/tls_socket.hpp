// TlsSocket: a TCP socket and an OpenSSL SSL driven directly by coroutines, without the 4 × 17 KiB
// of buffers asio::ssl::stream keeps per connection.
//
// OpenSSL reads the socket itself (a socket BIO on the non-blocking descriptor, read-ahead on) and
// writes its records into `pending_`, which we hand to the socket with asio::async_write. So
// SSL_write never wants to write, and the only thing we wait for is "readable" (see
// async_wait_readable: a 1-byte MSG_PEEK receive, which Asio tries at once and queues under the
// descriptor's lock, so no readiness edge is lost when several threads run the io_context). Idle,
// a connection holds no TLS buffer: OpenSSL's are released (SSL_MODE_RELEASE_BUFFERS), ours are
// given back by release_idle_buffers().
//
// Client (the APNs connections: SSL_connect) or server (the HTTPS listener: SSL_accept). A server
// socket is made from an accepted connection and creates its SSL only at async_handshake, so a peer
// that has sent nothing costs the descriptor and this object: wait with async_wait_readable first.
//
// All members are called on the socket's executor (a strand). One reader (async_read_some) and one
// writer (async_write_all) may be outstanding at the same time; SSL calls never overlap because
// they run on the strand, and ciphertext produced by the reader (alerts, TLS 1.3 KeyUpdate
// answers) goes out through whoever flushes first. Errors come as Asio's: the OpenSSL error in
// asio::error::get_ssl_category(), asio::error::eof for close_notify,
// asio::ssl::error::stream_truncated for an EOF without it, socket errors as they are.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>

#include "common/openssl_handles.hpp"

namespace mp::net {

class TlsSocket {
 public:
  using Executor = boost::asio::any_io_executor;
  using error_code = boost::system::error_code;

  // A client SSL of `context` (which must outlive this). Throws std::bad_alloc if OpenSSL cannot
  // make one.
  TlsSocket(const Executor& executor, boost::asio::ssl::context& context);
  // The server side of an accepted connection; its SSL (of `context`, which must outlive this) is
  // made by async_handshake.
  TlsSocket(boost::asio::ip::tcp::socket accepted, boost::asio::ssl::context& context);
  TlsSocket(const TlsSocket&) = delete;
  TlsSocket& operator=(const TlsSocket&) = delete;

  boost::asio::ip::tcp::socket& socket() noexcept { return socket_; }
  // SNI, host check, ALPN, version; null for a server socket before async_handshake.
  SSL* native_handle() noexcept { return ssl_.get(); }

  // Client: on a connected socket, SSL_connect until done. Server verification is the context's
  // and the SSL's settings (set them before); the verify result is SSL_get_verify_result's.
  // Server: makes the SSL, then SSL_accept until done. Fails with no_memory if OpenSSL cannot.
  boost::asio::awaitable<error_code> async_handshake();
  // Some plaintext (at least 1 byte) into `buffer`.
  boost::asio::awaitable<std::tuple<error_code, std::size_t>> async_read_some(
      std::span<std::uint8_t> buffer);
  // All of `bytes` encrypted and written to the socket.
  boost::asio::awaitable<error_code> async_write_all(std::string_view bytes);
  // Writes what OpenSSL produced outside async_write_all (alerts, KeyUpdate answers).
  boost::asio::awaitable<error_code> async_flush();
  // Until the socket has something to read (or EOF); holds no buffer meanwhile.
  boost::asio::awaitable<error_code> async_wait_readable();

  // OpenSSL holds read bytes not yet given out: read before waiting for the socket.
  bool has_buffered_input() const;
  // Records wait to be written and no flush is running (that one would send them): call
  // async_flush.
  bool has_pending_output() const noexcept { return !pending_.empty() && !writing_; }
  // Our ciphertext buffers back to the allocator (when nothing is being written).
  void release_idle_buffers();
  // Best effort close_notify: queued and tried once without blocking; never waits.
  void shutdown();
  // Outstanding operations complete with operation_aborted; the socket stays open.
  void cancel();
  // Closes the socket; outstanding operations complete with operation_aborted.
  void close();

 private:
  enum class Want { read, done, failed };
  Want classify(int ret, error_code& ec);
  error_code make_server_ssl();

  boost::asio::ip::tcp::socket socket_;
  SslPtr ssl_;
  boost::asio::ssl::context* server_context_ = nullptr;  // a server socket's, until its SSL exists
  std::string pending_;           // ciphertext from OpenSSL, not handed to the socket yet
  std::string in_flight_;         // ciphertext an async_write is sending
  bool writing_ = false;          // someone flushes: pending_ is theirs to send
  bool no_close_notify_ = false;  // fatal TLS error (no SSL_shutdown then) or already sent
  std::uint8_t peek_ = 0;         // target of the readiness probe
};

}  // namespace mp::net
