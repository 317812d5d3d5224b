// Tests of src/http/https_server and server_metrics: a real HttpsServer on 127.0.0.1 driven by
// raw TLS and TCP clients.
#include "http/https_server.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/field.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "http/router.hpp"
#include "http/server_metrics.hpp"
#include "test_env.hpp"

namespace mp::http {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using beast_http::verb;
using std::chrono::milliseconds;
using std::chrono::steady_clock;
using test::HttpReply;
using test::RawTlsConnection;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

// Polls `pred` until it holds or `timeout` passes; returns its last value.
bool wait_until(const std::function<bool()>& pred, milliseconds timeout) {
  const auto deadline = steady_clock::now() + timeout;
  while (!pred()) {
    if (steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

milliseconds since(steady_clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
}

std::string request_text(const std::string& method, const std::string& target,
                         const std::string& body = "",
                         const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  std::string text = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  for (const auto& [k, v] : headers) text += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST") {
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return text + "\r\n" + body;
}

// A plain TCP client (no TLS) for silent peers and for probing a closed or full listener.
class PlainTcpConnection {
 public:
  explicit PlainTcpConnection(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~PlainTcpConnection() { ::close(fd_); }
  PlainTcpConnection(const PlainTcpConnection&) = delete;
  PlainTcpConnection& operator=(const PlainTcpConnection&) = delete;

  bool connected() const { return connected_; }
  void send(const std::string& bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // True if the peer closed or reset the connection within `timeout` (data is discarded).
  bool closed_by_peer(milliseconds timeout) {
    const auto deadline = steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[512];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

// Records the calls of a shutdown's `done` callback; the callback may outlive the test body.
class DoneProbe {
 public:
  std::function<void(std::size_t)> callback() {
    return [state = state_](std::size_t forced) {
      std::lock_guard lock(state->mutex);
      ++state->calls;
      state->forced = forced;
      state->cv.notify_all();
    };
  }
  std::optional<std::size_t> wait(milliseconds timeout) {
    std::unique_lock lock(state_->mutex);
    state_->cv.wait_for(lock, timeout, [&] { return state_->calls > 0; });
    return state_->forced;
  }
  int calls() const {
    std::lock_guard lock(state_->mutex);
    return state_->calls;
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    int calls = 0;
    std::optional<std::size_t> forced;
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Timers of handlers that simulate slow work, so that TearDown can wake them all up.
class SlowWork {
 public:
  // Waits `delay` on the caller's executor; false if woken early by cancel_all().
  asio::awaitable<bool> sleep(milliseconds delay) {
    auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, delay);
    {
      std::lock_guard lock(mutex_);
      timers_.insert(timer);
    }
    auto [ec] = co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    {
      std::lock_guard lock(mutex_);
      timers_.erase(timer);
    }
    co_return !ec;
  }
  void cancel_all() {
    std::lock_guard lock(mutex_);
    for (const auto& t : timers_) asio::post(t->get_executor(), [t] { t->cancel(); });
  }
  bool empty() const {
    std::lock_guard lock(mutex_);
    return timers_.empty();
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::shared_ptr<asio::steady_timer>> timers_;
};

class HttpsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tls = make_server_tls_context(test::dev_tls().cert_chain, test::dev_tls().key);
    ASSERT_TRUE(tls.ok()) << tls.error().message;
    tls_ = std::make_shared<ListenerTls>(*tls);

    router_.add(verb::get, "/hello", "hello",
                [](const Request& req, const RequestContext&) -> asio::awaitable<Response> {
                  co_return make_response(req, beast_http::status::ok, "text/plain", "hello world");
                });
    router_.add(verb::get, "/peer", "peer",
                [](const Request& req, const RequestContext& ctx) -> asio::awaitable<Response> {
                  co_return make_response(req, beast_http::status::ok, "text/plain",
                                          ctx.peer.to_string());
                });
    router_.add(verb::post, "/echo", "echo",
                [](const Request& req, const RequestContext&) -> asio::awaitable<Response> {
                  co_return make_response(req, beast_http::status::ok, "text/plain", req.body());
                });
    router_.add_prefix(
        verb::post, "/ews/notify/", "ews_notify",
        [](const Request& req, const RequestContext& ctx) -> asio::awaitable<Response> {
          co_return make_response(req, beast_http::status::ok, "text/plain",
                                  "rest=" + std::string(ctx.path_rest));
        });
    router_.add(verb::get, "/slow", "slow",
                [this](const Request& req, const RequestContext&) -> asio::awaitable<Response> {
                  const milliseconds delay{std::stoi(std::string(req["X-Delay-Ms"]))};
                  ++slow_started_;
                  const bool finished = co_await slow_work_.sleep(delay);
                  co_return make_response(req, beast_http::status::ok, "text/plain",
                                          finished ? "slept" : "woken");
                });
    router_.add(verb::get, "/boom", "boom",
                [](const Request&, const RequestContext&) -> asio::awaitable<Response> {
                  throw std::runtime_error("handler failure for the test");
                  co_return Response{};
                });

    for (int i = 0; i < 2; ++i) threads_.emplace_back([this] { ioc_.run(); });
  }

  void TearDown() override {
    slow_work_.cancel_all();
    if (server_) {
      server_->shutdown(0ms, {});  // a no-op if the test already shut it down
      EXPECT_TRUE(wait_until([&] { return server_->active_connections() == 0; }, 5s))
          << "connections still open at the end of the test";
    }
    EXPECT_TRUE(wait_until([&] { return slow_work_.empty(); }, 5s));
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) t.join();
    server_.reset();
  }

  // Small limits and timeouts so that tests are fast; tests change what they exercise.
  static ServerOptions fast_options() {
    ServerOptions o;
    o.bind_address = "127.0.0.1";
    o.port = 0;
    o.max_body_bytes = 1024;
    o.max_header_bytes = 2048;
    o.max_connections = 50;
    o.handshake_timeout = 3000ms;
    o.header_timeout = 3000ms;
    o.request_timeout = 3000ms;
    o.idle_timeout = 3000ms;
    return o;
  }

  void start(ServerOptions options = fast_options()) {
    server_ = std::make_unique<HttpsServer>(ioc_, *tls_, options, router_, metrics_);
    const auto st = server_->listen();
    ASSERT_TRUE(st.ok()) << st.error().message;
    ASSERT_NE(server_->local_port(), 0);
    server_->start();
    port_ = server_->local_port();
  }

  std::string metrics_text() const { return serialize_metrics(registry_); }

  // The value of one series, e.g. `name{code="200",route="x"}`, or nullopt if absent.
  std::optional<double> sample(const std::string& series) const {
    std::istringstream lines(metrics_text());
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
    }
    return std::nullopt;
  }
  bool sample_reaches(const std::string& series, double value, milliseconds timeout = 2s) const {
    return wait_until([&] { return sample(series).value_or(0) >= value; }, timeout);
  }

  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(ioc_);
  std::vector<std::thread> threads_;
  std::shared_ptr<ListenerTls> tls_;
  prometheus::Registry registry_;
  ServerMetrics metrics_{registry_};
  Router router_;
  SlowWork slow_work_;
  std::atomic<int> slow_started_{0};
  std::unique_ptr<HttpsServer> server_;
  std::uint16_t port_ = 0;
};

// ---- plain requests
// ------------------------------------------------------------------------------

TEST_F(HttpsServerTest, GetIsAnsweredWithBody) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/hello?x=1"));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello world");
  EXPECT_EQ(r.header("Content-Type"), "text/plain");
  EXPECT_EQ(r.header("Content-Length"), "11");
}

TEST_F(HttpsServerTest, HttpsRequestHelperWorks) {
  ASSERT_NO_FATAL_FAILURE(start());
  const HttpReply r = test::https_request(port_, "POST", "/echo", "ping");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ping");
}

TEST_F(HttpsServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/hello"));
  const HttpReply first = conn.read_response(2s);
  EXPECT_EQ(first.status, 200);
  EXPECT_NE(first.header("Connection"), "close");
  conn.send(request_text("POST", "/echo", "second body"));
  const HttpReply second = conn.read_response(2s);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(second.body, "second body");
  EXPECT_EQ(server_->active_connections(), 1u);
}

TEST_F(HttpsServerTest, PipelinedRequestsAreAnsweredInOrder) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("POST", "/echo", "one") + request_text("POST", "/echo", "two"));
  EXPECT_EQ(conn.read_response(2s).body, "one");
  EXPECT_EQ(conn.read_response(2s).body, "two");
}

TEST_F(HttpsServerTest, KeepAliveRequestsWithIdleGapsAreServedOnOneConnection) {
  ASSERT_NO_FATAL_FAILURE(start());  // idle_timeout 3 s
  RawTlsConnection conn(port_);
  for (int i = 0; i < 3; ++i) {
    // Each gap lets the connection go idle: its buffers are given back, then made again.
    std::this_thread::sleep_for(150ms);
    const std::string body = "request " + std::to_string(i) + std::string(900, 'x');
    conn.send(request_text("POST", "/echo", body));
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, body);
  }
  EXPECT_EQ(server_->active_connections(), 1u);
}

TEST_F(HttpsServerTest, ThreePipelinedRequestsInOneWriteAreAllAnswered) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  // All three arrive in one TLS record: the second and third must be served from what is
  // already read, without waiting for the socket to become readable again.
  conn.send(request_text("GET", "/hello") + request_text("POST", "/echo", "middle") +
            request_text("GET", "/nowhere"));
  EXPECT_EQ(conn.read_response(2s).body, "hello world");
  EXPECT_EQ(conn.read_response(2s).body, "middle");
  EXPECT_EQ(conn.read_response(2s).status, 404);
  conn.send(request_text("GET", "/hello"));
  EXPECT_EQ(conn.read_response(2s).status, 200);
}

