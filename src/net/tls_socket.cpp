// TlsSocket: SSL_connect or SSL_accept, SSL_read/SSL_write over a socket BIO for input and our own
// output BIO.
#include "net/tls_socket.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <new>

namespace mp::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// Plaintext per SSL_write before its records go to the socket: bounds the ciphertext we hold.
constexpr std::size_t kWriteChunk = 64 * 1024;

// The output BIO appends every record to the std::string in its data pointer; it never blocks.
int out_write(BIO* bio, const char* data, int len) {
  BIO_clear_retry_flags(bio);
  if (len <= 0) return 0;
  try {
    static_cast<std::string*>(BIO_get_data(bio))->append(data, static_cast<std::size_t>(len));
  } catch (const std::bad_alloc&) {
    return -1;  // no exception through OpenSSL's frames
  }
  return len;
}

long out_ctrl(BIO*, int cmd, long, void*) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;  // OpenSSL flushes after handshake flights
}

int out_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int out_destroy(BIO*) {
  return 1;
}

const BIO_METHOD* out_method() {
  static const BioMethodPtr method = [] {
    BioMethodPtr m(BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mailpush tls out"));
    if (!m || BIO_meth_set_write(m.get(), out_write) != 1 ||
        BIO_meth_set_ctrl(m.get(), out_ctrl) != 1 ||
        BIO_meth_set_create(m.get(), out_create) != 1 ||
        BIO_meth_set_destroy(m.get(), out_destroy) != 1) {
      throw std::bad_alloc();
    }
    return m;
  }();
  return method.get();
}

boost::system::error_code ssl_error(unsigned long code) {
  return {static_cast<int>(code), asio::error::get_ssl_category()};
}

// The settings both roles share.
void configure(SSL* ssl) {
  SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
  // Idle, OpenSSL frees its record buffers (~34 KiB), whatever the context says.
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                        SSL_MODE_RELEASE_BUFFERS);
  // Whole socket reads into OpenSSL's (released when idle) buffer, not 5 bytes then the record.
  SSL_set_read_ahead(ssl, 1);
}

}  // namespace

TlsSocket::TlsSocket(const Executor& executor, asio::ssl::context& context)
    : socket_(executor), ssl_(SSL_new(context.native_handle())) {
  if (!ssl_) throw std::bad_alloc();
  SSL_set_connect_state(ssl_.get());
  configure(ssl_.get());
}

TlsSocket::TlsSocket(tcp::socket accepted, asio::ssl::context& context)
    : socket_(std::move(accepted)), server_context_(&context) {}

TlsSocket::error_code TlsSocket::make_server_ssl() {
  ssl_.reset(SSL_new(server_context_->native_handle()));
  if (!ssl_) return asio::error::no_memory;
  server_context_ = nullptr;
  SSL_set_accept_state(ssl_.get());
  configure(ssl_.get());
  return {};
}

TlsSocket::Want TlsSocket::classify(int ret, error_code& ec) {
  const int saved_errno = errno;
  if (ret > 0) return Want::done;
  const int err = SSL_get_error(ssl_.get(), ret);
  switch (err) {
    case SSL_ERROR_WANT_READ:
      return Want::read;
    case SSL_ERROR_ZERO_RETURN:
      ec = asio::error::eof;  // close_notify
      return Want::failed;
    case SSL_ERROR_SYSCALL:
      no_close_notify_ = true;
      if (const unsigned long code = ERR_get_error(); code != 0) {
        ec = ssl_error(code);
      } else if (saved_errno != 0) {
        ec = error_code(saved_errno, boost::system::system_category());
      } else {
        ec = asio::ssl::error::stream_truncated;
      }
      break;
    case SSL_ERROR_SSL: {
      no_close_notify_ = true;
      const unsigned long code = ERR_get_error();
      if (ERR_GET_LIB(code) == ERR_LIB_SSL &&
          ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        ec = asio::ssl::error::stream_truncated;
      } else {
        ec = code != 0 ? ssl_error(code) : error_code(asio::error::no_protocol_option);
      }
      break;
    }
    default:  // WANT_WRITE cannot happen (our output BIO never blocks); the rest are not ours
      no_close_notify_ = true;
      ec = asio::error::operation_not_supported;
      break;
  }
  ERR_clear_error();
  return Want::failed;
}

