// TlsTestServer: a TLS + HTTP/2 server on 127.0.0.1 (its own thread and io_context) driven by a
// ServerPeer per connection, with the misbehaviours the H2Connection tests need.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test_peer.hpp"
#include "test_pki.hpp"

namespace mp::h2::test {

enum class Behaviour {
  answer,               // ServerPeer answers every request at once
  never_answer,         // takes requests, never answers (still acks PINGs)
  silent,               // sends its SETTINGS, reads the client's preface, then ignores everything
  drop_after,           // closes the TCP connection once `drop_after` requests have arrived
  no_tls,               // accepts TCP and never speaks
  goaway_at_start,      // GOAWAY(NO_ERROR, last-stream-id 0) in the same write as its SETTINGS
  bad_frame_after_one,  // answers the first request with a DATA frame on stream 0 (a protocol
                        // error for the client), then goes on reading
};

struct TestServerOptions {
  std::vector<std::string> alpn{"h2"};  // what the server accepts, in its preference
  bool require_client_cert = false;
  bool use_other_ca = false;  // present the certificate of the CA nobody trusts
  Behaviour behaviour = Behaviour::answer;
  std::size_t drop_after = 1;
  int max_tls_version = 0;            // e.g. TLS1_2_VERSION; 0: the newest
  std::size_t max_send_fragment = 0;  // plaintext per TLS record; 0: OpenSSL's 16 KiB
  bool key_update = false;            // TLS 1.3: KeyUpdate (update_requested) with every answer
  ServerPeer::Options peer;
};

class TlsTestServer {
 public:
  explicit TlsTestServer(TestServerOptions options);
  ~TlsTestServer();  // stops the thread
  TlsTestServer(const TlsTestServer&) = delete;
  TlsTestServer& operator=(const TlsTestServer&) = delete;

  std::uint16_t port() const { return port_; }
  // Runs `fn` on the server's thread and waits for it: a safe look at the peers while running.
  void inspect(const std::function<void()>& fn);
  // Read these only after stop() (or inside inspect()).
  void stop();
  const std::vector<std::shared_ptr<ServerPeer>>& peers() const { return peers_; }
  const std::vector<std::string>& client_names() const { return client_names_; }  // CNs seen
  const std::vector<std::string>& handshake_errors() const { return handshake_errors_; }
  const std::vector<std::string>& tls_versions() const { return tls_versions_; }  // negotiated

 private:
  struct Impl;
  TestServerOptions options_;
  boost::asio::io_context ioc_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::string alpn_wire_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::vector<std::shared_ptr<ServerPeer>> peers_;
  std::vector<std::string> client_names_;
  std::vector<std::string> handshake_errors_;
  std::vector<std::string> tls_versions_;
};

}  // namespace mp::h2::test