TEST_F(HttpsServerTest, ConnectionCloseRequestIsClosedAfterTheReply) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/hello", "", {{"Connection", "close"}}));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_TRUE(conn.closed_by_peer(2s));
}

TEST_F(HttpsServerTest, PrefixRouteHandlerGetsTheRestOfThePath) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("POST", "/ews/notify/abc123?q=1", "x"));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "rest=abc123");
}

TEST_F(HttpsServerTest, UnknownPathIs404WithJsonBody) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/nope"));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  const auto body = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(body.is_object()) << r.body;
  EXPECT_EQ(body.value("error", ""), "not_found");
  // A 404 keeps the connection usable.
  conn.send(request_text("GET", "/hello"));
  EXPECT_EQ(conn.read_response(2s).status, 200);
}

TEST_F(HttpsServerTest, WrongMethodIs405WithAllowHeader) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("POST", "/hello", "x"));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "GET");
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  const auto body = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(body.is_object()) << r.body;
  EXPECT_EQ(body.value("error", ""), "method_not_allowed");
  conn.send(request_text("GET", "/echo"));
  const HttpReply echo = conn.read_response(2s);
  EXPECT_EQ(echo.status, 405);
  EXPECT_EQ(echo.header("Allow"), "POST");
}

// ---- limits and malformed requests
// ---------------------------------------------------------------

