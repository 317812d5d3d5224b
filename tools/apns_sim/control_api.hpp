// apns-sim's control interface: plain HTTP/1.1 + JSON on a loopback port (stats, accepted
// notifications, faults, reset, health), for tests and benchmarks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <string>

#include "sim_state.hpp"

namespace apns_sim {

struct ControlReply {
  int status = 200;
  std::string body;  // JSON
};

// The routing, without sockets: GET /healthz, GET /stats, GET /faults, POST /faults,
// POST /reset, GET /accepted[?since=N][&limit=M].
ControlReply handle_control_request(SimState& state, const std::string& method,
                                    const std::string& target, const std::string& body);

class ControlServer {
 public:
  ControlServer(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& endpoint,
                SimState& state);
  void start();
  void stop();
  std::uint16_t port() const;

 private:
  boost::asio::awaitable<void> accept_loop();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  SimState& state_;
};

}  // namespace apns_sim
