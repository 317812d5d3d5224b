// TlsTestServer: accept loop and one coroutine per connection (read, feed the peer, write).
#include "test_tls_server.hpp"

#include <openssl/ssl.h>

#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <future>

namespace mp::h2::test {

namespace asio = boost::asio;
using asio::ip::tcp;
using TlsStream = asio::ssl::stream<tcp::socket>;

namespace {

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
  const auto* wire = static_cast<const std::string*>(arg);
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, reinterpret_cast<const unsigned char*>(wire->data()),
                            static_cast<unsigned int>(wire->size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

struct TlsTestServer::Impl {
  static asio::awaitable<void> accept_loop(TlsTestServer* server) {
    for (;;) {
      auto [ec, socket] = co_await server->acceptor_->async_accept(nothrow);
      if (ec) co_return;
      auto stream = std::make_shared<TlsStream>(std::move(socket), *server->tls_);
      auto work = serve(server, stream);
      asio::co_spawn(server->ioc_, std::move(work), asio::detached);
    }
  }

  static asio::awaitable<void> write_all(const std::shared_ptr<TlsStream>& stream,
                                         const std::string& bytes) {
    if (bytes.empty()) co_return;
    auto [ec, n] = co_await asio::async_write(*stream, asio::buffer(bytes), nothrow);
    (void)ec;
    (void)n;
  }

  static asio::awaitable<void> serve(TlsTestServer* server, std::shared_ptr<TlsStream> stream) {
    const TestServerOptions& opts = server->options_;
    std::array<char, 16 * 1024> buf{};
    if (opts.behaviour == Behaviour::no_tls) {
      for (;;) {
        auto [ec, n] = co_await stream->next_layer().async_read_some(asio::buffer(buf), nothrow);
        if (ec) co_return;
      }
    }
    {
      auto [ec] = co_await stream->async_handshake(asio::ssl::stream_base::server, nothrow);
      if (ec) {
        server->handshake_errors_.push_back(ec.message());
        co_return;
      }
    }
    server->tls_versions_.emplace_back(SSL_get_version(stream->native_handle()));
    if (X509* peer_cert = SSL_get1_peer_certificate(stream->native_handle())) {
      char cn[256] = {0};
      X509_NAME_get_text_by_NID(X509_get_subject_name(peer_cert), NID_commonName, cn, sizeof cn);
      server->client_names_.emplace_back(cn);
      X509_free(peer_cert);
    }
    ServerPeer::Options peer_opts = opts.peer;
    if (opts.behaviour != Behaviour::answer) peer_opts.auto_respond = false;
    auto peer = std::make_shared<ServerPeer>(peer_opts);
    server->peers_.push_back(peer);
    if (opts.behaviour == Behaviour::goaway_at_start) peer->goaway(0, NGHTTP2_NO_ERROR);
    std::string out = peer->send();
    co_await write_all(stream, out);
    bool ignoring = false;
    bool bad_frame_sent = false;
    for (;;) {
      auto [ec, n] = co_await stream->async_read_some(asio::buffer(buf), nothrow);
      if (ec) co_return;
      if (ignoring) continue;
      if (!peer->receive(std::string_view(buf.data(), n))) co_return;
      if (opts.behaviour == Behaviour::silent) ignoring = true;
      if (opts.behaviour == Behaviour::bad_frame_after_one && !peer->completed_order().empty() &&
          !bad_frame_sent) {
        bad_frame_sent = true;
        // A DATA frame header with stream id 0: a connection error (PROTOCOL_ERROR).
        const std::string bad_data("\x00\x00\x00\x00\x00\x00\x00\x00\x00", 9);
        co_await write_all(stream, bad_data);
        continue;
      }
      if (opts.behaviour == Behaviour::drop_after &&
          peer->completed_order().size() >= opts.drop_after) {
        boost::system::error_code ignored;
        stream->lowest_layer().close(ignored);
        co_return;
      }
      out = peer->send();
      if (opts.key_update && !out.empty()) {
        // The client must answer with its own KeyUpdate while it reads.
        SSL_key_update(stream->native_handle(), SSL_KEY_UPDATE_REQUESTED);
      }
      co_await write_all(stream, out);
    }
  }
};

TlsTestServer::TlsTestServer(TestServerOptions options) : options_(std::move(options)) {
  const TestPki& pki = test_pki();
  tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* ctx = tls_->native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  if (options_.max_tls_version != 0) SSL_CTX_set_max_proto_version(ctx, options_.max_tls_version);
  if (options_.max_send_fragment != 0) {
    SSL_CTX_set_max_send_fragment(ctx, static_cast<long>(options_.max_send_fragment));
  }
  const KeyAndCert& id = options_.use_other_ca ? pki.other_server : pki.server;
  SSL_CTX_use_certificate(ctx, id.cert.get());
  SSL_CTX_use_PrivateKey(ctx, id.key.get());
  if (options_.require_client_cert) {
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), pki.ca.cert.get());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  for (const auto& p : options_.alpn) {
    alpn_wire_.push_back(static_cast<char>(p.size()));
    alpn_wire_ += p;
  }
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, &alpn_wire_);

  acceptor_ =
      std::make_unique<tcp::acceptor>(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  port_ = acceptor_->local_endpoint().port();
  asio::co_spawn(ioc_, Impl::accept_loop(this), asio::detached);
  thread_ = std::thread([this] { ioc_.run(); });
}

void TlsTestServer::inspect(const std::function<void()>& fn) {
  if (!thread_.joinable()) {
    fn();
    return;
  }
  std::promise<void> done;
  asio::post(ioc_, [&] {
    fn();
    done.set_value();
  });
  done.get_future().wait();
}

void TlsTestServer::stop() {
  if (!thread_.joinable()) return;
  ioc_.stop();
  thread_.join();
}

TlsTestServer::~TlsTestServer() {
  stop();
}

}  // namespace mp::h2::test
