// graph-sim's control interface: plain HTTP/1.1 + JSON on a loopback port. The subscription
// calls take Graph's own request shape (camelCase), so a test or the demo plays the mail app:
//   POST   /v1.0/subscriptions                   create (validates the URLs first): 201 | 400
//   GET    /v1.0/subscriptions                   the subscriptions, with delivery counts
//   DELETE /v1.0/subscriptions/{id}              204 | 404
//   POST   /v1.0/subscriptions/{id}/notify       {"changes":[{"changeType","id"}…]}: one batch
//   POST   /v1.0/subscriptions/{id}/lifecycle    {"lifecycleEvent":"missed"|…}
//   POST   /bulk/subscriptions                   {"subscriptions":[…],"concurrency":16}
//   POST   /load                                 {"rate","seconds","items_per_batch",…}
//   GET    /stats, GET /deliveries[?since=N][&limit=M], POST /reset, GET /healthz
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <string>

#include "simulator.hpp"

namespace graph_sim {

boost::asio::awaitable<Reply> handle_control_request(Simulator& sim, const std::string& method,
                                                     const std::string& target,
                                                     const std::string& body);

class ControlServer {
 public:
  ControlServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
                Simulator& sim);
  void start();
  std::uint16_t port() const;

 private:
  boost::asio::awaitable<void> accept_loop();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Simulator& sim_;
};

}  // namespace graph_sim
