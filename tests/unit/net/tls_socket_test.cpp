// Tests of src/net/tls_socket: a server TlsSocket (from an accepted socket) against a client one,
// over TLS on 127.0.0.1 with the development certificate.
#include "net/tls_socket.hpp"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>

#include "test_env.hpp"

namespace mp::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

class TlsSocketServerTest : public ::testing::Test {
 protected:
  TlsSocketServerTest() {
    server_ctx_.use_certificate_chain_file(test::dev_tls().cert_chain.string());
    server_ctx_.use_private_key_file(test::dev_tls().key.string(), asio::ssl::context::pem);
    client_ctx_.load_verify_file(test::dev_tls().ca_cert.string());
    client_ctx_.set_verify_mode(asio::ssl::verify_peer);
  }

  // Runs both sides as coroutines on one thread (an implicit strand) for 5 s at most.
  void run(asio::awaitable<void> server, asio::awaitable<void> client) {
    const auto rethrow = [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    };
    asio::co_spawn(ioc_, std::move(server), rethrow);
    asio::co_spawn(ioc_, std::move(client), rethrow);
    ioc_.run_for(5s);
    EXPECT_TRUE(ioc_.stopped()) << "a side did not finish within 5 s";
  }

  asio::awaitable<std::unique_ptr<TlsSocket>> accept() {
    auto socket = co_await acceptor_.async_accept(asio::use_awaitable);
    co_return std::make_unique<TlsSocket>(std::move(socket), server_ctx_);
  }

  asio::awaitable<void> pause(std::chrono::milliseconds delay) {
    asio::steady_timer timer(ioc_, delay);
    co_await timer.async_wait(asio::use_awaitable);
  }

  asio::io_context ioc_;
  asio::ssl::context server_ctx_{asio::ssl::context::tls_server};
  asio::ssl::context client_ctx_{asio::ssl::context::tls_client};
  tcp::acceptor acceptor_{ioc_, {asio::ip::make_address("127.0.0.1"), 0}};
};

TEST_F(TlsSocketServerTest, ServerMakesItsSslAtTheHandshakeAndTalksToAClient) {
  bool server_done = false;
  bool client_done = false;
  auto server = [&]() -> asio::awaitable<void> {
    auto tls = co_await accept();
    // Nothing of TLS exists before the client's first byte.
    EXPECT_EQ(tls->native_handle(), nullptr);
    EXPECT_FALSE(tls->has_buffered_input());
    EXPECT_FALSE(co_await tls->async_wait_readable());
    EXPECT_EQ(tls->native_handle(), nullptr);
    EXPECT_FALSE(co_await tls->async_handshake());
    EXPECT_NE(tls->native_handle(), nullptr);
    if (tls->native_handle() == nullptr) co_return;
    EXPECT_NE(SSL_get_mode(tls->native_handle()) & SSL_MODE_RELEASE_BUFFERS, 0u);
    std::array<std::uint8_t, 64> buffer{};
    auto [ec, n] = co_await tls->async_read_some(buffer);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n)), "ping");
    tls->release_idle_buffers();
    EXPECT_FALSE(co_await tls->async_write_all("pong"));
    tls->shutdown();
    server_done = true;
  };
  auto client = [&]() -> asio::awaitable<void> {
    TlsSocket tls(ioc_.get_executor(), client_ctx_);
    co_await tls.socket().async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    co_await pause(100ms);  // silent at first: the server waits readable without an SSL
    SSL_set_tlsext_host_name(tls.native_handle(), "localhost");
    EXPECT_FALSE(co_await tls.async_handshake());
    EXPECT_EQ(SSL_get_verify_result(tls.native_handle()), X509_V_OK);
    EXPECT_FALSE(co_await tls.async_write_all("ping"));
    std::array<std::uint8_t, 64> buffer{};
    auto [ec, n] = co_await tls.async_read_some(buffer);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_EQ(std::string(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n)), "pong");
    client_done = true;
  };
  run(server(), client());
  EXPECT_TRUE(server_done);
  EXPECT_TRUE(client_done);
}

TEST_F(TlsSocketServerTest, PlainBytesFailTheServerHandshake) {
  bool failed = false;
  auto server = [&]() -> asio::awaitable<void> {
    auto tls = co_await accept();
    EXPECT_FALSE(co_await tls->async_wait_readable());
    const auto ec = co_await tls->async_handshake();
    failed = static_cast<bool>(ec);
  };
  auto client = [&]() -> asio::awaitable<void> {
    tcp::socket socket(ioc_);
    co_await socket.async_connect(acceptor_.local_endpoint(), asio::use_awaitable);
    const std::string request = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    co_await asio::async_write(socket, asio::buffer(request), asio::use_awaitable);
    std::array<char, 256> sink{};
    boost::system::error_code ec;
    while (!ec)
      co_await socket.async_read_some(asio::buffer(sink),
                                      asio::redirect_error(asio::use_awaitable, ec));
  };
  run(server(), client());
  EXPECT_TRUE(failed);
}

}  // namespace
}  // namespace mp::net
