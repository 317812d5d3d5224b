// One TLS + HTTP/2 connection of apns-sim: nghttp2's server session pumped by one read loop and
// one write loop on the connection's strand; requests checked and answered like APNs.
#pragma once

#include <nghttp2/nghttp2.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "apns_rules.hpp"
#include "client_cert.hpp"
#include "sim_state.hpp"

namespace apns_sim {

struct ServerConfig {
  Environment environment = Environment::development;
  bool require_client_cert = true;
  std::chrono::milliseconds handshake_timeout{10'000};
};

struct SessionDeleter {
  void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
};
using SessionPtr = std::unique_ptr<nghttp2_session, SessionDeleter>;

class H2Connection : public FaultListener, public std::enable_shared_from_this<H2Connection> {
 public:
  using TlsStream = boost::asio::ssl::stream<boost::asio::ip::tcp::socket>;

  // `socket`'s executor must be a strand: every member runs on it.
  H2Connection(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& tls, SimState& state,
               const ServerConfig& config);
  ~H2Connection() override;

  void start();
  void on_faults_changed() override;

 private:
  // What the simulator knows about one request stream, from HEADERS to the response's last byte.
  struct StreamState {
    std::int32_t id = 0;
    bool refused = false;  // above a GOAWAY's last-stream-id: never processed
    bool answered = false;
    H2Request request;
    std::string response_body;
    std::size_t response_offset = 0;
    std::unique_ptr<boost::asio::steady_timer> delay;  // the latency fault
  };

  struct Response {
    int status = 200;
    std::string reason;
    std::optional<std::int64_t> timestamp_ms;
    std::string apns_id;
  };

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<void> read_loop();
  boost::asio::awaitable<void> write_loop();
  void wake_writer();
  void apply_faults();
  bool open_session();
  void close_socket();

  void on_request_complete(StreamState& stream);
  void submit_response(StreamState& stream, const Response& response);
  std::string make_apns_id();

  // nghttp2 callbacks; user_data is the H2Connection.
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_header(nghttp2_session*, const nghttp2_frame*, const std::uint8_t*, std::size_t,
                       const std::uint8_t*, std::size_t, std::uint8_t, void*);
  static int on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t, const std::uint8_t*,
                           std::size_t, void*);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame*, void*);
  static int on_stream_close(nghttp2_session*, std::int32_t, std::uint32_t, void*);
  static ssize_t read_response_body(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t,
                                    std::uint32_t*, nghttp2_data_source*, void*);
  static const nghttp2_session_callbacks* callbacks();

  TlsStream stream_;
  SimState& state_;
  const ServerConfig& config_;
  boost::asio::steady_timer wake_;      // the write loop sleeps on it; cancel() wakes it
  boost::asio::steady_timer deadline_;  // handshake timeout, then the drain after GOAWAY
  SessionPtr session_;
  std::uint64_t id_ = 0;
  std::optional<ClientCertFacts> cert_;
  std::map<std::int32_t, StreamState> streams_;
  std::array<char, 8192> read_buffer_{};
  std::string out_;  // bytes from nghttp2_session_mem_send waiting for async_write

  std::uint32_t streams_begun_ = 0;
  std::uint32_t responses_submitted_ = 0;
  std::uint32_t announced_max_streams_ = 0;
  std::int32_t goaway_last_stream_ = -1;   // set once GOAWAY is submitted
  std::int32_t abrupt_after_stream_ = -1;  // close the TCP once this stream is answered
  bool abrupt_ready_ = false;
  bool silent_ = false;    // sticky: input discarded, nothing written
  bool draining_ = false;  // output done, waiting for the peer's FIN
  bool failed_ = false;    // protocol error: input dropped
  bool closing_ = false;
  std::mt19937_64 rng_;
};

}  // namespace apns_sim