asio::awaitable<TlsSocket::error_code> TlsSocket::async_handshake() {
  error_code ec;
  if (server_context_ != nullptr) ec = make_server_ssl();
  if (!ec) socket_.non_blocking(true, ec);  // OpenSSL reads the descriptor itself
  if (ec) co_return ec;
  BioPtr in(BIO_new_socket(socket_.native_handle(), BIO_NOCLOSE));
  BioPtr out(BIO_new(out_method()));
  if (!in || !out) co_return error_code(asio::error::no_memory);
  BIO_set_data(out.get(), &pending_);
  SSL_set_bio(ssl_.get(), in.release(), out.release());  // the SSL owns both now
  for (;;) {
    if (!socket_.is_open()) co_return error_code(asio::error::operation_aborted);
    ERR_clear_error();
    const int ret = SSL_do_handshake(ssl_.get());  // SSL_connect or SSL_accept, by the state
    const Want want = classify(ret, ec);
    // What OpenSSL wrote goes out first: our flight, or the alert saying why it failed.
    const error_code written = co_await async_flush();
    if (want == Want::failed) co_return ec;
    if (written) co_return written;
    if (want == Want::done) co_return error_code{};
    ec = co_await async_wait_readable();
    if (ec) co_return ec;
  }
}

asio::awaitable<std::tuple<TlsSocket::error_code, std::size_t>> TlsSocket::async_read_some(
    std::span<std::uint8_t> buffer) {
  if (buffer.empty()) co_return std::tuple<error_code, std::size_t>{error_code{}, 0};
  for (;;) {
    if (!socket_.is_open()) {
      co_return std::tuple<error_code, std::size_t>{asio::error::operation_aborted, 0};
    }
    ERR_clear_error();
    std::size_t n = 0;
    const int ret = SSL_read_ex(ssl_.get(), buffer.data(), buffer.size(), &n);
    error_code ec;
    const Want want = classify(ret, ec);
    if (want == Want::done) co_return std::tuple<error_code, std::size_t>{error_code{}, n};
    if (want == Want::failed) co_return std::tuple<error_code, std::size_t>{ec, 0};
    // Records OpenSSL answered while reading (a TLS 1.3 KeyUpdate) go out before we sleep,
    // unless a flush is running: it sends them too.
    if (has_pending_output()) {
      ec = co_await async_flush();
      if (ec) co_return std::tuple<error_code, std::size_t>{ec, 0};
    }
    ec = co_await async_wait_readable();
    if (ec) co_return std::tuple<error_code, std::size_t>{ec, 0};
  }
}

asio::awaitable<TlsSocket::error_code> TlsSocket::async_write_all(std::string_view bytes) {
  while (!bytes.empty()) {
    if (!socket_.is_open()) co_return error_code(asio::error::operation_aborted);
    const std::size_t len = std::min(bytes.size(), kWriteChunk);
    ERR_clear_error();
    std::size_t n = 0;
    const int ret = SSL_write_ex(ssl_.get(), bytes.data(), len, &n);
    error_code ec;
    const Want want = classify(ret, ec);
    if (want == Want::failed) co_return ec;
    if (want == Want::done) bytes.remove_prefix(n);
    ec = co_await async_flush();
    if (ec) co_return ec;
    if (want == Want::read) {
      // Only a handshake message could make SSL_write read; retried with the same bytes.
      ec = co_await async_wait_readable();
      if (ec) co_return ec;
    }
  }
  co_return error_code{};
}

asio::awaitable<TlsSocket::error_code> TlsSocket::async_flush() {
  if (writing_) co_return error_code{};  // the running flush sends what we added
  writing_ = true;
  error_code ec;
  while (!pending_.empty() && !ec) {
    in_flight_.swap(pending_);
    auto [wec, n] = co_await asio::async_write(socket_, asio::buffer(in_flight_), nothrow);
    (void)n;
    ec = wec;
    in_flight_.clear();
  }
  writing_ = false;
  co_return ec;
}

asio::awaitable<TlsSocket::error_code> TlsSocket::async_wait_readable() {
  // A peek, not async_wait: Asio tries it at once and queues it under the descriptor's lock, so
  // data that arrived since OpenSSL's last read cannot be missed (epoll is edge-triggered).
  auto [ec, n] =
      co_await socket_.async_receive(asio::buffer(&peek_, 1), tcp::socket::message_peek, nothrow);
  (void)n;
  if (ec == asio::error::eof) co_return error_code{};  // SSL_read says how it ended
  co_return ec;
}

bool TlsSocket::has_buffered_input() const {
  return ssl_ && SSL_has_pending(ssl_.get()) == 1;
}

void TlsSocket::release_idle_buffers() {
  if (writing_) return;
  if (pending_.empty()) std::string().swap(pending_);
  std::string().swap(in_flight_);
}

void TlsSocket::shutdown() {
  if (no_close_notify_ || !ssl_ || !socket_.is_open() || SSL_is_init_finished(ssl_.get()) != 1) {
    return;
  }
  ERR_clear_error();
  (void)SSL_shutdown(ssl_.get());  // queues close_notify; we do not wait for the peer's
  ERR_clear_error();
  no_close_notify_ = true;  // once is enough
  if (writing_ || pending_.empty()) return;
  error_code ignored;
  (void)socket_.send(asio::buffer(pending_), 0, ignored);  // non-blocking: what fits, if any
  pending_.clear();
}

void TlsSocket::cancel() {
  error_code ignored;
  socket_.cancel(ignored);
}

void TlsSocket::close() {
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace mp::net