TEST_F(HttpsServerTest, ContentLengthOverLimitIs413BeforeTheBodyIsSent) {
  auto o = fast_options();
  o.max_body_bytes = 64;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  // Only the headers: the server must refuse without waiting for 100000 bytes.
  conn.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
      "Content-Type: text/plain\r\n\r\n");
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_THAT(r.body, HasSubstr("too_large"));
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_TRUE(conn.closed_by_peer(2s));
  EXPECT_TRUE(sample_reaches(R"(mailpush_http_requests_refused_total{reason="body_limit"})", 1, 1s))
      << metrics_text();
}

TEST_F(HttpsServerTest, ExpectContinueWithOversizedContentLengthIs413Not100) {
  auto o = fast_options();
  o.max_body_bytes = 64;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  conn.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n"
      "Expect: 100-continue\r\n\r\n");
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 413) << r.body;
}

TEST_F(HttpsServerTest, BodyAtTheLimitIsAccepted) {
  auto o = fast_options();
  o.max_body_bytes = 64;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  const std::string body(64, 'b');
  conn.send(request_text("POST", "/echo", body));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);
}

TEST_F(HttpsServerTest, ChunkedBodyGrowingOverLimitIs413) {
  auto o = fast_options();
  o.max_body_bytes = 64;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  conn.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
      "28\r\n" +
      std::string(40, 'a') + "\r\n");
  conn.send("28\r\n" + std::string(40, 'b') + "\r\n0\r\n\r\n");
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_THAT(r.body, HasSubstr("too_large"));
  EXPECT_TRUE(sample_reaches(R"(mailpush_http_requests_refused_total{reason="body_limit"})", 1, 1s))
      << metrics_text();
}

TEST_F(HttpsServerTest, ChunkedBodyWithinLimitIsAccepted) {
  auto o = fast_options();
  o.max_body_bytes = 64;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  conn.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello world");
}

TEST_F(HttpsServerTest, HeadersOverLimitAre431) {
  auto o = fast_options();
  o.max_header_bytes = 1024;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/hello", "", {{"X-Padding", std::string(1500, 'p')}}));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 431) << r.body;
  EXPECT_THAT(r.body, HasSubstr("headers_too_large"));
  EXPECT_TRUE(conn.closed_by_peer(2s));
  EXPECT_TRUE(
      sample_reaches(R"(mailpush_http_requests_refused_total{reason="header_limit"})", 1, 1s))
      << metrics_text();
}

TEST_F(HttpsServerTest, BytesThatAreNotHttpGet400AtOnceAndTheConnectionCloses) {
  // The finding: bytes without a line end got no answer until a timeout.
  ASSERT_NO_FATAL_FAILURE(start());  // header timeout 3 s
  for (const std::string& garbage :
       {std::string("\x16\x03\x01\x02\x00\x01", 6), std::string("hello there"),
        std::string("GET/ HTTP/1.1"), std::string(" GET / HTTP/1.1"), std::string(25, 'A')}) {
    RawTlsConnection conn(port_);
    const auto started = steady_clock::now();
    conn.send(garbage);
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_THAT(r.body, HasSubstr("not an HTTP/1.1 request"));
    EXPECT_TRUE(conn.closed_by_peer(2500ms));
    EXPECT_LT(since(started), 2500ms) << "answered without waiting for the header timeout";
  }
}

TEST_F(HttpsServerTest, TransferEncodingOtherThanExactlyChunkedIs400AndCloses) {
  ASSERT_NO_FATAL_FAILURE(start());
  const std::vector<std::string> framings = {
      "Transfer-Encoding: gzip\r\n",
      "Transfer-Encoding: gzip, chunked\r\n",
      "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
      "Content-Length: 5\r\nContent-Length: 5\r\n",
  };
  for (const auto& framing : framings) {
    RawTlsConnection conn(port_);
    conn.send("POST /echo HTTP/1.1\r\nHost: localhost\r\n" + framing +
              "\r\n5\r\nhello\r\n0\r\n\r\n");
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 400) << framing << r.body;
    EXPECT_TRUE(conn.closed_by_peer(2500ms)) << framing;
  }
  RawTlsConnection ok(port_);
  ok.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: Chunked \r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n");
  EXPECT_EQ(ok.read_response(2s).body, "hello");
}

TEST_F(HttpsServerTest, RouteBodyLimitIsJudgedFromTheHeadersBeforeAnyBodyByte) {
  router_.add(
      verb::post, "/small", "small",
      [](const Request& req, const RequestContext&) -> asio::awaitable<Response> {
        co_return make_response(req, beast_http::status::ok, "text/plain", req.body());
      },
      RouteOptions{16, {}});
  ASSERT_NO_FATAL_FAILURE(start());  // server limit 1024
  {
    RawTlsConnection conn(port_);
    conn.send("POST /small HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n");
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 413) << r.body;
    EXPECT_THAT(r.body, HasSubstr("16 bytes"));
    EXPECT_TRUE(conn.closed_by_peer(2500ms));
  }
  {
    RawTlsConnection conn(port_);
    conn.send(request_text("POST", "/small", std::string(16, 's')));
    EXPECT_EQ(conn.read_response(2s).status, 200);
  }
  {
    // GET routes take no body unless they say so.
    RawTlsConnection conn(port_);
    conn.send(request_text("GET", "/hello", "a body"));
    EXPECT_EQ(conn.read_response(2s).status, 413);
  }
  {
    RawTlsConnection conn(port_);
    conn.send(request_text("POST", "/echo", std::string(500, 'e')));
    EXPECT_EQ(conn.read_response(2s).status, 200) << "other routes keep the server's limit";
  }
}

