// H2Connection over real TLS on 127.0.0.1 against TlsTestServer: ALPN, trust, client
// certificates, PING deadline, dropped connections, timeouts, the stream queue, close().
#include "h2/h2_connection.hpp"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <functional>

#include "test_pki.hpp"
#include "test_tls_server.hpp"

namespace mp::h2 {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using test::Behaviour;
using test::TestServerOptions;
using test::TlsTestServer;

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

Request badge_request(int n) {
  Request r;
  r.authority = "localhost";
  r.path = "/3/device/" + std::string(64, static_cast<char>('a' + n % 6));
  r.headers = {{"apns-topic", "com.example.mail"}, {"apns-push-type", "alert"}};
  r.body = "{\"aps\":{\"badge\":" + std::to_string(n) + "}}";
  return r;
}

struct Client {
  ClientIdentity identity;
  std::shared_ptr<asio::ssl::context> tls;
};

// Trusts the test CA (or `ca_pem`), presents the test client certificate when `with_identity`.
Client make_client(bool with_identity, std::optional<std::string> ca_pem = std::nullopt) {
  const auto& pki = test::test_pki();
  Client c;
  TlsClientOptions opts;
  opts.ca_pem = ca_pem ? *ca_pem : pki.ca.cert_pem();
  if (with_identity) {
    auto id = ClientIdentity::from_pem(pki.client.cert_pem(), pki.client.key_pem());
    EXPECT_TRUE(id.ok()) << id.error().message;
    c.identity = std::move(id).value();
    opts.identity = &c.identity;
  }
  auto ctx = make_client_tls_context(opts);
  EXPECT_TRUE(ctx.ok()) << ctx.error().message;
  c.tls = std::move(ctx).value();
  return c;
}

ConnectionOptions options_for(const TlsTestServer& server) {
  ConnectionOptions o;
  o.host = "localhost";
  o.port = server.port();
  o.endpoints = {asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port())};
  o.connect_timeout = 3s;
  o.request_timeout = 3s;
  o.ping_interval = 0ms;
  return o;
}

// The io_context outlives every connection a test holds (they own timers and sockets of it).
class H2ConnectionTest : public ::testing::Test {
 protected:
  // Runs `body` for at most `limit`; false if it did not finish.
  bool run(const std::function<asio::awaitable<void>()>& body,
           std::chrono::milliseconds limit = 8000ms) {
    bool finished = false;
    std::exception_ptr error;
    asio::co_spawn(ioc_, body(), [&](std::exception_ptr e) {
      finished = true;
      error = e;
      ioc_.stop();  // loops of connections left open do not hold the test
    });
    ioc_.run_for(limit);
    ioc_.restart();
    if (error) std::rethrow_exception(error);
    return finished;
  }

  // One connect() with `options`, and its result.
  Status connect_once(const Client& client, const ConnectionOptions& options) {
    Status connected;
    EXPECT_TRUE(run([&]() -> asio::awaitable<void> {
      auto conn = H2Connection::create(co_await asio::this_coro::executor, client.tls, options);
      connected = co_await conn->connect();
    }));
    return connected;
  }

  asio::io_context ioc_;
};

asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// Polls `done` every 10 ms; false if `limit` passed first.
asio::awaitable<bool> wait_until(std::function<bool()> done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) co_return false;
    co_await sleep_for(10ms);
  }
  co_return true;
}

// Looks at the server's peers from its own thread (they are not thread-safe).
bool server_saw(TlsTestServer& server, const std::function<bool(const test::ServerPeer&)>& check) {
  bool seen = false;
  server.inspect([&] { seen = !server.peers().empty() && check(*server.peers()[0]); });
  return seen;
}

TEST_F(H2ConnectionTest, RequestWithClientCertificateFromMemory) {
  TestServerOptions so;
  so.require_client_cert = true;
  TlsTestServer server(so);
  Client client = make_client(true);
  Status connected = Error{Errc::internal, "not run"};
  std::optional<Result<Response>> response;
  std::shared_ptr<H2Connection> conn;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    conn =
        H2Connection::create(co_await asio::this_coro::executor, client.tls, options_for(server));
    connected = co_await conn->connect();
    if (!connected) co_return;
    const Request req = badge_request(3);
    response = co_await conn->request(req);
    co_await conn->close(1000ms);
  }));
  server.stop();
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  ASSERT_TRUE(response.has_value());
  ASSERT_TRUE(response->ok()) << response->error().message;
  EXPECT_EQ((*response)->status, 200);
  EXPECT_EQ((*response)->body, "ok " + badge_request(3).path);
  ASSERT_EQ(server.client_names().size(), 1u);
  EXPECT_EQ(server.client_names()[0], "mailpush test client");
  EXPECT_EQ(conn->counters().streams_opened.load(), 1u);
  EXPECT_EQ(conn->counters().completed.load(), 1u);
  EXPECT_EQ(conn->state(), ConnectionState::closed);
}

