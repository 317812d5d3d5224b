// The control interface: one coroutine per HTTP/1.1 keep-alive session over
// handle_control_request (see control_api.hpp).
#include "control_api.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <memory>
#include <stdexcept>

#include "sim_common/query.hpp"

namespace graph_sim {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxControlBody = 256u << 20;  // a bulk creation of many subscriptions
constexpr std::uint64_t kMaxDeliveriesLimit = 100'000;

asio::awaitable<void> session(asio::ip::tcp::socket socket, Simulator& sim) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kMaxControlBody);
    stream.expires_after(std::chrono::minutes(15));  // a load run answers when it ends
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow);
    if (ec) break;
    const auto& req = parser.get();
    const std::string method(req.method_string());
    const std::string target(req.target());
    const Reply r = co_await handle_control_request(sim, method, target, req.body());
    http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
    res.set(http::field::server, "graph-sim");
    res.keep_alive(req.keep_alive());
    if (r.status != 204) {
      res.set(http::field::content_type, "application/json");
      res.body() = r.body.dump() + "\n";
    }
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, nothrow);
    if (wec || !res.keep_alive()) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
}

}  // namespace

asio::awaitable<Reply> handle_control_request(Simulator& sim, const std::string& method,
                                              const std::string& target, const std::string& body) {
  const auto q = target.find('?');
  const std::string path = target.substr(0, q);
  const std::string_view query =
      q == std::string::npos ? std::string_view{} : std::string_view(target).substr(q + 1);
  const json request = body.empty() ? json::object() : json::parse(body, nullptr, false);
  if (request.is_discarded()) co_return Reply{400, {{"error", "the body is not JSON"}}};
  constexpr std::string_view kSubs = "/v1.0/subscriptions";
  if (path == kSubs) {
    if (method == "POST") co_return co_await sim.create(request);
    if (method == "GET") co_return sim.list();
    co_return Reply{405, {{"error", "method not allowed"}}};
  }
  if (path.rfind(std::string(kSubs) + "/", 0) == 0) {
    const std::string rest = path.substr(kSubs.size() + 1);
    const auto slash = rest.find('/');
    const std::string id = rest.substr(0, slash);
    const std::string action = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (action.empty() && method == "DELETE") co_return sim.remove(id);
    if (action == "notify" && method == "POST") co_return co_await sim.notify(id, request);
    if (action == "lifecycle" && method == "POST") co_return co_await sim.lifecycle(id, request);
    co_return Reply{404, {{"error", "no such endpoint"}}};
  }
  if (path == "/bulk/subscriptions" && method == "POST") {
    co_return co_await sim.create_many(request);
  }
  if (path == "/load" && method == "POST") co_return co_await sim.load(request);
  if (path == "/healthz" && method == "GET") co_return Reply{200, {{"ok", true}}};
  if (path == "/stats" && method == "GET") co_return Reply{200, sim.stats()};
  if (path == "/reset" && method == "POST") {
    sim.reset();
    co_return Reply{200, {{"ok", true}}};
  }
  if (path == "/deliveries" && method == "GET") {
    try {
      const auto since = sim_common::query_count(query, "since", 0);
      const auto limit =
          std::min(sim_common::query_count(query, "limit", 10'000), kMaxDeliveriesLimit);
      co_return Reply{200, sim.deliveries(since, static_cast<std::size_t>(limit))};
    } catch (const std::invalid_argument& e) {
      co_return Reply{400, {{"error", e.what()}}};
    }
  }
  co_return Reply{404, {{"error", "no such endpoint"}}};
}

ControlServer::ControlServer(asio::io_context& io, const asio::ip::tcp::endpoint& endpoint,
                             Simulator& sim)
    : io_(io), acceptor_(io, endpoint), sim_(sim) {}

void ControlServer::start() {
  asio::co_spawn(io_, accept_loop(), asio::detached);
}

std::uint16_t ControlServer::port() const {
  return acceptor_.local_endpoint().port();
}

asio::awaitable<void> ControlServer::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    asio::co_spawn(io_, session(std::move(socket), sim_), asio::detached);
  }
}

}  // namespace graph_sim
