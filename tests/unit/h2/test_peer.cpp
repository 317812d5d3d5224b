// ServerPeer: nghttp2 server session callbacks recording what the client sent.
#include "test_peer.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>

namespace mp::h2::test {

struct ServerPeer::Callbacks {
  static ServerPeer& self(void* p) { return *static_cast<ServerPeer*>(p); }

  static int on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame, void* p) {
    auto& s = self(p);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    if (s.open_.size() >= s.options_.max_concurrent_streams) {
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                NGHTTP2_REFUSED_STREAM);
      return 0;
    }
    s.open_.insert(frame->hd.stream_id);
    s.max_open_ = std::max(s.max_open_, s.open_.size());
    s.requests_[frame->hd.stream_id].stream_id = frame->hd.stream_id;
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t, void* p) {
    auto& s = self(p);
    auto it = s.requests_.find(frame->hd.stream_id);
    if (it == s.requests_.end()) return 0;
    std::string n(reinterpret_cast<const char*>(name), namelen);
    std::string v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":method") {
      it->second.method = v;
    } else if (n == ":path") {
      it->second.path = v;
    } else if (n == ":authority") {
      it->second.authority = v;
    } else if (n.front() != ':') {
      it->second.headers.emplace_back(n, v);
    }
    return 0;
  }

  static int on_data(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                     const std::uint8_t* data, std::size_t len, void* p) {
    auto& s = self(p);
    auto it = s.requests_.find(stream_id);
    if (it != s.requests_.end()) it->second.body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* p) {
    auto& s = self(p);
    if (frame->hd.type == NGHTTP2_PING && (frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) {
      ++s.pings_received_;
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
      s.resets_received_.push_back(frame->rst_stream.error_code);
    }
    if (frame->hd.type == NGHTTP2_GOAWAY) s.goaways_received_.push_back(frame->goaway.error_code);
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
      auto it = s.requests_.find(frame->hd.stream_id);
      if (it == s.requests_.end()) return 0;
      it->second.complete = true;
      s.completed_order_.push_back(frame->hd.stream_id);
      if (s.options_.auto_respond) {
        s.respond(frame->hd.stream_id, 200,
                  "ok " + it->second.path + std::string(s.options_.body_padding, '.'),
                  {{"apns-id", "id-" + std::to_string(frame->hd.stream_id)}});
      }
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* p) {
    if (frame->hd.type == NGHTTP2_RST_STREAM &&
        frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM) {
      self(p).refused_.push_back(frame->hd.stream_id);
    }
    return 0;
  }

  static int on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t, void* p) {
    auto& s = self(p);
    s.open_.erase(stream_id);
    s.bodies_.erase(stream_id);
    return 0;
  }

  static int on_error(nghttp2_session*, int, const char* msg, std::size_t len, void* p) {
    self(p).last_error_.assign(msg, len);
    return 0;
  }

  static ssize_t read_body(nghttp2_session*, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* flags, nghttp2_data_source*,
                           void* p) {
    auto& s = self(p);
    auto it = s.bodies_.find(stream_id);
    if (it == s.bodies_.end()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    Body& b = it->second;
    const std::size_t n = std::min(length, b.data.size() - b.offset);
    std::memcpy(buf, b.data.data() + b.offset, n);
    b.offset += n;
    if (b.offset == b.data.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
};

ServerPeer::ServerPeer(Options options) : options_(options) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, Callbacks::on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, Callbacks::on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, Callbacks::on_frame_send);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_error_callback2(cbs, Callbacks::on_error);
  const int rv = nghttp2_session_server_new(&session_, cbs, this);
  nghttp2_session_callbacks_del(cbs);
  if (rv != 0) throw std::runtime_error("nghttp2_session_server_new failed");
  const std::array<nghttp2_settings_entry, 2> settings{{
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
       static_cast<std::uint32_t>(options_.initial_window_size)},
  }};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
}

ServerPeer::~ServerPeer() {
  nghttp2_session_del(session_);
}

bool ServerPeer::receive(std::string_view bytes) {
  const ssize_t rv = nghttp2_session_mem_recv(
      session_, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  if (rv < 0) {
    last_error_ = nghttp2_strerror(static_cast<int>(rv));
    return false;
  }
  return true;
}

std::string ServerPeer::send() {
  std::string out;
  for (;;) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
  }
  return out;
}

bool ServerPeer::wants_io() const {
  return nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0;
}

void ServerPeer::respond(std::int32_t stream_id, int status, std::string body, Headers headers) {
  const std::string status_text = std::to_string(status);
  static const std::string kStatus = ":status";
  std::vector<nghttp2_nv> nva;
  auto nv = [](const std::string& n, const std::string& v) {
    return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(),
                      v.size(), NGHTTP2_NV_FLAG_NONE};
  };
  nva.push_back(nv(kStatus, status_text));
  for (const auto& [n, v] : headers) nva.push_back(nv(n, v));
  nghttp2_data_provider provider{};
  provider.read_callback = Callbacks::read_body;
  const bool has_body = !body.empty();
  if (has_body) bodies_[stream_id] = Body{std::move(body), 0};
  nghttp2_submit_response(session_, stream_id, nva.data(), nva.size(),
                          has_body ? &provider : nullptr);
}

void ServerPeer::reset(std::int32_t stream_id, std::uint32_t error_code) {
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, error_code);
}

void ServerPeer::goaway(std::int32_t last_stream_id, std::uint32_t error_code) {
  static const char kDebug[] = "going away";
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_stream_id, error_code,
                        reinterpret_cast<const std::uint8_t*>(kDebug), sizeof(kDebug) - 1);
}

void ServerPeer::set_max_concurrent_streams(std::uint32_t n) {
  options_.max_concurrent_streams = n;
  const nghttp2_settings_entry entry{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, n};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, &entry, 1);
}

}  // namespace mp::h2::test