TEST_F(H2ConnectionTest, ClientIdentityFromHandles) {
  const auto& pki = test::test_pki();
  auto id = ClientIdentity::from_handles(pki.client.cert.get(), pki.client.key.get());
  ASSERT_TRUE(id.ok()) << id.error().message;
  auto mismatch = ClientIdentity::from_handles(pki.client.cert.get(), pki.server.key.get());
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.error().message.find("does not match"), std::string::npos);
  auto bad_pem = ClientIdentity::from_pem("not a certificate", "not a key");
  EXPECT_FALSE(bad_pem.ok());

  TestServerOptions so;
  so.require_client_cert = true;
  TlsTestServer server(so);
  TlsClientOptions opts;
  opts.ca_pem = pki.ca.cert_pem();
  opts.identity = &id.value();
  auto tls = make_client_tls_context(opts);
  ASSERT_TRUE(tls.ok());
  Status connected = Error{Errc::internal, "not run"};
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto conn =
        H2Connection::create(co_await asio::this_coro::executor, tls.value(), options_for(server));
    connected = co_await conn->connect();
    co_await conn->close(500ms);
  }));
  server.stop();
  EXPECT_TRUE(connected.ok()) << connected.error().message;
  ASSERT_EQ(server.client_names().size(), 1u);
}

TEST_F(H2ConnectionTest, ServerWithoutH2IsAClearError) {
  TestServerOptions so;
  so.alpn = {"http/1.1"};
  TlsTestServer server(so);
  Client client = make_client(false);
  const Status connected = connect_once(client, options_for(server));
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.error().code, Errc::conflict);
  EXPECT_NE(connected.error().message.find("'http/1.1' instead of 'h2'"), std::string::npos)
      << connected.error().message;
}

TEST_F(H2ConnectionTest, UntrustedServerCertificateIsAClearError) {
  TestServerOptions so;
  so.use_other_ca = true;
  TlsTestServer server(so);
  Client client = make_client(false);
  const Status connected = connect_once(client, options_for(server));
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.error().code, Errc::conflict);
  EXPECT_NE(connected.error().message.find("server certificate not trusted"), std::string::npos)
      << connected.error().message;
}

TEST_F(H2ConnectionTest, CertificateForAnotherNameIsRefused) {
  TlsTestServer server(TestServerOptions{});
  Client client = make_client(false);
  ConnectionOptions o = options_for(server);
  o.server_name = "api.push.apple.com";
  const Status connected = connect_once(client, o);
  ASSERT_FALSE(connected.ok());
  EXPECT_NE(connected.error().message.find("not trusted: hostname mismatch"), std::string::npos)
      << connected.error().message;
}

TEST_F(H2ConnectionTest, MissingClientCertificateIsRefusedAtConnect) {
  TestServerOptions so;
  so.require_client_cert = true;
  TlsTestServer server(so);
  Client client = make_client(false);
  const Status connected = connect_once(client, options_for(server));
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.error().code, Errc::conflict) << connected.error().message;
  EXPECT_NE(connected.error().message.find("certificate"), std::string::npos)
      << connected.error().message;
}

TEST_F(H2ConnectionTest, ConnectTimesOutOnASilentPort) {
  TestServerOptions so;
  so.behaviour = Behaviour::no_tls;
  TlsTestServer server(so);
  Client client = make_client(false);
  Status connected;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    ConnectionOptions o = options_for(server);
    o.connect_timeout = 300ms;
    auto conn = H2Connection::create(co_await asio::this_coro::executor, client.tls, o);
    connected = co_await conn->connect();
  }));
  ASSERT_FALSE(connected.ok());
  EXPECT_EQ(connected.error().code, Errc::unavailable);
  EXPECT_NE(connected.error().message.find("timed out after 300 ms"), std::string::npos)
      << connected.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(H2ConnectionTest, PingDeadlineDetectsASilentServer) {
  TestServerOptions so;
  so.behaviour = Behaviour::silent;
  TlsTestServer server(so);
  Client client = make_client(false);
  std::optional<Result<Response>> response;
  std::shared_ptr<H2Connection> conn;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    ConnectionOptions o = options_for(server);
    o.ping_interval = 200ms;
    o.ping_timeout = 300ms;
    o.request_timeout = 5000ms;
    conn = H2Connection::create(co_await asio::this_coro::executor, client.tls, o);
    Status st = co_await conn->connect();
    if (!st) co_return;
    const Request req = badge_request(1);
    response = co_await conn->request(req);
  }));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->ok());
  EXPECT_NE(response->error().message.find("PING not answered within 300 ms"), std::string::npos)
      << response->error().message;
  EXPECT_NE(retry_safety(response->error()), RetrySafety::never);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(conn->state(), ConnectionState::closed);
  EXPECT_GE(conn->counters().pings_sent.load(), 1u);
  EXPECT_EQ(conn->counters().pings_acked.load(), 0u);
}

