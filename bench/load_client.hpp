// What the HTTPS load tools share on the client side (fanout_load, soak_load): a loopback target
// and a TLS client context that verifies the listener against the given CA.
#pragma once

#include <openssl/ssl.h>
#include <signal.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <iostream>
#include <string>

namespace fanout {

// Sets target (host must be a loopback address) and tls (TLS 1.2+, the peer verified against
// ca); false with the reason on stderr, prefixed by the tool's name. Ignores SIGPIPE.
inline bool setup_client(const std::string& tool, const std::string& host, std::uint16_t port,
                         const std::string& ca, boost::asio::ip::tcp::endpoint& target,
                         boost::asio::ssl::context& tls) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  if (ec || !address.is_loopback()) {
    std::cerr << tool << ": --host must be a loopback address\n";
    return false;
  }
  target = boost::asio::ip::tcp::endpoint(address, port);
  ::signal(SIGPIPE, SIG_IGN);
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  tls.load_verify_file(ca, ec);
  if (ec) {
    std::cerr << tool << ": cannot load " << ca << ": " << ec.message() << "\n";
    return false;
  }
  tls.set_verify_mode(boost::asio::ssl::verify_peer);
  return true;
}

}  // namespace fanout