TEST_F(HttpsServerTest, HeaderCheckAnswersBeforeTheBodyIsRead) {
  std::atomic<int> bodies{0};
  router_.add_prefix(
      verb::post, "/checked/", "checked",
      [&bodies](const Request& req, const RequestContext&) -> asio::awaitable<Response> {
        ++bodies;
        co_return make_response(req, beast_http::status::ok, "text/plain", "handled");
      },
      RouteOptions{1024 * 1024,
                   [](const RequestHeader& h,
                      const RequestContext& ctx) -> asio::awaitable<std::optional<Response>> {
                     if (ctx.path_rest == "good") co_return std::nullopt;
                     co_return make_response(h, beast_http::status::not_found, "text/plain",
                                             "no such thing");
                   }});
  ASSERT_NO_FATAL_FAILURE(start());
  {
    // A small body: answered before it is sent, then read and dropped; the connection stays.
    RawTlsConnection conn(port_);
    conn.send("POST /checked/bad HTTP/1.1\r\nHost: localhost\r\nContent-Length: 900\r\n\r\n");
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.body, "no such thing");
    EXPECT_NE(r.header("Connection"), "close");
    conn.send(std::string(900, 'x'));
    conn.send(request_text("POST", "/checked/good", "x"));
    EXPECT_EQ(conn.read_response(2s).body, "handled");
  }
  {
    // A large one is never read: answered, then the connection closes.
    RawTlsConnection conn(port_);
    conn.send("POST /checked/bad HTTP/1.1\r\nHost: localhost\r\nContent-Length: 900000\r\n\r\n");
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_TRUE(conn.closed_by_peer(2500ms));
  }
  EXPECT_EQ(bodies.load(), 1);
}

TEST_F(HttpsServerTest, UnknownPathIsAnsweredFromTheHeaderAndALargeBodyClosesTheConnection) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    RawTlsConnection conn(port_);
    conn.send("POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n");
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.header("Connection"), "close");
    EXPECT_TRUE(conn.closed_by_peer(2500ms));
  }
  {
    // A small one is answered at once, then read and dropped: the connection stays.
    RawTlsConnection conn(port_);
    conn.send("POST /nowhere HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500\r\n\r\n");
    EXPECT_EQ(conn.read_response(2s).status, 404);
    conn.send(std::string(500, 'z') + request_text("GET", "/hello"));
    EXPECT_EQ(conn.read_response(2s).body, "hello world");
  }
}

TEST_F(HttpsServerTest, GarbageRequestLineIs400) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send("THIS IS NOT HTTP\r\n\r\n");
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_THAT(r.body, HasSubstr("bad_request"));
  EXPECT_TRUE(conn.closed_by_peer(2s));
  EXPECT_TRUE(
      sample_reaches(R"(mailpush_http_requests_refused_total{reason="bad_request"})", 1, 1s))
      << metrics_text();
}

TEST_F(HttpsServerTest, ExpectContinueGets100ThenTheReply) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(
      "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 7\r\n"
      "Expect: 100-continue\r\n\r\n");
  const HttpReply interim = conn.read_response(2s);
  EXPECT_EQ(interim.status, 100);
  conn.send("payload");
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "payload");
}

TEST_F(HttpsServerTest, HandlerExceptionIs500AndServerKeepsServing) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    RawTlsConnection conn(port_);
    conn.send(request_text("GET", "/boom"));
    const HttpReply r = conn.read_response(2s);
    EXPECT_EQ(r.status, 500);
    EXPECT_THAT(r.body, HasSubstr("internal_error"));
    EXPECT_THAT(r.body, Not(HasSubstr("handler failure for the test")));
  }
  RawTlsConnection other(port_);
  other.send(request_text("GET", "/hello"));
  EXPECT_EQ(other.read_response(2s).status, 200);
  EXPECT_TRUE(sample_reaches(R"(mailpush_http_requests_total{code="500",route="boom"})", 1, 1s))
      << metrics_text();
}

// ---- timeouts
// ------------------------------------------------------------------------------------

TEST_F(HttpsServerTest, IncompleteHeadersAreAnswered408AfterTheHeaderTimeout) {
  auto o = fast_options();
  o.header_timeout = 300ms;
  o.idle_timeout = 10000ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  const auto started = steady_clock::now();
  conn.send("GET /hello HTTP/1.1\r\nHost: localhost\r\nX-Never: ");
  const HttpReply r = conn.read_response(3s);
  EXPECT_EQ(r.status, 408) << r.body;
  EXPECT_THAT(r.body, HasSubstr("header_timeout"));
  EXPECT_TRUE(conn.closed_by_peer(3s));
  const auto waited = since(started);
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 2500ms);
  EXPECT_TRUE(
      sample_reaches(R"(mailpush_http_requests_refused_total{reason="header_timeout"})", 1, 1s))
      << metrics_text();
}

TEST_F(HttpsServerTest, HeaderSentAByteAtATimeCannotHoldTheConnectionForTheIdleTimeout) {
  // Were header reads governed by the idle timeout (60 s), a byte every few seconds would hold
  // a connection for a minute. The header timeout counts from its first byte.
  auto o = fast_options();
  o.header_timeout = 600ms;
  o.idle_timeout = 20000ms;
  o.request_timeout = 20000ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  const auto started = steady_clock::now();
  const std::string header =
      "GET /hello HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa";
  bool cut = false;
  for (char c : header) {
    try {
      conn.send(std::string(1, c));
    } catch (const std::exception&) {
      cut = true;
      break;
    }
    std::this_thread::sleep_for(50ms);
    if (since(started) > 1500ms) break;
  }
  EXPECT_TRUE(cut || conn.closed_by_peer(3s));
  EXPECT_LT(since(started), 4000ms);
  EXPECT_TRUE(
      sample_reaches(R"(mailpush_http_requests_refused_total{reason="header_timeout"})", 1, 1s))
      << metrics_text();
}