TEST_F(H2ConnectionTest, PingsAreAnsweredOnAHealthyConnection) {
  TlsTestServer server(TestServerOptions{});
  Client client = make_client(false);
  std::shared_ptr<H2Connection> conn;
  ConnectionState during = ConnectionState::created;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    ConnectionOptions o = options_for(server);
    o.ping_interval = 100ms;
    o.ping_timeout = 2000ms;  // an ack late on a loaded machine must not end the test
    conn = H2Connection::create(co_await asio::this_coro::executor, client.tls, o);
    Status st = co_await conn->connect();
    if (!st) co_return;
    co_await sleep_for(700ms);
    during = conn->state();
    co_await conn->close(500ms);
  }));
  EXPECT_EQ(during, ConnectionState::open);
  EXPECT_GE(conn->counters().pings_acked.load(), 3u);
}

TEST_F(H2ConnectionTest, DroppedConnectionCompletesEveryRequestOnceAsRetryable) {
  TestServerOptions so;
  so.behaviour = Behaviour::drop_after;
  so.drop_after = 3;
  TlsTestServer server(so);
  Client client = make_client(false);
  constexpr int kRequests = 5;
  std::vector<int> completions(kRequests, 0);
  std::vector<std::optional<Result<Response>>> results(kRequests);
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = H2Connection::create(ex, client.tls, options_for(server));
    Status st = co_await conn->connect();
    if (!st) co_return;
    std::vector<Request> requests;
    for (int i = 0; i < kRequests; ++i) requests.push_back(badge_request(i));
    int outstanding = kRequests;
    asio::steady_timer all_done(ex, std::chrono::steady_clock::time_point::max());
    for (int i = 0; i < kRequests; ++i) {
      auto one = [&, i]() -> asio::awaitable<void> {
        Result<Response> r = co_await conn->request(requests[static_cast<std::size_t>(i)]);
        ++completions[static_cast<std::size_t>(i)];
        results[static_cast<std::size_t>(i)] = std::move(r);
        if (--outstanding == 0) all_done.cancel();
      };
      asio::co_spawn(ex, one, asio::detached);
    }
    while (outstanding > 0) {
      auto [ec] = co_await all_done.async_wait(nothrow);
      (void)ec;
    }
  }));
  for (int i = 0; i < kRequests; ++i) {
    const auto idx = static_cast<std::size_t>(i);
    EXPECT_EQ(completions[idx], 1) << i;
    ASSERT_TRUE(results[idx].has_value()) << i;
    ASSERT_FALSE(results[idx]->ok()) << i;
    const Error& e = results[idx]->error();
    EXPECT_NE(retry_safety(e), RetrySafety::never) << e.message;
    EXPECT_NE(e.message.find("lost"), std::string::npos) << e.message;
  }
}

TEST_F(H2ConnectionTest, RequestTimeoutResetsTheStream) {
  TestServerOptions so;
  so.behaviour = Behaviour::never_answer;
  TlsTestServer server(so);
  Client client = make_client(false);
  std::optional<Result<Response>> response;
  std::shared_ptr<H2Connection> conn;
  ConnectionState after = ConnectionState::created;
  bool rst_seen = false;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    ConnectionOptions o = options_for(server);
    o.request_timeout = 300ms;
    conn = H2Connection::create(co_await asio::this_coro::executor, client.tls, o);
    Status st = co_await conn->connect();
    if (!st) co_return;
    const Request req = badge_request(2);
    response = co_await conn->request(req);
    rst_seen = co_await wait_until(
        [&] {
          return server_saw(server,
                            [](const test::ServerPeer& p) { return !p.resets_received().empty(); });
        },
        3000ms);
    after = conn->state();
    co_await conn->close(200ms);
  }));
  server.stop();
  EXPECT_TRUE(rst_seen);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->ok());
  EXPECT_EQ(retry_safety(response->error()), RetrySafety::unknown);
  EXPECT_NE(response->error().message.find("timed out after 300 ms"), std::string::npos)
      << response->error().message;
  EXPECT_EQ(after, ConnectionState::open);  // one slow stream does not end the connection
  EXPECT_EQ(conn->counters().timeouts.load(), 1u);
  ASSERT_EQ(server.peers().size(), 1u);
  const auto resets = server.peers()[0]->resets_received();
  ASSERT_EQ(resets.size(), 1u);
  EXPECT_EQ(resets[0], static_cast<std::uint32_t>(NGHTTP2_CANCEL));
}

