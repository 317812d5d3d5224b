// apns-sim's control API as the bench tools read it (fanout_check, soak_load): blocking GETs of
// JSON on one keep-alive connection to 127.0.0.1:<control port>.
#pragma once

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace fanout {

class SimControl {
 public:
  explicit SimControl(std::uint16_t port) : socket_(ioc_) {
    socket_.connect(
        boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), port));
    timeval tv{30, 0};  // a stuck simulator ends the check instead of hanging it
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(socket_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  nlohmann::json get(const std::string& target) {
    namespace bhttp = boost::beast::http;
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    bhttp::write(socket_, req);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1u << 30);
    bhttp::read(socket_, buffer_, parser);
    if (parser.get().result_int() != 200)
      throw std::runtime_error("GET " + target + ": HTTP " +
                               std::to_string(parser.get().result_int()));
    return nlohmann::json::parse(parser.get().body());
  }

 private:
  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::socket socket_;
  boost::beast::flat_buffer buffer_;
};

}  // namespace fanout
