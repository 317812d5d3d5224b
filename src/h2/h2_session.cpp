// H2Session: nghttp2 client session callbacks turned into stream records and events.
#include "h2/h2_session.hpp"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace mp::h2 {

RetrySafety retry_safety(const Error& error) noexcept {
  switch (error.code) {
    case Errc::unavailable:
      return RetrySafety::safe;
    case Errc::io:
      return RetrySafety::unknown;
    default:
      return RetrySafety::never;
  }
}

const char* retry_safety_name(RetrySafety safety) noexcept {
  switch (safety) {
    case RetrySafety::safe:
      return "safe";
    case RetrySafety::unknown:
      return "unknown";
    case RetrySafety::never:
      return "never";
  }
  return "never";
}

std::string loggable_path(std::string_view path) {
  path = path.substr(0, path.find('?'));
  const auto slash = path.rfind('/');
  if (slash == std::string_view::npos) return "…";
  const std::string_view last = path.substr(slash + 1);
  std::string out(path.substr(0, slash + 1));
  if (last.size() <= 8) return out + std::string(last);
  return out + std::string(last.substr(0, 8)) + "…";
}

const char* stream_state_name(StreamState state) noexcept {
  switch (state) {
    case StreamState::queued:
      return "queued";
    case StreamState::open:
      return "open";
    case StreamState::half_closed:
      return "half_closed";
    case StreamState::closed:
      return "closed";
  }
  return "?";
}