TEST_F(H2ConnectionTest, RequestsQueueBehindMaxConcurrentStreamsOfOne) {
  TestServerOptions so;
  so.peer.max_concurrent_streams = 1;
  TlsTestServer server(so);
  Client client = make_client(false);
  constexpr int kRequests = 8;
  int ok = 0;
  std::uint64_t max_queued = 0;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = H2Connection::create(ex, client.tls, options_for(server));
    Status st = co_await conn->connect();
    if (!st) co_return;
    std::vector<Request> requests;
    for (int i = 0; i < kRequests; ++i) requests.push_back(badge_request(i));
    int outstanding = kRequests;
    asio::steady_timer all_done(ex, std::chrono::steady_clock::time_point::max());
    for (int i = 0; i < kRequests; ++i) {
      auto one = [&, i]() -> asio::awaitable<void> {
        Result<Response> r = co_await conn->request(requests[static_cast<std::size_t>(i)]);
        if (r.ok() && r->status == 200) ++ok;
        max_queued = std::max(max_queued, conn->counters().queued.load());
        if (--outstanding == 0) all_done.cancel();
      };
      asio::co_spawn(ex, one, asio::detached);
    }
    while (outstanding > 0) {
      auto [ec] = co_await all_done.async_wait(nothrow);
      (void)ec;
    }
    co_await conn->close(500ms);
  }));
  server.stop();
  EXPECT_EQ(ok, kRequests);
  EXPECT_GE(max_queued, 1u);
  ASSERT_EQ(server.peers().size(), 1u);
  EXPECT_EQ(server.peers()[0]->max_open_streams(), 1u);
  EXPECT_TRUE(server.peers()[0]->refused().empty());
}

TEST_F(H2ConnectionTest, CloseGivesInFlightStreamsAGracePeriodThenFailsThem) {
  TestServerOptions so;
  so.behaviour = Behaviour::never_answer;
  TlsTestServer server(so);
  Client client = make_client(false);
  std::optional<Result<Response>> response;
  std::chrono::steady_clock::duration close_took{};
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    auto conn = H2Connection::create(ex, client.tls, options_for(server));
    Status st = co_await conn->connect();
    if (!st) co_return;
    const Request req = badge_request(4);
    auto one = [&]() -> asio::awaitable<void> { response = co_await conn->request(req); };
    asio::co_spawn(ex, one, asio::detached);
    co_await sleep_for(100ms);  // the request is on the wire
    const auto start = std::chrono::steady_clock::now();
    co_await conn->close(300ms);
    close_took = std::chrono::steady_clock::now() - start;
    co_await sleep_for(10ms);  // the request coroutine resumes
  }));
  EXPECT_GE(close_took, 290ms);
  EXPECT_LT(close_took, 1s);
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->ok());
  EXPECT_EQ(retry_safety(response->error()), RetrySafety::unknown);
  EXPECT_NE(response->error().message.find("grace period"), std::string::npos)
      << response->error().message;
}

TEST_F(H2ConnectionTest, IdleConnectionClosesItselfGracefully) {
  TlsTestServer server(TestServerOptions{});
  Client client = make_client(false);
  std::shared_ptr<H2Connection> conn;
  ConnectionState busy = ConnectionState::created;
  std::optional<Result<Response>> response;
  bool closed = false;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    ConnectionOptions o = options_for(server);
    o.idle_timeout = 1500ms;  // margins of 1.2 s on both sides of the sleeps below
    conn = H2Connection::create(co_await asio::this_coro::executor, client.tls, o);
    Status st = co_await conn->connect();
    if (!st) co_return;
    co_await sleep_for(300ms);
    const Request req = badge_request(5);
    response = co_await conn->request(req);  // resets the idle clock
    co_await sleep_for(300ms);
    busy = conn->state();
    closed = co_await wait_until([&] { return conn->state() == ConnectionState::closed; }, 5000ms);
  }));
  ASSERT_TRUE(response.has_value());
  ASSERT_TRUE(response->ok()) << response->error().message;
  EXPECT_EQ((*response)->status, 200);
  EXPECT_EQ(busy, ConnectionState::open);
  EXPECT_TRUE(closed) << connection_state_name(conn->state());
}