TEST_F(HttpsServerTest, KeepAliveWaitStillUsesTheIdleTimeout) {
  auto o = fast_options();
  o.header_timeout = 200ms;
  o.idle_timeout = 3000ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/hello"));
  ASSERT_EQ(conn.read_response(2s).status, 200);
  std::this_thread::sleep_for(800ms);  // longer than the header timeout, shorter than idle
  conn.send(request_text("GET", "/hello"));
  EXPECT_EQ(conn.read_response(2s).status, 200);
}

TEST_F(HttpsServerTest, BodyNeverSentIsClosedAfterRequestTimeout) {
  auto o = fast_options();
  o.request_timeout = 300ms;
  o.idle_timeout = 10000ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  const auto started = steady_clock::now();
  conn.send("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc");
  EXPECT_TRUE(conn.closed_by_peer(3s));
  const auto waited = since(started);
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 2000ms);
}

TEST_F(HttpsServerTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  auto o = fast_options();
  o.idle_timeout = 300ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/hello"));
  ASSERT_EQ(conn.read_response(2s).status, 200);
  const auto started = steady_clock::now();
  EXPECT_TRUE(conn.closed_by_peer(3s));
  const auto waited = since(started);
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 2000ms);
  // An idle connection timing out is not a refused request.
  EXPECT_FALSE(sample(R"(mailpush_http_requests_refused_total{reason="timeout"})").has_value());
}

TEST_F(HttpsServerTest, SilentTcpClientIsClosedAfterHandshakeTimeout) {
  auto o = fast_options();
  o.handshake_timeout = 300ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  PlainTcpConnection conn(port_);
  ASSERT_TRUE(conn.connected());
  const auto started = steady_clock::now();
  EXPECT_TRUE(conn.closed_by_peer(3s));
  const auto waited = since(started);
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 2000ms);
  EXPECT_TRUE(sample_reaches("mailpush_http_tls_handshake_failures_total", 1, 1s))
      << metrics_text();
  EXPECT_TRUE(wait_until([&] { return server_->active_connections() == 0; }, 1s));
}

