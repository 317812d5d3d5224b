// The control interface: Beast HTTP/1.1 sessions (one coroutine each) over handle_control_request.
#include "control_api.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <memory>
#include <stdexcept>

#include "common/log.hpp"
#include "sim_common/query.hpp"

namespace apns_sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

namespace {

constexpr std::size_t kDefaultAcceptedLimit = 10'000;
constexpr std::size_t kMaxAcceptedLimit = 1'000'000;

// The value of `key` in a query string "a=1&b=2", parsed as a count; `fallback` when absent.

ControlReply reply(int status, const json& body) {
  return {status, body.dump()};
}

// One HTTP/1.1 keep-alive session on the control port.
class ControlSession : public std::enable_shared_from_this<ControlSession> {
 public:
  ControlSession(asio::ip::tcp::socket socket, SimState& state)
      : stream_(std::move(socket)), state_(state) {}

  void start() {
    auto self = shared_from_this();
    asio::co_spawn(stream_.get_executor(), run(), [self](std::exception_ptr) {});
  }

 private:
  asio::awaitable<void> run() {
    auto self = shared_from_this();
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(1 << 20);
      stream_.expires_after(std::chrono::seconds(60));
      beast::error_code ec;
      co_await http::async_read(stream_, buffer, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      const auto& req = parser.get();
      const std::string method(req.method_string());
      const std::string target(req.target());
      const ControlReply r = handle_control_request(state_, method, target, req.body());
      http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
      res.set(http::field::content_type, "application/json");
      res.set(http::field::server, "apns-sim");
      res.keep_alive(req.keep_alive());
      res.body() = r.body + "\n";
      res.prepare_payload();
      co_await http::async_write(stream_, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    beast::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  }

  beast::tcp_stream stream_;
  SimState& state_;
};

}  // namespace

ControlReply handle_control_request(SimState& state, const std::string& method,
                                    const std::string& target, const std::string& body) {
  const auto q = target.find('?');
  const std::string path = target.substr(0, q);
  const std::string_view query =
      q == std::string::npos ? std::string_view{} : std::string_view(target).substr(q + 1);
  try {
    if (path == "/healthz" && method == "GET") return reply(200, {{"ok", true}});
    if (path == "/stats" && method == "GET") return reply(200, state.stats_json());
    if (path == "/faults" && method == "GET") return reply(200, to_json(*state.faults()));
    if (path == "/faults" && method == "POST") {
      const json patch = json::parse(body, nullptr, false);
      if (patch.is_discarded()) return reply(400, {{"error", "the body is not JSON"}});
      state.patch_faults(patch);
      // Only the keys: values may hold device tokens, which logs never show.
      json keys = json::array();
      for (const auto& [key, value] : patch.items()) keys.push_back(key);
      mp::log::info("apns_sim.faults_changed", {{"keys", keys}});
      return reply(200, to_json(*state.faults()));
    }
    if (path == "/reset" && method == "POST") {
      state.reset();
      mp::log::info("apns_sim.reset");
      return reply(200, {{"ok", true}});
    }
    if (path == "/accepted" && method == "GET") {
      const std::uint64_t since = sim_common::query_count(query, "since", 0);
      const std::uint64_t limit = std::min<std::uint64_t>(
          sim_common::query_count(query, "limit", kDefaultAcceptedLimit), kMaxAcceptedLimit);
      return reply(200, state.accepted_json(since, static_cast<std::size_t>(limit)));
    }
    if (path == "/healthz" || path == "/stats" || path == "/faults" || path == "/reset" ||
        path == "/accepted") {
      return reply(405, {{"error", "method not allowed"}});
    }
    return reply(404, {{"error", "no such endpoint"}});
  } catch (const std::invalid_argument& e) {
    return reply(400, {{"error", e.what()}});
  }
}

ControlServer::ControlServer(asio::io_context& io, const asio::ip::tcp::endpoint& endpoint,
                             SimState& state)
    : io_(io), acceptor_(io, endpoint), state_(state) {}

void ControlServer::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
}

void ControlServer::stop() {
  beast::error_code ignored;
  acceptor_.close(ignored);
}

std::uint16_t ControlServer::port() const {
  return acceptor_.local_endpoint().port();
}

asio::awaitable<void> ControlServer::accept_loop() {
  for (;;) {
    asio::ip::tcp::socket socket(asio::make_strand(io_));
    beast::error_code ec;
    co_await acceptor_.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    std::make_shared<ControlSession>(std::move(socket), state_)->start();
  }
}

}  // namespace apns_sim