TEST(H2ClientIdentity, FromDer) {
  const auto& pki = test::test_pki();
  unsigned char* cert_der = nullptr;
  const int cert_len = i2d_X509(pki.client.cert.get(), &cert_der);
  unsigned char* key_der = nullptr;
  const int key_len = i2d_PrivateKey(pki.client.key.get(), &key_der);
  ASSERT_GT(cert_len, 0);
  ASSERT_GT(key_len, 0);
  const std::string cert(reinterpret_cast<char*>(cert_der), static_cast<std::size_t>(cert_len));
  const std::string key(reinterpret_cast<char*>(key_der), static_cast<std::size_t>(key_len));
  OPENSSL_free(cert_der);
  OPENSSL_free(key_der);
  auto id = ClientIdentity::from_der(cert, key);
  ASSERT_TRUE(id.ok()) << id.error().message;
  TlsClientOptions opts;
  opts.identity = &id.value();  // no CA given: the system trust store
  EXPECT_TRUE(make_client_tls_context(opts).ok());
  EXPECT_FALSE(ClientIdentity::from_der(cert, "junk").ok());
}

TEST_F(H2ConnectionTest, ClosedConnectionRefusesNewRequestsAsRetryable) {
  TlsTestServer server(TestServerOptions{});
  Client client = make_client(false);
  std::optional<Result<Response>> late;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto conn =
        H2Connection::create(co_await asio::this_coro::executor, client.tls, options_for(server));
    Status st = co_await conn->connect();
    if (!st) co_return;
    co_await conn->close(500ms);
    const Request req = badge_request(1);
    late = co_await conn->request(req);
  }));
  ASSERT_TRUE(late.has_value());
  ASSERT_FALSE(late->ok());
  EXPECT_EQ(retry_safety(late->error()), RetrySafety::safe);
}

// close() or abort() while connect() resolves, against a port that never speaks TLS: the connect
// must end at once, not hang (nor wait out its own timeout).
void expect_connect_ends_promptly(bool use_abort) {
  TestServerOptions so;
  so.behaviour = Behaviour::no_tls;
  TlsTestServer server(so);
  Client client = make_client(false);
  asio::io_context ioc;
  std::optional<Status> connected;
  std::chrono::steady_clock::duration took{};
  std::shared_ptr<H2Connection> conn;
  auto body = [&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    ConnectionOptions o = options_for(server);
    o.endpoints.clear();  // through the resolver
    o.connect_timeout = 5000ms;
    conn = H2Connection::create(ex, client.tls, o);
    const auto start = std::chrono::steady_clock::now();
    auto connecting = [&]() -> asio::awaitable<void> {
      Status st = co_await conn->connect();
      connected = std::move(st);
      took = std::chrono::steady_clock::now() - start;
    };
    asio::co_spawn(ex, connecting, asio::detached);
    while (conn->state() == ConnectionState::created) co_await asio::post(ex, asio::use_awaitable);
    if (use_abort) {
      conn->abort("test");
    } else {
      co_await conn->close(0ms);
    }
    (void)co_await wait_until([&] { return connected.has_value(); }, 3000ms);
  };
  asio::co_spawn(ioc, body(), [&](std::exception_ptr) { ioc.stop(); });
  ioc.run_for(6s);
  ASSERT_TRUE(connected.has_value()) << "connect() still running after close()/abort()";
  ASSERT_FALSE(connected->ok());
  EXPECT_EQ(connected->error().code, Errc::unavailable);
  EXPECT_NE(connected->error().message.find("closed while connecting"), std::string::npos)
      << connected->error().message;
  EXPECT_LT(took, 1s);
  EXPECT_EQ(conn->state(), ConnectionState::closed);
}

TEST(H2ConnectionLifecycle, CloseDuringConnectEndsItPromptly) {
  expect_connect_ends_promptly(false);
}

TEST(H2ConnectionLifecycle, AbortDuringConnectEndsItPromptly) {
  expect_connect_ends_promptly(true);
}

