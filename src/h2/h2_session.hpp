// H2Session: the pure HTTP/2 client protocol state (nghttp2), fed bytes in and drained bytes out,
// with one record per stream and events for everything the connection must act on. No sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/result.hpp"

struct nghttp2_session;

namespace mp::h2 {

using Header = std::pair<std::string, std::string>;
using Headers = std::vector<Header>;

struct Request {
  std::string method = "POST";
  std::string authority;  // host[:port], sent as :authority
  std::string path;       // may hold a secret (a device token): never log it whole
  Headers headers;        // lower-case names, no pseudo-headers
  std::string body;
};

struct Response {
  int status = 0;
  Headers headers;  // without :status
  std::string body;
};

// How a failed request may be retried, read from its error code: Errc::unavailable is safe (never
// processed), Errc::io unknown (may have been processed), anything else never. Which failure
// gives which code, and what the APNs pool does with each: docs/apns-client.md, "Retries".
enum class RetrySafety { safe, unknown, never };
RetrySafety retry_safety(const Error& error) noexcept;
const char* retry_safety_name(RetrySafety safety) noexcept;

// A path fit for a log line: the last segment (a device token in APNs) cut to 8 characters + "…",
// the query dropped.
std::string loggable_path(std::string_view path);

struct SessionLimits {
  // One response's header list as HPACK counts it: names + values + 32 bytes per field.
  std::size_t max_response_header_bytes = 16 * 1024;
  std::size_t max_response_header_fields = 100;
  std::size_t max_response_body_bytes = 64 * 1024;  // APNs answers are tiny
  std::size_t max_request_body_bytes = 1024 * 1024;
  // Assumed until the peer's first SETTINGS says otherwise (nghttp2's own default is 100).
  std::uint32_t initial_peer_max_concurrent_streams = 100;
  std::int32_t local_initial_window_size = 256 * 1024;  // our receive window per stream
  // Highest stream id we open; past it the session says GOAWAY and takes no new stream (the
  // protocol allows 2^31-1; tests lower it to reach exhaustion quickly).
  std::int32_t max_stream_id = 0x7fffffff;
};

enum class StreamState {
  queued,       // submitted, HEADERS not yet serialised: nothing of it has left
  open,         // HEADERS out, request body still being sent
  half_closed,  // request fully sent (END_STREAM), waiting for the response
  closed,       // nghttp2 closed it; the record goes right after
};
const char* stream_state_name(StreamState state) noexcept;

// One record per stream, kept until nghttp2 closes the stream.
struct StreamRecord {
  std::uint64_t request_id = 0;
  std::int32_t stream_id = 0;
  StreamState state = StreamState::queued;
  std::string request_body;         // what the data provider sends from
  std::size_t body_offset = 0;      // handed to nghttp2 so far
  std::size_t body_bytes_sent = 0;  // in DATA frames serialised so far
  bool headers_sent = false;
  std::size_t response_header_bytes = 0;  // HPACK-counted, see SessionLimits
  std::size_t response_header_fields = 0;
  Response response;       // status, headers and body so far
  bool completed = false;  // its StreamDone (or a cancel result) was handed out: exactly once
};

// Events, in the order they happened, taken with take_events().
struct StreamDone {
  std::uint64_t request_id = 0;
  std::int32_t stream_id = 0;
  Result<Response> result = Error{Errc::internal, "unset"};
  std::optional<std::uint32_t> reset_code;  // set when the peer reset the stream
};
struct GoawayReceived {
  std::int32_t last_stream_id = 0;
  std::uint32_t error_code = 0;
  std::string debug_data;  // as sent by the peer, cut to 256 bytes
};
struct PingAcked {
  std::uint64_t opaque = 0;
};
struct SettingsReceived {
  std::uint32_t max_concurrent_streams = 0;  // the peer's value now in force
};
using Event = std::variant<StreamDone, GoawayReceived, PingAcked, SettingsReceived>;

class H2Session {
 public:
  // Queues the client connection preface and our SETTINGS (push off, header list size limit).
  static Result<std::unique_ptr<H2Session>> create(SessionLimits limits = {});
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  // Starts a stream; `request_id` comes back in its StreamDone. Refused with Errc::busy when
  // !can_submit() (callers queue), Errc::unavailable after GOAWAY or failure, and
  // Errc::invalid_argument for a bad header or an oversized body.
  Result<std::int32_t> submit(const Request& request, std::uint64_t request_id);
  bool can_submit() const noexcept;

  // Feeds bytes from the peer (nghttp2_session_mem_recv). An error means the session is dead and
  // every stream has already been completed (StreamDone events).
  Status receive(std::span<const std::uint8_t> bytes);
  Status receive(std::string_view bytes);
  // Drains what nghttp2 wants to send (nghttp2_session_mem_send) and appends it to `out`. Also
  // completes streams that could not be sent. An error means the session is dead.
  Status send(std::string& out);
  bool wants_write() const noexcept;
  // False once both sides are done (GOAWAY exchanged and no stream left) or the session failed.
  bool wants_read() const noexcept;

  // Ends a stream the caller gave up on, exactly once: RST_STREAM(CANCEL) if it was sent, and the
  // error the caller should get (unavailable when nothing had left, io otherwise). No StreamDone
  // follows for it. Unknown or completed streams return nullopt.
  std::optional<Error> cancel(std::int32_t stream_id, std::string_view why);
  // PING with `opaque`; PingAcked comes back.
  Status ping(std::uint64_t opaque);
  // Graceful: GOAWAY(NO_ERROR), no new streams, the open ones finish.
  Status shutdown();
  // Abrupt: every stream not yet completed gets a StreamDone with an error built from `why`
  // (unavailable if nothing of it was sent, io otherwise). The session accepts nothing after.
  void fail(const Error& why);

  std::vector<Event> take_events();

  std::uint32_t peer_max_concurrent_streams() const noexcept;
  std::size_t active_streams() const noexcept { return streams_.size(); }
  const StreamRecord* stream(std::int32_t stream_id) const;
  const std::map<std::int32_t, StreamRecord>& streams() const noexcept { return streams_; }
  bool goaway_received() const noexcept { return goaway_received_; }
  // No stream id left under SessionLimits::max_stream_id: GOAWAY is queued, use a new connection.
  bool stream_ids_exhausted() const noexcept { return stream_ids_exhausted_; }
  const std::optional<Error>& failure() const noexcept { return failure_; }

 private:
  struct Callbacks;
  explicit H2Session(SessionLimits limits);
  void complete(StreamRecord& stream, Result<Response> result,
                std::optional<std::uint32_t> reset_code = std::nullopt);
  Error lost_error(const StreamRecord& stream, const Error& why) const;
  void check_stream_ids();

  struct SessionDeleter {
    void operator()(nghttp2_session* s) const noexcept;
  };
  SessionLimits limits_;
  std::unique_ptr<nghttp2_session, SessionDeleter> session_;
  std::map<std::int32_t, StreamRecord> streams_;
  std::vector<Event> events_;
  bool goaway_received_ = false;
  std::int32_t goaway_last_stream_id_ = 0;
  bool shutdown_ = false;
  bool stream_ids_exhausted_ = false;
  std::optional<Error> failure_;
  std::string last_library_error_;  // nghttp2's words for a protocol error, for messages
};

}  // namespace mp::h2
