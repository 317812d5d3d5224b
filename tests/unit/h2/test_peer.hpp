// ServerPeer: a small HTTP/2 server made of an nghttp2 server session fed in memory, the other end
// for H2Session tests and the engine of the TLS test server.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "h2/h2_session.hpp"

namespace mp::h2::test {

struct ReceivedRequest {
  std::int32_t stream_id = 0;
  std::string method, path, authority;
  Headers headers;
  std::string body;
  bool complete = false;
};

class ServerPeer {
 public:
  struct Options {
    std::uint32_t max_concurrent_streams = 100;
    std::int32_t initial_window_size = 65535;
    // Answer every complete request at once with 200, header apns-id and body "ok <path>".
    bool auto_respond = true;
    std::size_t body_padding = 0;  // this many '.' appended to that body
  };
  explicit ServerPeer(Options options);
  ServerPeer() : ServerPeer(Options{}) {}
  ~ServerPeer();
  ServerPeer(const ServerPeer&) = delete;
  ServerPeer& operator=(const ServerPeer&) = delete;

  // False (with the reason in last_error()) when nghttp2 refuses the input outright.
  bool receive(std::string_view bytes);
  std::string send();
  bool wants_io() const;

  void respond(std::int32_t stream_id, int status, std::string body, Headers headers = {});
  void reset(std::int32_t stream_id, std::uint32_t error_code);
  void goaway(std::int32_t last_stream_id, std::uint32_t error_code);
  void set_max_concurrent_streams(std::uint32_t n);
  void set_auto_respond(bool on) { options_.auto_respond = on; }

  const std::map<std::int32_t, ReceivedRequest>& requests() const { return requests_; }
  // Stream ids in the order their request completed (END_STREAM received).
  const std::vector<std::int32_t>& completed_order() const { return completed_order_; }
  // Stream ids answered with RST_STREAM(REFUSED_STREAM).
  const std::vector<std::int32_t>& refused() const { return refused_; }
  std::vector<std::uint32_t> resets_received() const { return resets_received_; }
  // Error codes of the GOAWAY frames the client sent.
  const std::vector<std::uint32_t>& goaways_received() const { return goaways_received_; }
  std::size_t open_streams() const { return open_.size(); }
  std::size_t max_open_streams() const { return max_open_; }
  std::size_t pings_received() const { return pings_received_; }
  const std::string& last_error() const { return last_error_; }

 private:
  struct Callbacks;
  struct Body {
    std::string data;
    std::size_t offset = 0;
  };
  Options options_;
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, ReceivedRequest> requests_;
  std::map<std::int32_t, Body> bodies_;
  std::set<std::int32_t> open_;
  std::size_t max_open_ = 0;
  std::vector<std::int32_t> completed_order_;
  std::vector<std::int32_t> refused_;
  std::vector<std::uint32_t> resets_received_;
  std::vector<std::uint32_t> goaways_received_;
  std::size_t pings_received_ = 0;
  std::string last_error_;
};

}  // namespace mp::h2::test