// A caller that stops waiting (`||` with a timer) ends its request; the connection, its queue
// and its other requests carry on (under ASan: no use of the request's freed frame).
TEST_F(H2ConnectionTest, CallerCancellationEndsOnlyThatRequest) {
  using namespace asio::experimental::awaitable_operators;
  TestServerOptions so;
  so.behaviour = Behaviour::never_answer;
  so.peer.max_concurrent_streams = 1;
  TlsTestServer server(so);
  Client client = make_client(false);
  std::shared_ptr<H2Connection> conn;
  std::optional<Result<Response>> after;
  bool first_cut = false, first_done = false, queued_cut = false;
  std::chrono::steady_clock::duration cut_took{};
  std::uint64_t queued_after = 99;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    ConnectionOptions o = options_for(server);
    o.request_timeout = 1500ms;
    conn = H2Connection::create(ex, client.tls, o);
    Status st = co_await conn->connect();
    if (!st) co_return;
    // The first request takes the only stream, is never answered, and its caller gives up
    // after 300 ms: the stream is reset.
    const Request one = badge_request(1);
    auto on_wire = [&]() -> asio::awaitable<void> {
      std::variant<Result<Response>, std::monostate> r =
          co_await (conn->request(one) || sleep_for(300ms));
      first_cut = r.index() == 1;
      first_done = true;
    };
    asio::co_spawn(ex, on_wire, asio::detached);
    co_await sleep_for(100ms);
    // The second waits in the queue; its caller gives up after 100 ms.
    const Request two = badge_request(2);
    const auto start = std::chrono::steady_clock::now();
    std::variant<Result<Response>, std::monostate> raced =
        co_await (conn->request(two) || sleep_for(100ms));
    cut_took = std::chrono::steady_clock::now() - start;
    queued_cut = raced.index() == 1;
    queued_after = conn->counters().queued.load();
    (void)co_await wait_until([&] { return first_done; }, 3000ms);
    // The connection still works: the next request gets the freed stream and times out
    // normally (the server never answers).
    const Request four = badge_request(4);
    after = co_await conn->request(four);
    co_await conn->close(200ms);
  }));
  server.stop();
  EXPECT_TRUE(queued_cut);
  EXPECT_LT(cut_took, 1000ms) << "the cancelled caller waited for the request's own timeout";
  EXPECT_EQ(queued_after, 0u);
  EXPECT_TRUE(first_cut);
  ASSERT_TRUE(after.has_value());
  ASSERT_FALSE(after->ok());
  EXPECT_NE(after->error().message.find("timed out"), std::string::npos) << after->error().message;
  EXPECT_EQ(conn->state(), ConnectionState::closed);
  EXPECT_EQ(conn->counters().in_flight.load(), 0u);
  EXPECT_EQ(conn->counters().queued.load(), 0u);
  ASSERT_EQ(server.peers().size(), 1u);
  EXPECT_EQ(server.peers()[0]->requests().size(), 2u);  // one and four; two was never sent
  ASSERT_GE(server.peers()[0]->resets_received().size(), 1u);
  EXPECT_EQ(server.peers()[0]->resets_received()[0], static_cast<std::uint32_t>(NGHTTP2_CANCEL));
}

// Stream ids used up: GOAWAY, draining, the queued requests fail as not processed.
TEST_F(H2ConnectionTest, ExhaustedStreamIdsDrainTheConnection) {
  TlsTestServer server(TestServerOptions{});
  Client client = make_client(false);
  constexpr int kRequests = 4;
  std::vector<std::optional<Result<Response>>> results(kRequests);
  std::shared_ptr<H2Connection> conn;
  ConnectionState after_burst = ConnectionState::created;
  bool closed = false;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    ConnectionOptions o = options_for(server);
    o.limits.max_stream_id = 3;  // streams 1 and 3
    conn = H2Connection::create(ex, client.tls, o);
    Status st = co_await conn->connect();
    if (!st) co_return;
    std::vector<Request> requests;
    for (int i = 0; i < kRequests; ++i) requests.push_back(badge_request(i));
    int outstanding = kRequests;
    for (int i = 0; i < kRequests; ++i) {
      auto one = [&, i]() -> asio::awaitable<void> {
        const auto idx = static_cast<std::size_t>(i);
        results[idx] = co_await conn->request(requests[idx]);
        --outstanding;
      };
      asio::co_spawn(ex, one, asio::detached);
    }
    (void)co_await wait_until([&] { return outstanding == 0; }, 5000ms);
    after_burst = conn->state();
    closed = co_await wait_until([&] { return conn->state() == ConnectionState::closed; }, 3000ms);
  }));
  int ok = 0, not_processed = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.has_value());
    if (r->ok()) {
      ++ok;
    } else {
      EXPECT_EQ(r->error().code, Errc::unavailable) << r->error().message;
      ++not_processed;
    }
  }
  EXPECT_EQ(ok, 2);
  EXPECT_EQ(not_processed, 2);
  EXPECT_NE(after_burst, ConnectionState::open);
  EXPECT_TRUE(closed) << connection_state_name(conn->state());
  server.stop();
  ASSERT_EQ(server.peers().size(), 1u);
  EXPECT_EQ(server.peers()[0]->goaways_received(),
            std::vector<std::uint32_t>{static_cast<std::uint32_t>(NGHTTP2_NO_ERROR)});
}

