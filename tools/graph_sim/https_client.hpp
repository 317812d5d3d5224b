// graph-sim's HTTPS client: keep-alive connection pools per endpoint (host:port of the URL),
// every connection to a loopback address only, the peer verified against the given CA and the
// URL's host name, one deadline over connect, handshake, write and read.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "sim_rules.hpp"

namespace graph_sim {

// Completion token of every await: errors come back as values, never as exceptions.
inline constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);

// What came back for one request: a status, or why there was none.
struct Answer {
  unsigned status = 0;  // 0: no HTTP answer (see error)
  std::string error;    // "timeout", "connect: …", "handshake: …", "read: …", "refused: …"
  bool timed_out = false;
  std::string content_type;
  std::string body;  // at most 64 KiB
  std::optional<std::chrono::seconds> retry_after;
  Clock::duration elapsed{};  // from the first byte's send (a new connection's set-up included)
  bool ok() const { return status >= 200 && status < 300; }
};

class HttpsClient {
 public:
  // `resolve`: host name → loopback address (e.g. localhost → 127.0.0.1); IP literals need none.
  HttpsClient(boost::asio::io_context& io, boost::asio::ssl::context& tls,
              std::map<std::string, std::string> resolve, unsigned connections_per_endpoint);

  boost::asio::awaitable<Answer> post(const Url& url, const std::string& content_type,
                                      const std::string& body, milliseconds timeout);

  unsigned open_connections() const;
  std::uint64_t connections_made() const { return connections_made_; }

 private:
  using Stream = boost::beast::ssl_stream<boost::beast::tcp_stream>;
  struct Idle {
    std::unique_ptr<Stream> stream;
    Clock::time_point since;
  };
  struct Pool {
    std::optional<boost::asio::ip::tcp::endpoint> endpoint;
    std::string refused;  // why this endpoint is never connected to
    std::vector<Idle> idle;
    unsigned open = 0;
    std::deque<std::shared_ptr<boost::asio::steady_timer>> waiters;
  };

  Pool& pool_for(const Url& url);
  void release(Pool& pool, std::unique_ptr<Stream> stream);
  void forget(Pool& pool);
  boost::asio::awaitable<Answer> exchange(Stream& stream, const Url& url,
                                          const std::string& content_type, const std::string& body,
                                          bool& reusable, bool& sent_nothing);

  boost::asio::io_context& io_;
  boost::asio::ssl::context& tls_;
  std::map<std::string, std::string> resolve_;
  unsigned per_endpoint_;
  std::map<std::string, Pool> pools_;
  std::uint64_t connections_made_ = 0;
};

}  // namespace graph_sim
