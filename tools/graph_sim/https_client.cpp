// graph-sim's HTTPS client (see https_client.hpp).
#include "https_client.hpp"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>

namespace graph_sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

namespace {

constexpr std::size_t kMaxAnswerBody = 64 * 1024;
// An idle connection older than this is closed rather than reused: the endpoint may have closed
// it already (mailpushd's keep-alive timeout is longer).
constexpr auto kIdleReuse = std::chrono::seconds(20);

bool closed_by_peer(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::ssl::error::stream_truncated;
}

}  // namespace

HttpsClient::HttpsClient(asio::io_context& io, asio::ssl::context& tls,
                         std::map<std::string, std::string> resolve,
                         unsigned connections_per_endpoint)
    : io_(io), tls_(tls), resolve_(std::move(resolve)), per_endpoint_(connections_per_endpoint) {}

unsigned HttpsClient::open_connections() const {
  unsigned n = 0;
  for (const auto& [key, pool] : pools_) n += pool.open;
  return n;
}

HttpsClient::Pool& HttpsClient::pool_for(const Url& url) {
  auto [it, fresh] = pools_.try_emplace(url.authority());
  Pool& pool = it->second;
  if (!fresh) return pool;
  std::string host = url.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (const auto r = resolve_.find(host); r != resolve_.end()) host = r->second;
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) {
    pool.refused = "no loopback address for " + url.host + " (see --resolve)";
  } else if (!address.is_loopback()) {
    pool.refused = url.host + " is not a loopback address: graph-sim connects to nothing else";
  } else {
    pool.endpoint = tcp::endpoint(address, url.port);
  }
  return pool;
}

void HttpsClient::release(Pool& pool, std::unique_ptr<Stream> stream) {
  pool.idle.push_back({std::move(stream), Clock::now()});
  if (!pool.waiters.empty()) {
    pool.waiters.front()->cancel();
    pool.waiters.pop_front();
  }
}

void HttpsClient::forget(Pool& pool) {
  --pool.open;
  if (!pool.waiters.empty()) {
    pool.waiters.front()->cancel();
    pool.waiters.pop_front();
  }
}

asio::awaitable<Answer> HttpsClient::exchange(Stream& stream, const Url& url,
                                              const std::string& content_type,
                                              const std::string& body, bool& reusable,
                                              bool& sent_nothing) {
  Answer a;
  reusable = false;
  sent_nothing = false;
  http::request<http::string_body> req{http::verb::post, url.target, 11};
  req.set(http::field::host, url.authority());
  req.set(http::field::user_agent, "graph-sim (Microsoft Graph change notifications simulator)");
  req.set(http::field::content_type, content_type);
  req.body() = body;
  req.keep_alive(true);
  req.prepare_payload();
  auto [wec, wn] = co_await http::async_write(stream, req, nothrow);
  if (wec) {
    a.timed_out = wec == beast::error::timeout;
    a.error = a.timed_out ? "timeout" : "write: " + wec.message();
    sent_nothing = closed_by_peer(wec);
    co_return a;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxAnswerBody);
  auto [rec, rn] = co_await http::async_read(stream, buffer, parser, nothrow);
  if (rec) {
    a.timed_out = rec == beast::error::timeout;
    a.error = a.timed_out ? "timeout" : "read: " + rec.message();
    sent_nothing = closed_by_peer(rec) && rn == 0;
    co_return a;
  }
  const auto& res = parser.get();
  a.status = res.result_int();
  a.content_type = std::string(res[http::field::content_type]);
  a.body = res.body();
  const auto ra = res[http::field::retry_after];
  unsigned seconds = 0;
  if (const auto [p, ec] = std::from_chars(ra.data(), ra.data() + ra.size(), seconds);
      !ra.empty() && ec == std::errc{} && p == ra.data() + ra.size()) {
    a.retry_after = std::chrono::seconds(seconds);
  }
  reusable = res.keep_alive() && buffer.size() == 0;
  co_return a;
}

asio::awaitable<Answer> HttpsClient::post(const Url& url, const std::string& content_type,
                                          const std::string& body, milliseconds timeout) {
  Pool& pool = pool_for(url);
  if (!pool.refused.empty()) {
    Answer a;
    a.error = "refused: " + pool.refused;
    co_return a;
  }
  for (int round = 0;; ++round) {
    // A connection: an idle one, a new one within the limit, or wait for one.
    std::unique_ptr<Stream> stream;
    bool reused = false;
    for (;;) {
      const auto now = Clock::now();
      while (!pool.idle.empty() && now - pool.idle.back().since > kIdleReuse) {
        pool.idle.pop_back();
        --pool.open;
      }
      if (!pool.idle.empty()) {
        stream = std::move(pool.idle.back().stream);
        pool.idle.pop_back();
        reused = true;
        break;
      }
      if (pool.open < per_endpoint_) {
        ++pool.open;
        stream = std::make_unique<Stream>(io_, tls_);
        break;
      }
      auto waiter = std::make_shared<asio::steady_timer>(io_, Clock::time_point::max());
      pool.waiters.push_back(waiter);
      co_await waiter->async_wait(nothrow);
    }
    const auto start = Clock::now();
    auto& layer = beast::get_lowest_layer(*stream);
    layer.expires_after(timeout);
    Answer a;
    if (!reused) {
      ++connections_made_;
      auto [cec] = co_await layer.async_connect(*pool.endpoint, nothrow);
      if (!cec) {
        SSL* ssl = stream->native_handle();
        SSL_set_tlsext_host_name(ssl, url.host.c_str());
        SSL_set1_host(ssl, url.host.c_str());
        auto [hec] = co_await stream->async_handshake(asio::ssl::stream_base::client, nothrow);
        cec = hec;
        if (hec) a.error = "handshake: " + hec.message();
      } else {
        a.error = "connect: " + cec.message();
      }
      if (cec) {
        a.timed_out = cec == beast::error::timeout;
        if (a.timed_out) a.error = "timeout";
        a.elapsed = Clock::now() - start;
        forget(pool);
        co_return a;
      }
    }
    bool reusable = false, sent_nothing = false;
    a = co_await exchange(*stream, url, content_type, body, reusable, sent_nothing);
    a.elapsed = Clock::now() - start;
    if (reusable) {
      layer.expires_never();
      release(pool, std::move(stream));
      co_return a;
    }
    beast::error_code ignored;
    layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
    layer.close();
    forget(pool);
    // A kept-alive connection the endpoint had closed: once more on a new one, as HTTP clients do.
    if (!(reused && sent_nothing && round == 0)) co_return a;
  }
}

}  // namespace graph_sim