// A GOAWAY read together with the server's first SETTINGS is not lost.
TEST_F(H2ConnectionTest, GoawayWithTheFirstSettingsDrainsAtOnce) {
  TestServerOptions so;
  so.behaviour = Behaviour::goaway_at_start;
  TlsTestServer server(so);
  Client client = make_client(false);
  std::shared_ptr<H2Connection> conn;
  Status connected = Error{Errc::internal, "not run"};
  ConnectionState after_connect = ConnectionState::created;
  std::optional<Result<Response>> response;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    conn =
        H2Connection::create(co_await asio::this_coro::executor, client.tls, options_for(server));
    connected = co_await conn->connect();
    if (!connected) co_return;
    after_connect = conn->state();
    const Request req = badge_request(1);
    response = co_await conn->request(req);
    co_await conn->close(200ms);
  }));
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  EXPECT_EQ(conn->counters().goaway.load(), 1u);
  EXPECT_NE(after_connect, ConnectionState::open);
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->ok());
  EXPECT_EQ(retry_safety(response->error()), RetrySafety::safe) << response->error().message;
}

// A protocol error from the server: our GOAWAY(PROTOCOL_ERROR) reaches it before the close.
TEST_F(H2ConnectionTest, ProtocolErrorSendsGoawayBeforeClosing) {
  TestServerOptions so;
  so.behaviour = Behaviour::bad_frame_after_one;
  TlsTestServer server(so);
  Client client = make_client(false);
  std::shared_ptr<H2Connection> conn;
  std::optional<Result<Response>> response;
  bool goaway_seen = false;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    conn =
        H2Connection::create(co_await asio::this_coro::executor, client.tls, options_for(server));
    Status st = co_await conn->connect();
    if (!st) co_return;
    const Request req = badge_request(1);
    response = co_await conn->request(req);
    goaway_seen = co_await wait_until(
        [&] {
          return server_saw(
              server, [](const test::ServerPeer& p) { return !p.goaways_received().empty(); });
        },
        3000ms);
    (void)co_await wait_until([&] { return conn->state() == ConnectionState::closed; }, 3000ms);
  }));
  ASSERT_TRUE(response.has_value());
  ASSERT_FALSE(response->ok());
  EXPECT_EQ(conn->state(), ConnectionState::closed);
  EXPECT_TRUE(goaway_seen);
  server.stop();
  ASSERT_EQ(server.peers().size(), 1u);
  ASSERT_FALSE(server.peers()[0]->goaways_received().empty());
  EXPECT_EQ(server.peers()[0]->goaways_received()[0],
            static_cast<std::uint32_t>(NGHTTP2_PROTOCOL_ERROR));
}

TEST(H2ClientIdentity, EncryptedKeyIsRefusedWithoutAPrompt) {
  const auto& pki = test::test_pki();
  BioPtr bio(BIO_new(BIO_s_mem()));
  static const char kPassword[] = "secret";
  ASSERT_EQ(PEM_write_bio_PrivateKey(bio.get(), pki.client.key.get(), EVP_aes_256_cbc(),
                                     reinterpret_cast<const unsigned char*>(kPassword),
                                     sizeof kPassword - 1, nullptr, nullptr),
            1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  const std::string encrypted(data, static_cast<std::size_t>(len));
  auto id = ClientIdentity::from_pem(pki.client.cert_pem(), encrypted);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.error().message.find("encrypted"), std::string::npos) << id.error().message;
}