TEST_F(HttpsServerTest, ClientWhoseFirstByteComesLateStillHandshakes) {
  auto o = fast_options();
  o.handshake_timeout = 1000ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  // Silent for a while after connecting (the server waits without any TLS state), then a
  // handshake and a request within the handshake timeout.
  RawTlsConnection conn(port_, 400ms);
  conn.send(request_text("GET", "/hello"));
  const HttpReply r = conn.read_response(2s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello world");
  EXPECT_FALSE(sample("mailpush_http_tls_handshake_failures_total").value_or(0) > 0)
      << metrics_text();
}

TEST_F(HttpsServerTest, PlainHttpOnTheTlsPortFailsTheHandshakeAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start());  // handshake_timeout 3 s
  PlainTcpConnection conn(port_);
  ASSERT_TRUE(conn.connected());
  conn.send("GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_TRUE(conn.closed_by_peer(1500ms));
  EXPECT_TRUE(sample_reaches("mailpush_http_tls_handshake_failures_total", 1, 1s))
      << metrics_text();
}

// ---- connection limit
// ----------------------------------------------------------------------------

TEST_F(HttpsServerTest, ConnectionOverMaxIsClosedAtOnceWhenNoneIsIdle) {
  auto o = fast_options();
  o.max_connections = 2;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection first(port_);
  RawTlsConnection second(port_);
  // Both busy: a request in flight on each.
  first.send(request_text("GET", "/slow", "", {{"X-Delay-Ms", "1500"}}));
  second.send(request_text("GET", "/slow", "", {{"X-Delay-Ms", "1500"}}));
  ASSERT_TRUE(wait_until([&] { return slow_started_ == 2; }, 2s));

  PlainTcpConnection third(port_);
  ASSERT_TRUE(third.connected());  // the kernel accepts; the server closes it at once
  EXPECT_TRUE(third.closed_by_peer(1s));
  EXPECT_TRUE(sample_reaches(
      R"(mailpush_http_connections_rejected_total{reason="max_connections"})", 1, 1s))
      << metrics_text();

  // The two admitted connections finish their requests.
  EXPECT_EQ(first.read_response(3s).status, 200);
  EXPECT_EQ(second.read_response(3s).status, 200);
}

TEST_F(HttpsServerTest, AtTheLimitTheLongestIdleConnectionMakesRoomForANewOne) {
  // The finding: at the global limit new connections were refused while idle ones stayed, so
  // whoever holds idle connections (bare TCP or keep-alive) locked everyone else out.
  auto o = fast_options();
  o.max_connections = 3;
  o.idle_timeout = 20000ms;
  o.handshake_timeout = 20000ms;
  ASSERT_NO_FATAL_FAILURE(start(o));
  PlainTcpConnection silent(port_);  // oldest idle: never sent a byte
  ASSERT_TRUE(wait_until([&] { return server_->active_connections() == 1; }, 1s));
  RawTlsConnection keep_alive(port_);
  keep_alive.send(request_text("GET", "/hello"));
  ASSERT_EQ(keep_alive.read_response(2s).status, 200);  // idle since this answer
  RawTlsConnection busy(port_);
  busy.send(request_text("GET", "/slow", "", {{"X-Delay-Ms", "2500"}}));
  ASSERT_TRUE(wait_until([&] { return slow_started_ == 1; }, 2s));

  RawTlsConnection newcomer(port_);  // evicts `silent`
  newcomer.send(request_text("GET", "/hello"));
  EXPECT_EQ(newcomer.read_response(2s).status, 200);
  EXPECT_TRUE(silent.closed_by_peer(2s));
  RawTlsConnection another(port_);  // evicts `keep_alive`, then `newcomer` is the idle one
  another.send(request_text("GET", "/hello"));
  EXPECT_EQ(another.read_response(2s).status, 200);
  EXPECT_TRUE(keep_alive.closed_by_peer(2s));
  EXPECT_EQ(busy.read_response(4s).status, 200) << "a busy connection is never the one closed";
  EXPECT_TRUE(sample_reaches("mailpush_http_connections_evicted_total", 2, 1s)) << metrics_text();
}

TEST_F(HttpsServerTest, OneAddressCannotTakeMoreThanItsShareOfConnections) {
  auto o = fast_options();
  o.max_connections_per_address = 2;
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection a(port_);
  auto b = std::make_unique<RawTlsConnection>(port_);
  PlainTcpConnection c(port_);
  ASSERT_TRUE(c.connected());
  EXPECT_TRUE(c.closed_by_peer(1s));
  EXPECT_TRUE(
      sample_reaches(R"(mailpush_http_connections_rejected_total{reason="per_address"})", 1, 1s))
      << metrics_text();
  a.send(request_text("GET", "/hello"));
  EXPECT_EQ(a.read_response(2s).status, 200);
  b->send(request_text("GET", "/hello", "", {{"Connection", "close"}}));
  EXPECT_EQ(b->read_response(2s).status, 200);
  ASSERT_TRUE(b->closed_by_peer(2s));
  // The server lingers for the client's end of the connection (up to 2 s): give it at once.
  b.reset();
  ASSERT_TRUE(wait_until([&] { return server_->active_connections() == 1; }, 5s));
  RawTlsConnection again(port_);  // the closed one's place is free again
  again.send(request_text("GET", "/hello"));
  EXPECT_EQ(again.read_response(2s).status, 200);
}

TEST_F(HttpsServerTest, NewConnectionsPerAddressAreRateLimited) {
  auto o = fast_options();
  o.connection_burst_per_address = 3;
  o.connections_per_second_per_address = 2;
  ASSERT_NO_FATAL_FAILURE(start(o));
  for (int i = 0; i < 3; ++i) {
    RawTlsConnection ok(port_);
    ok.send(request_text("GET", "/hello"));
    EXPECT_EQ(ok.read_response(2s).status, 200) << i;
  }
  PlainTcpConnection fourth(port_);
  EXPECT_TRUE(fourth.closed_by_peer(1s));
  EXPECT_TRUE(
      sample_reaches(R"(mailpush_http_connections_rejected_total{reason="address_rate"})", 1, 1s))
      << metrics_text();
  std::this_thread::sleep_for(700ms);  // one more token
  RawTlsConnection later(port_);
  later.send(request_text("GET", "/hello"));
  EXPECT_EQ(later.read_response(2s).status, 200);
}

TEST_F(HttpsServerTest, TrustedProxiesAreExemptFromPerAddressLimits) {
  auto o = fast_options();
  o.max_connections_per_address = 1;
  o.trusted_proxies = {*parse_cidr("127.0.0.1/32")};
  ASSERT_NO_FATAL_FAILURE(start(o));
  RawTlsConnection a(port_);
  RawTlsConnection b(port_);
  b.send(request_text("GET", "/hello"));
  EXPECT_EQ(b.read_response(2s).status, 200);
}

TEST_F(HttpsServerTest, ProxyProtocolNamesTheClientThatLimitsCount) {
  auto o = fast_options();
  o.max_connections_per_address = 1;
  o.trusted_proxies = {*parse_cidr("127.0.0.1/32")};
  o.proxy_protocol = true;
  ASSERT_NO_FATAL_FAILURE(start(o));
  const std::string client_a = "PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n";
  RawTlsConnection a(port_, {}, client_a);
  a.send(request_text("GET", "/peer"));
  const auto peer = a.read_response(2s);
  EXPECT_EQ(peer.status, 200);
  EXPECT_EQ(peer.body, "198.51.100.7") << "handlers see the client the PROXY header named";
  // v2 for another client, then a second connection of client A: refused.
  std::string v2("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16);
  v2 += std::string("\xcb\x00\x71\x09\xc0\x00\x02\x01\x9c\x40\x01\xbb", 12);  // 203.0.113.9
  RawTlsConnection b(port_, {}, v2);
  b.send(request_text("GET", "/hello"));
  EXPECT_EQ(b.read_response(2s).status, 200);
  PlainTcpConnection a_again(port_);
  a_again.send(client_a);
  EXPECT_TRUE(a_again.closed_by_peer(1s));
  EXPECT_TRUE(
      sample_reaches(R"(mailpush_http_connections_rejected_total{reason="per_address"})", 1, 1s))
      << metrics_text();
  // Half a header, then silence: closed at the handshake deadline, not held.
  {
    PlainTcpConnection partial(port_);
    partial.send("PROXY TCP4 198.51.100.9 192.0.2.1 ");
    const auto started = steady_clock::now();
    EXPECT_TRUE(partial.closed_by_peer(5s));
    EXPECT_LT(since(started), 4500ms) << "handshake_timeout is 3 s";
  }
  // A trusted peer that sends no PROXY header is refused: it must always send one.
  PlainTcpConnection bare(port_);
  bare.send(std::string("\x16\x03\x01\x00\x05hello", 10));
  EXPECT_TRUE(bare.closed_by_peer(1s));
}

TEST_F(HttpsServerTest, ConnectionSlotIsReusedAfterAClose) {
  auto o = fast_options();
  o.max_connections = 1;
  ASSERT_NO_FATAL_FAILURE(start(o));
  {
    RawTlsConnection first(port_);
    first.send(request_text("GET", "/hello"));
    ASSERT_EQ(first.read_response(2s).status, 200);
  }
  ASSERT_TRUE(wait_until([&] { return server_->active_connections() == 0; }, 2s));
  RawTlsConnection again(port_);
  again.send(request_text("GET", "/hello"));
  EXPECT_EQ(again.read_response(2s).status, 200);
}

// ---- shutdown
// ------------------------------------------------------------------------------------

TEST_F(HttpsServerTest, ShutdownWithoutConnectionsIsDoneAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start());
  DoneProbe done;
  server_->shutdown(5s, done.callback());
  EXPECT_EQ(done.wait(1s), std::optional<std::size_t>(0));
  EXPECT_EQ(done.calls(), 1);
}

TEST_F(HttpsServerTest, ShutdownClosesIdleKeepAliveConnectionsPromptly) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto used = std::make_unique<RawTlsConnection>(port_);
  used->send(request_text("GET", "/hello"));
  ASSERT_EQ(used->read_response(2s).status, 200);
  auto fresh = std::make_unique<RawTlsConnection>(port_);  // handshake done, no request yet
  ASSERT_TRUE(wait_until([&] { return server_->active_connections() == 2; }, 1s));

  DoneProbe done;
  const auto started = steady_clock::now();
  server_->shutdown(5s, done.callback());
  EXPECT_TRUE(used->closed_by_peer(1s));
  EXPECT_TRUE(fresh->closed_by_peer(1s));
  EXPECT_LT(since(started), 1000ms);
  used.reset();
  fresh.reset();
  // Idle connections are not "forced", and nobody waits for the 5 s grace.
  EXPECT_EQ(done.wait(2s), std::optional<std::size_t>(0));
  EXPECT_LT(since(started), 3000ms);
  EXPECT_EQ(done.calls(), 1);
}