namespace {

std::string h2_code_name(std::uint32_t code) {
  return std::string(nghttp2_http2_strerror(code)) + " (" + std::to_string(code) + ")";
}

bool is_connection_specific(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade" || name == "host";
}

nghttp2_nv make_nv(const std::string& name, const std::string& value) {
  // nghttp2 copies names and values at submit time, so pointers into the request are enough.
  return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

// The nghttp2 callbacks; they only record, never call mem_recv/mem_send.
struct H2Session::Callbacks {
  static H2Session& self(void* user_data) { return *static_cast<H2Session*>(user_data); }

  static StreamRecord* find(H2Session& s, std::int32_t stream_id) {
    auto it = s.streams_.find(stream_id);
    return it == s.streams_.end() ? nullptr : &it->second;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* user_data) {
    auto& s = self(user_data);
    StreamRecord* rec = find(s, frame->hd.stream_id);
    if (rec == nullptr || rec->completed) return 0;
    // HPACK's size of a header list: 32 bytes of overhead per field (RFC 7541, 4.1).
    rec->response_header_bytes += namelen + valuelen + 32;
    ++rec->response_header_fields;
    if (rec->response_header_bytes > s.limits_.max_response_header_bytes) {
      s.complete(*rec,
                 Error{Errc::conflict, "response headers exceed " +
                                           std::to_string(s.limits_.max_response_header_bytes) +
                                           " bytes; stream reset"});
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // nghttp2 resets the stream
    }
    if (rec->response_header_fields > s.limits_.max_response_header_fields) {
      s.complete(*rec,
                 Error{Errc::conflict, "response has more than " +
                                           std::to_string(s.limits_.max_response_header_fields) +
                                           " header fields; stream reset"});
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    const std::string_view n(reinterpret_cast<const char*>(name), namelen);
    const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      int status = 0;
      auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), status);
      if (ec != std::errc{} || ptr != v.data() + v.size()) status = 0;
      // A final status after a 1xx starts the header list again.
      if (rec->response.status >= 100 && rec->response.status < 200) rec->response.headers.clear();
      rec->response.status = status;
      return 0;
    }
    rec->response.headers.emplace_back(std::string(n), std::string(v));
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data) {
    auto& s = self(user_data);
    StreamRecord* rec = find(s, stream_id);
    if (rec == nullptr || rec->completed) return 0;
    if (rec->response.body.size() + len > s.limits_.max_response_body_bytes) {
      s.complete(*rec, Error{Errc::conflict, "response body exceeds " +
                                                 std::to_string(s.limits_.max_response_body_bytes) +
                                                 " bytes; stream reset (CANCEL)"});
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
      return 0;
    }
    rec->response.body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    auto& s = self(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
      case NGHTTP2_DATA: {
        if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) break;
        StreamRecord* rec = find(s, frame->hd.stream_id);
        if (rec == nullptr || rec->completed) break;
        if (rec->response.status < 200) {
          s.complete(*rec, Error{Errc::io, "response ended without a final :status"});
        } else {
          Response response = std::move(rec->response);
          s.complete(*rec, std::move(response));
        }
        break;
      }
      case NGHTTP2_GOAWAY: {
        s.goaway_received_ = true;
        const auto& g = frame->goaway;
        GoawayReceived ev;
        ev.last_stream_id = g.last_stream_id;
        ev.error_code = g.error_code;
        ev.debug_data.assign(reinterpret_cast<const char*>(g.opaque_data),
                             std::min<std::size_t>(g.opaque_data_len, 256));
        s.goaway_last_stream_id_ = g.last_stream_id;
        s.events_.emplace_back(std::move(ev));
        // Requests whose HEADERS never left will not leave now; nghttp2 closes the sent ones
        // above last-stream-id itself (on_stream_close, REFUSED_STREAM).
        for (auto& [id, rec] : s.streams_) {
          if (!rec.headers_sent && !rec.completed) {
            s.complete(rec, Error{Errc::unavailable,
                                  "GOAWAY received before the request was sent: not processed, "
                                  "retry on a new connection"});
          }
        }
        break;
      }
      case NGHTTP2_SETTINGS:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
          s.events_.emplace_back(SettingsReceived{nghttp2_session_get_remote_settings(
              session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)});
        }
        break;
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
          std::uint64_t opaque = 0;
          for (std::uint8_t b : frame->ping.opaque_data) opaque = (opaque << 8) | b;
          s.events_.emplace_back(PingAcked{opaque});
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
    auto& s = self(user_data);
    const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        StreamRecord* rec = find(s, frame->hd.stream_id);
        if (rec == nullptr) break;
        rec->headers_sent = true;
        rec->state = end_stream ? StreamState::half_closed : StreamState::open;
        break;
      }
      case NGHTTP2_DATA: {
        StreamRecord* rec = find(s, frame->hd.stream_id);
        if (rec == nullptr) break;
        rec->body_bytes_sent += frame->hd.length;
        if (end_stream) rec->state = StreamState::half_closed;
        break;
      }
      case NGHTTP2_GOAWAY:
        // nghttp2 answers a protocol error from the peer with GOAWAY(error) and stops.
        if (frame->goaway.error_code != NGHTTP2_NO_ERROR) {
          std::string why = "HTTP/2 protocol error from the server (we sent GOAWAY " +
                            h2_code_name(frame->goaway.error_code) + ")";
          if (!s.last_library_error_.empty()) why += ": " + s.last_library_error_;
          s.fail(Error{Errc::io, why});
        }
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_frame_not_send(nghttp2_session* session, const nghttp2_frame* frame,
                               int lib_error_code, void* user_data) {
    auto& s = self(user_data);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto it = s.streams_.find(frame->hd.stream_id);
    if (it == s.streams_.end()) return 0;
    s.complete(it->second, Error{Errc::unavailable, std::string("request not sent (") +
                                                        nghttp2_strerror(lib_error_code) +
                                                        "): not processed, safe to retry"});
    // When nghttp2 had not opened the stream yet, no on_stream_close will come for it.
    if (nghttp2_session_find_stream(session, frame->hd.stream_id) == nullptr) s.streams_.erase(it);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data) {
    auto& s = self(user_data);
    auto it = s.streams_.find(stream_id);
    if (it == s.streams_.end()) return 0;
    StreamRecord& rec = it->second;
    rec.state = StreamState::closed;
    if (!rec.completed) {
      if (s.goaway_received_ && stream_id > s.goaway_last_stream_id_) {
        s.complete(rec, Error{Errc::unavailable, "stream " + std::to_string(stream_id) +
                                                     " is above the GOAWAY last-stream-id " +
                                                     std::to_string(s.goaway_last_stream_id_) +
                                                     ": not processed, retry on a new connection"});
      } else if (error_code == NGHTTP2_REFUSED_STREAM) {
        s.complete(rec,
                   Error{Errc::unavailable,
                         "stream " + std::to_string(stream_id) +
                             " refused by the server (REFUSED_STREAM): not processed, safe "
                             "to retry"},
                   error_code);
      } else if (error_code == NGHTTP2_NO_ERROR) {
        s.complete(rec, Error{Errc::io, "stream " + std::to_string(stream_id) +
                                            " closed without a complete response; it may or "
                                            "may not have been processed"});
      } else {
        s.complete(rec,
                   Error{Errc::io, "stream " + std::to_string(stream_id) +
                                       " reset by the server (" + h2_code_name(error_code) +
                                       "); it may or may not have been processed"},
                   error_code);
      }
    }
    s.streams_.erase(it);
    return 0;
  }

  static int on_error(nghttp2_session*, int, const char* msg, std::size_t len, void* user_data) {
    self(user_data).last_library_error_.assign(msg, std::min<std::size_t>(len, 300));
    return 0;
  }

  static ssize_t read_body(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* data_flags, nghttp2_data_source*,
                           void* user_data) {
    auto& s = self(user_data);
    StreamRecord* rec = find(s, stream_id);
    if (rec == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    // nghttp2 asks for at most what the flow-control windows and the frame size allow.
    const std::size_t n = std::min(length, rec->request_body.size() - rec->body_offset);
    std::memcpy(buf, rec->request_body.data() + rec->body_offset, n);
    rec->body_offset += n;
    if (rec->body_offset == rec->request_body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

void H2Session::SessionDeleter::operator()(nghttp2_session* s) const noexcept {
  nghttp2_session_del(s);
}

H2Session::H2Session(SessionLimits limits) : limits_(limits) {}

H2Session::~H2Session() = default;

Result<std::unique_ptr<H2Session>> H2Session::create(SessionLimits limits) {
  std::unique_ptr<H2Session> self(new H2Session(limits));

  nghttp2_session_callbacks* raw_cbs = nullptr;
  if (nghttp2_session_callbacks_new(&raw_cbs) != 0) {
    return Error{Errc::internal, "nghttp2_session_callbacks_new failed"};
  }
  std::unique_ptr<nghttp2_session_callbacks, void (*)(nghttp2_session_callbacks*)> cbs(
      raw_cbs, nghttp2_session_callbacks_del);
  nghttp2_session_callbacks_set_on_header_callback(cbs.get(), Callbacks::on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs.get(), Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs.get(), Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs.get(), Callbacks::on_frame_send);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs.get(), Callbacks::on_frame_not_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs.get(), Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(cbs.get(), Callbacks::on_error);

  nghttp2_option* raw_opt = nullptr;
  if (nghttp2_option_new(&raw_opt) != 0) return Error{Errc::internal, "nghttp2_option_new failed"};
  std::unique_ptr<nghttp2_option, void (*)(nghttp2_option*)> opt(raw_opt, nghttp2_option_del);
  nghttp2_option_set_peer_max_concurrent_streams(opt.get(),
                                                 limits.initial_peer_max_concurrent_streams);
  nghttp2_option_set_max_send_header_block_length(opt.get(), 64 * 1024);

  nghttp2_session* raw = nullptr;
  if (nghttp2_session_client_new2(&raw, cbs.get(), self.get(), opt.get()) != 0) {
    return Error{Errc::internal, "nghttp2_session_client_new2 failed"};
  }
  self->session_.reset(raw);

  const std::array<nghttp2_settings_entry, 3> settings{{
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
       static_cast<std::uint32_t>(limits.local_initial_window_size)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<std::uint32_t>(limits.max_response_header_bytes)},
  }};
  if (int rv = nghttp2_submit_settings(raw, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
      rv != 0) {
    return Error{Errc::internal, std::string("nghttp2_submit_settings: ") + nghttp2_strerror(rv)};
  }
  return self;
}

bool H2Session::can_submit() const noexcept {
  return !failure_ && !goaway_received_ && !shutdown_ && !stream_ids_exhausted_ &&
         streams_.size() < peer_max_concurrent_streams();
}

// Past the last usable stream id the connection is useless for new work: say GOAWAY so the open
// streams finish and the owner opens a new connection.
void H2Session::check_stream_ids() {
  if (stream_ids_exhausted_) return;
  const std::uint32_t next = nghttp2_session_get_next_stream_id(session_.get());
  if (next <= static_cast<std::uint32_t>(limits_.max_stream_id)) return;
  stream_ids_exhausted_ = true;
  (void)shutdown();
}

std::uint32_t H2Session::peer_max_concurrent_streams() const noexcept {
  return nghttp2_session_get_remote_settings(session_.get(),
                                             NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

Result<std::int32_t> H2Session::submit(const Request& request, std::uint64_t request_id) {
  if (failure_) return Error{Errc::unavailable, "connection failed: " + failure_->message};
  if (stream_ids_exhausted_) {
    return Error{Errc::unavailable, "stream ids exhausted: not sent, use a new connection"};
  }
  if (goaway_received_ || shutdown_) {
    return Error{Errc::unavailable, "connection is going away (GOAWAY): not sent"};
  }
  if (!can_submit()) {
    return Error{Errc::busy, "peer's SETTINGS_MAX_CONCURRENT_STREAMS (" +
                                 std::to_string(peer_max_concurrent_streams()) + ") reached"};
  }
  if (request.method.empty() || request.path.empty() || request.path.front() != '/' ||
      request.authority.empty()) {
    return Error{Errc::invalid_argument, "request needs a method, an authority and a path"};
  }
  if (request.body.size() > limits_.max_request_body_bytes) {
    return Error{Errc::invalid_argument, "request body of " + std::to_string(request.body.size()) +
                                             " bytes exceeds " +
                                             std::to_string(limits_.max_request_body_bytes)};
  }
  bool has_content_length = false;
  for (const auto& [name, value] : request.headers) {
    const bool lower =
        std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
    if (name.empty() || name.front() == ':' || !lower || is_connection_specific(name) ||
        nghttp2_check_header_name(reinterpret_cast<const std::uint8_t*>(name.data()),
                                  name.size()) == 0) {
      return Error{Errc::invalid_argument, "invalid request header name '" + name + "'"};
    }
    if (nghttp2_check_header_value(reinterpret_cast<const std::uint8_t*>(value.data()),
                                   value.size()) == 0) {
      return Error{Errc::invalid_argument, "invalid value of request header '" + name + "'"};
    }
    if (name == "content-length") has_content_length = true;
  }

  static const std::string kMethod = ":method", kScheme = ":scheme", kHttps = "https",
                           kAuthority = ":authority", kPath = ":path",
                           kContentLength = "content-length";
  const std::string length_text = std::to_string(request.body.size());
  std::vector<nghttp2_nv> nva;
  nva.reserve(request.headers.size() + 5);
  nva.push_back(make_nv(kMethod, request.method));
  nva.push_back(make_nv(kScheme, kHttps));
  nva.push_back(make_nv(kAuthority, request.authority));
  nva.push_back(make_nv(kPath, request.path));
  for (const auto& [name, value] : request.headers) nva.push_back(make_nv(name, value));
  if (!request.body.empty() && !has_content_length) {
    nva.push_back(make_nv(kContentLength, length_text));
  }

  nghttp2_data_provider provider{};
  provider.read_callback = Callbacks::read_body;
  const std::int32_t stream_id =
      nghttp2_submit_request(session_.get(), nullptr, nva.data(), nva.size(),
                             request.body.empty() ? nullptr : &provider, nullptr);
  if (stream_id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
    stream_ids_exhausted_ = true;
    (void)shutdown();
    return Error{Errc::unavailable, "stream ids exhausted: not sent, use a new connection"};
  }
  if (stream_id < 0) {
    return Error{Errc::internal,
                 std::string("nghttp2_submit_request: ") + nghttp2_strerror(stream_id)};
  }
  // The data provider runs only inside mem_send, so the record may come after the submit.
  StreamRecord& rec = streams_[stream_id];
  rec.request_id = request_id;
  rec.stream_id = stream_id;
  rec.request_body = request.body;
  check_stream_ids();
  return stream_id;
}

Status H2Session::receive(std::span<const std::uint8_t> bytes) {
  if (failure_) return *failure_;
  const ssize_t rv = nghttp2_session_mem_recv(session_.get(), bytes.data(), bytes.size());
  if (rv < 0) {
    std::string why =
        std::string("HTTP/2 input refused: ") + nghttp2_strerror(static_cast<int>(rv));
    if (!last_library_error_.empty()) why += ": " + last_library_error_;
    fail(Error{Errc::io, why});
  }
  if (failure_) return *failure_;
  return {};
}

Status H2Session::receive(std::string_view bytes) {
  return receive(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                               bytes.size()));
}

Status H2Session::send(std::string& out) {
  // After a failure nghttp2 may still hold a GOAWAY worth sending; drain it anyway.
  for (;;) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_.get(), &data);
    if (n < 0) {
      fail(Error{Errc::io,
                 std::string("HTTP/2 output failed: ") + nghttp2_strerror(static_cast<int>(n))});
      break;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  if (failure_) return *failure_;
  return {};
}

bool H2Session::wants_write() const noexcept {
  return !failure_ && nghttp2_session_want_write(session_.get()) != 0;
}

bool H2Session::wants_read() const noexcept {
  return !failure_ && nghttp2_session_want_read(session_.get()) != 0;
}

std::optional<Error> H2Session::cancel(std::int32_t stream_id, std::string_view why) {
  auto it = streams_.find(stream_id);
  if (it == streams_.end() || it->second.completed) return std::nullopt;
  StreamRecord& rec = it->second;
  rec.completed = true;
  // For a request still in nghttp2's queue this drops its HEADERS; otherwise RST_STREAM(CANCEL).
  if (!failure_) {
    nghttp2_submit_rst_stream(session_.get(), NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
  }
  if (!rec.headers_sent) {
    return Error{Errc::unavailable,
                 std::string(why) + "; the request was never sent, safe to retry"};
  }
  return Error{Errc::io,
               std::string(why) + "; stream reset (CANCEL), it may or may not have been processed"};
}

Status H2Session::ping(std::uint64_t opaque) {
  if (failure_) return *failure_;
  std::array<std::uint8_t, 8> data{};
  for (int i = 7; i >= 0; --i) {
    data[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(opaque & 0xff);
    opaque >>= 8;
  }
  if (int rv = nghttp2_submit_ping(session_.get(), NGHTTP2_FLAG_NONE, data.data()); rv != 0) {
    return Error{Errc::internal, std::string("nghttp2_submit_ping: ") + nghttp2_strerror(rv)};
  }
  return {};
}

Status H2Session::shutdown() {
  if (failure_) return *failure_;
  if (shutdown_) return {};
  shutdown_ = true;
  // A client accepts no streams from the server, so its GOAWAY names stream 0.
  if (int rv =
          nghttp2_submit_goaway(session_.get(), NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
      rv != 0) {
    return Error{Errc::internal, std::string("nghttp2_submit_goaway: ") + nghttp2_strerror(rv)};
  }
  return {};
}

void H2Session::fail(const Error& why) {
  if (!failure_) failure_ = why;
  for (auto& [id, rec] : streams_) {
    if (!rec.completed) complete(rec, lost_error(rec, why));
  }
}

Error H2Session::lost_error(const StreamRecord& stream, const Error& why) const {
  if (!stream.headers_sent) {
    return Error{Errc::unavailable, why.message + "; the request was never sent, safe to retry"};
  }
  return Error{Errc::io,
               why.message + "; the request was sent, it may or may not have been processed"};
}

void H2Session::complete(StreamRecord& stream, Result<Response> result,
                         std::optional<std::uint32_t> reset_code) {
  if (stream.completed) return;
  stream.completed = true;
  StreamDone done;
  done.request_id = stream.request_id;
  done.stream_id = stream.stream_id;
  done.result = std::move(result);
  done.reset_code = reset_code;
  events_.emplace_back(std::move(done));
}

std::vector<Event> H2Session::take_events() {
  std::vector<Event> out;
  out.swap(events_);
  return out;
}

const StreamRecord* H2Session::stream(std::int32_t stream_id) const {
  auto it = streams_.find(stream_id);
  return it == streams_.end() ? nullptr : &it->second;
}

}  // namespace mp::h2