// Sends all `requests` at once on `conn`; how many were answered 200 with `expected_body(i)`.
asio::awaitable<int> send_all_at_once(std::shared_ptr<H2Connection> conn,
                                      const std::vector<Request>& requests,
                                      std::function<std::string(std::size_t)> expected_body) {
  auto ex = co_await asio::this_coro::executor;
  int ok = 0;
  std::size_t outstanding = requests.size();
  asio::steady_timer all_done(ex, std::chrono::steady_clock::time_point::max());
  for (std::size_t i = 0; i < requests.size(); ++i) {
    auto one = [&, i]() -> asio::awaitable<void> {
      Result<Response> r = co_await conn->request(requests[i]);
      if (r.ok() && r->status == 200 && r->body == expected_body(i)) ++ok;
      if (--outstanding == 0) all_done.cancel();
    };
    asio::co_spawn(ex, one, asio::detached);
  }
  while (outstanding > 0) {
    auto [ec] = co_await all_done.async_wait(nothrow);
    (void)ec;
  }
  co_return ok;
}

// TLS 1.2 and 1.3 with a client certificate; bodies far bigger than the client's 4 KiB read
// buffer, in 512-byte TLS records, while big request bodies go the other way at the same time.
TEST_F(H2ConnectionTest, BigBodiesInSmallRecordsOverTls12And13) {
  constexpr std::size_t kPadding = 60'000;
  constexpr int kRequests = 20;
  for (const int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    TestServerOptions so;
    so.require_client_cert = true;
    so.max_tls_version = version;
    so.max_send_fragment = 512;
    so.peer.body_padding = kPadding;
    TlsTestServer server(so);
    Client client = make_client(true);
    std::vector<Request> requests;
    for (int i = 0; i < kRequests; ++i) {
      Request r = badge_request(i);
      r.body = std::string(100'000, static_cast<char>('A' + i % 26));
      requests.push_back(std::move(r));
    }
    Status connected = Error{Errc::internal, "not run"};
    int ok = 0;
    ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
      auto conn =
          H2Connection::create(co_await asio::this_coro::executor, client.tls, options_for(server));
      connected = co_await conn->connect();
      if (!connected) co_return;
      ok = co_await send_all_at_once(conn, requests, [&](std::size_t i) {
        return "ok " + requests[i].path + std::string(kPadding, '.');
      });
      co_await conn->close(1000ms);
    }));
    server.stop();
    ASSERT_TRUE(connected.ok()) << connected.error().message;
    EXPECT_EQ(ok, kRequests) << "TLS version " << version;
    ASSERT_EQ(server.tls_versions().size(), 1u);
    EXPECT_EQ(server.tls_versions()[0], version == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.3");
    ASSERT_EQ(server.peers().size(), 1u);
    std::size_t request_bytes = 0;
    for (const auto& [id, req] : server.peers()[0]->requests()) request_bytes += req.body.size();
    EXPECT_EQ(request_bytes, kRequests * 100'000u);
  }
}

// A TLS 1.3 server asking for a KeyUpdate with every answer: the client answers it from its read
// side (nothing else to write then) and the connection keeps working.
TEST_F(H2ConnectionTest, KeyUpdatesFromTheServerAreAnswered) {
  TestServerOptions so;
  so.key_update = true;
  TlsTestServer server(so);
  Client client = make_client(false);
  Status connected = Error{Errc::internal, "not run"};
  int ok = 0;
  ASSERT_TRUE(run([&]() -> asio::awaitable<void> {
    auto conn =
        H2Connection::create(co_await asio::this_coro::executor, client.tls, options_for(server));
    connected = co_await conn->connect();
    if (!connected) co_return;
    for (int i = 0; i < 5; ++i) {
      const Request req = badge_request(i);
      Result<Response> r = co_await conn->request(req);
      if (r.ok() && r->status == 200) ++ok;
      co_await sleep_for(20ms);  // the KeyUpdate answer goes out while the connection is idle
    }
    co_await conn->close(1000ms);
  }));
  server.stop();
  ASSERT_TRUE(connected.ok()) << connected.error().message;
  EXPECT_EQ(ok, 5);
  ASSERT_EQ(server.tls_versions().size(), 1u);
  EXPECT_EQ(server.tls_versions()[0], "TLSv1.3");
}

TEST(H2ClientTls, IdleConnectionsReleaseTheirBuffers) {
  TlsClientOptions opts;
  opts.ca_pem = test::test_pki().ca.cert_pem();
  auto ctx = make_client_tls_context(opts);
  ASSERT_TRUE(ctx.ok()) << ctx.error().message;
  EXPECT_NE(SSL_CTX_get_mode((*ctx)->native_handle()) & SSL_MODE_RELEASE_BUFFERS, 0);
}

}  // namespace
}  // namespace mp::h2