TEST_F(HttpsServerTest, ShutdownLetsRequestInFlightFinishWithConnectionClose) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto conn = std::make_unique<RawTlsConnection>(port_);
  conn->send(request_text("GET", "/slow", "", {{"X-Delay-Ms", "400"}}));
  ASSERT_TRUE(wait_until([&] { return slow_started_ == 1; }, 2s));

  DoneProbe done;
  server_->shutdown(5s, done.callback());
  // The handler still has most of its 400 ms to go: nothing is done yet.
  EXPECT_FALSE(done.wait(150ms).has_value());

  const HttpReply r = conn->read_response(3s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "slept");
  EXPECT_EQ(r.header("Connection"), "close");
  EXPECT_TRUE(conn->closed_by_peer(1s));
  // The server's TLS close waits for the client's close_notify or EOF: give it the EOF.
  conn.reset();
  EXPECT_EQ(done.wait(1s), std::optional<std::size_t>(0));
  EXPECT_EQ(done.calls(), 1);
}

TEST_F(HttpsServerTest, NewConnectionAfterShutdownIsRefused) {
  // A reserved port below the ephemeral range: once the listener is closed, nothing else on the
  // machine (another test's bind to port 0, or this test's own probe connecting to itself from
  // the same ephemeral port) can answer on it and make the refusal look like an accept.
  ServerOptions options = fast_options();
  options.port = test::free_tcp_port();
  ASSERT_NO_FATAL_FAILURE(start(options));
  // A request in flight keeps the server draining while the new connection is tried.
  auto busy = std::make_unique<RawTlsConnection>(port_);
  busy->send(request_text("GET", "/slow", "", {{"X-Delay-Ms", "500"}}));
  ASSERT_TRUE(wait_until([&] { return slow_started_ == 1; }, 2s));
  DoneProbe done;
  server_->shutdown(5s, done.callback());

  // shutdown() closes the acceptor on the server's strand: on a loaded machine that can take a
  // while, and a connection the kernel queued before it is reset then.
  {
    PlainTcpConnection late(port_);
    EXPECT_TRUE(!late.connected() || late.closed_by_peer(5s));
  }
  EXPECT_TRUE(wait_until(
      [&] {
        PlainTcpConnection probe(port_);
        return !probe.connected();
      },
      5s))
      << "the listener still accepts connections after shutdown";
  EXPECT_THROW(RawTlsConnection{port_}, std::exception);

  EXPECT_EQ(busy->read_response(3s).status, 200);
  busy.reset();
  EXPECT_EQ(done.wait(2s), std::optional<std::size_t>(0));
}

// A client that reads the server's close_notify but never answers it (and keeps the socket open)
// is not busy: the server has nothing left to do for it, so it must not count as forced.
TEST_F(HttpsServerTest, ShutdownDoesNotCountIdleConnectionsAsForced) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/hello"));
  ASSERT_EQ(conn.read_response(2s).status, 200);

  DoneProbe done;
  server_->shutdown(300ms, done.callback());
  EXPECT_TRUE(conn.closed_by_peer(1s));
  EXPECT_EQ(done.wait(2500ms), std::optional<std::size_t>(0));
}

TEST_F(HttpsServerTest, ShutdownForcesRequestsThatOutliveTheGrace) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  conn.send(request_text("GET", "/slow", "", {{"X-Delay-Ms", "10000"}}));
  ASSERT_TRUE(wait_until([&] { return slow_started_ == 1; }, 2s));

  DoneProbe done;
  const auto started = steady_clock::now();
  server_->shutdown(200ms, done.callback());
  const auto forced = done.wait(1500ms);
  EXPECT_EQ(forced, std::optional<std::size_t>(1))
      << "done() not called within 1.5 s of a 200 ms grace (waited " << since(started).count()
      << " ms)";
  EXPECT_TRUE(conn.closed_by_peer(1s));
}

// ---- metrics
// -------------------------------------------------------------------------------------

TEST_F(HttpsServerTest, RequestsAreCountedByRouteAndCodeWithoutSecrets) {
  ASSERT_NO_FATAL_FAILURE(start());
  RawTlsConnection conn(port_);
  for (int i = 0; i < 2; ++i) {
    conn.send(request_text("GET", "/hello"));
    ASSERT_EQ(conn.read_response(2s).status, 200);
  }
  conn.send(request_text("GET", "/nope"));
  ASSERT_EQ(conn.read_response(2s).status, 404);
  conn.send(request_text("POST", "/ews/notify/TopSecretToken-7f3a9c", "{}"));
  ASSERT_EQ(conn.read_response(2s).status, 200);
  conn.send(request_text("GET", "/ews/notify/TopSecretToken-7f3a9c"));
  ASSERT_EQ(conn.read_response(2s).status, 405);

  EXPECT_TRUE(sample_reaches(R"(mailpush_http_requests_total{code="405",route="ews_notify"})", 1))
      << metrics_text();
  const std::string text = metrics_text();
  // prometheus-cpp writes labels sorted by name.
  EXPECT_THAT(text, HasSubstr("mailpush_http_requests_total{code=\"200\",route=\"hello\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("mailpush_http_requests_total{code=\"404\",route=\"unmatched\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("mailpush_http_requests_total{code=\"200\",route=\"ews_notify\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mailpush_http_request_duration_seconds_count{route=\"hello\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("mailpush_http_connections_active 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("TopSecretToken")));
  EXPECT_THAT(text, Not(HasSubstr("/ews/notify")));
}

TEST_F(HttpsServerTest, ActiveConnectionsGaugeFollowsConnections) {
  ASSERT_NO_FATAL_FAILURE(start());
  {
    RawTlsConnection a(port_);
    RawTlsConnection b(port_);
    EXPECT_TRUE(sample_reaches("mailpush_http_connections_active", 2)) << metrics_text();
    EXPECT_EQ(server_->active_connections(), 2u);
  }
  EXPECT_TRUE(wait_until(
      [&] { return sample("mailpush_http_connections_active") == std::optional<double>(0); }, 2s))
      << metrics_text();
  EXPECT_EQ(sample("mailpush_http_connections_total"), std::optional<double>(2));
}

// ---- listening
// -----------------------------------------------------------------------------------

TEST_F(HttpsServerTest, ListenOnATakenPortNamesTheAddress) {
  ASSERT_NO_FATAL_FAILURE(start());
  auto o = fast_options();
  o.port = port_;
  HttpsServer second(ioc_, *tls_, o, router_, metrics_);
  const auto st = second.listen();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("127.0.0.1:" + std::to_string(port_)));
}

TEST_F(HttpsServerTest, ListenOnABadAddressIsAnError) {
  auto o = fast_options();
  o.bind_address = "not-an-address";
  HttpsServer server(ioc_, *tls_, o, router_, metrics_);
  const auto st = server.listen();
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.error().message, HasSubstr("listener.bind_address"));
}

// ---- TLS context
// ---------------------------------------------------------------------------------

class ServerTlsContextTest : public ::testing::Test {
 protected:
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  fs::path dir_ = test::make_temp_dir("http-tls");
};

TEST_F(ServerTlsContextTest, DevFilesGiveAContext) {
  const auto ctx = make_server_tls_context(test::dev_tls().cert_chain, test::dev_tls().key);
  ASSERT_TRUE(ctx.ok()) << ctx.error().message;
  EXPECT_NE(*ctx, nullptr);
}

TEST_F(ServerTlsContextTest, MissingCertFileNamesTheSettingAndThePath) {
  const fs::path missing = dir_ / "no-such-cert.pem";
  const auto ctx = make_server_tls_context(missing, test::dev_tls().key);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error().code, Errc::invalid_argument);
  EXPECT_THAT(ctx.error().message, HasSubstr("listener.tls_cert"));
  EXPECT_THAT(ctx.error().message, HasSubstr(missing.string()));
}

TEST_F(ServerTlsContextTest, MissingKeyFileNamesTheSettingAndThePath) {
  const fs::path missing = dir_ / "no-such-key.pem";
  const auto ctx = make_server_tls_context(test::dev_tls().cert_chain, missing);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.error().message, HasSubstr("listener.tls_key"));
  EXPECT_THAT(ctx.error().message, HasSubstr(missing.string()));
}

TEST_F(ServerTlsContextTest, CertFileWithoutACertificateIsAnError) {
  const fs::path junk = dir_ / "junk.crt";
  test::write_file(junk, "not a certificate\n");
  const auto ctx = make_server_tls_context(junk, test::dev_tls().key);
  ASSERT_FALSE(ctx.ok());
  EXPECT_THAT(ctx.error().message, HasSubstr("listener.tls_cert"));
}

TEST_F(ServerTlsContextTest, KeyNotMatchingTheCertificateIsAnError) {
  const fs::path other_key = dir_ / "other.key";
  std::string out;
  ASSERT_EQ(test::run_command({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                               "ec_paramgen_curve:P-256", "-out", other_key.string()},
                              &out),
            0)
      << out;
  const auto ctx = make_server_tls_context(test::dev_tls().cert_chain, other_key);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error().code, Errc::invalid_argument);
  EXPECT_THAT(ctx.error().message, HasSubstr("listener.tls_key"));
  // "does not match" from our own check, or OpenSSL's "key values mismatch" while loading.
  EXPECT_THAT(ctx.error().message, HasSubstr("match"));
}

}  // namespace
}  // namespace mp::http
