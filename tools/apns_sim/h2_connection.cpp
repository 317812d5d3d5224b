// H2Connection: TLS handshake and ALPN check, then nghttp2's server session fed by read_loop
// (nghttp2_session_mem_recv) and drained by write_loop (nghttp2_session_mem_send), never
// from inside an nghttp2 callback.
#include "h2_connection.hpp"

#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/redact.hpp"

namespace apns_sim {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const { nghttp2_session_callbacks_del(c); }
};

std::string_view as_view(const std::uint8_t* p, std::size_t n) {
  return {reinterpret_cast<const char*>(p), n};
}

nghttp2_nv header(const std::string& name, const std::string& value) {
  return {reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(),
          value.size(), NGHTTP2_NV_FLAG_NONE};
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

const nghttp2_session_callbacks* H2Connection::callbacks() {
  static const std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cbs = [] {
    nghttp2_session_callbacks* c = nullptr;
    if (nghttp2_session_callbacks_new(&c) != 0) throw std::bad_alloc();
    nghttp2_session_callbacks_set_on_begin_headers_callback(c, &H2Connection::on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(c, &H2Connection::on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(c, &H2Connection::on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(c, &H2Connection::on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(c, &H2Connection::on_stream_close);
    return std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter>(c);
  }();
  return cbs.get();
}

H2Connection::H2Connection(asio::ip::tcp::socket socket, asio::ssl::context& tls, SimState& state,
                           const ServerConfig& config)
    : stream_(std::move(socket), tls),
      state_(state),
      config_(config),
      wake_(stream_.get_executor()),
      deadline_(stream_.get_executor()),
      rng_(std::random_device{}()) {}

H2Connection::~H2Connection() {
  if (id_ != 0) state_.connection_closed(id_);
}

void H2Connection::start() {
  auto self = shared_from_this();
  asio::co_spawn(stream_.get_executor(), run(), [self](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      mp::log::error("apns_sim.connection_failed",
                     {{"connection", self->id_}, {"error", ex.what()}});
    }
  });
}

void H2Connection::on_faults_changed() {
  asio::post(stream_.get_executor(), [self = shared_from_this()] { self->apply_faults(); });
}

void H2Connection::apply_faults() {
  if (!session_ || closing_) return;
  const auto faults = state_.faults();
  if (faults->silent) silent_ = true;
  if (!silent_ && faults->max_concurrent_streams != announced_max_streams_) {
    announced_max_streams_ = faults->max_concurrent_streams;
    const nghttp2_settings_entry entry{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                       announced_max_streams_};
    nghttp2_submit_settings(session_.get(), NGHTTP2_FLAG_NONE, &entry, 1);
  }
  wake_writer();
}

void H2Connection::wake_writer() {
  wake_.cancel();
}

void H2Connection::close_socket() {
  error_code ignored;
  stream_.lowest_layer().close(ignored);
  deadline_.cancel();
  wake_.cancel();
}

asio::awaitable<void> H2Connection::run() {
  auto self = shared_from_this();  // kept in this frame until both loops are done
  deadline_.expires_after(config_.handshake_timeout);
  deadline_.async_wait([weak = weak_from_this()](error_code ec) {
    if (auto c = weak.lock(); c && !ec) c->close_socket();
  });

  error_code ec;
  co_await stream_.async_handshake(asio::ssl::stream_base::server,
                                   asio::redirect_error(asio::use_awaitable, ec));
  deadline_.cancel();
  if (ec) {
    // A refused client certificate says why ("certificate has expired", "certificate revoked").
    const long verify = SSL_get_verify_result(stream_.native_handle());
    const std::string why =
        verify != X509_V_OK ? X509_verify_cert_error_string(verify) : ec.message();
    state_.handshake_failed(why);
    mp::log::info("apns_sim.handshake_failed", {{"error", why}});
    close_socket();
    co_return;
  }

  SSL* ssl = stream_.native_handle();
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  if (std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != "h2") {
    state_.handshake_failed("no ALPN h2");
    mp::log::debug("apns_sim.handshake_failed", {{"error", "the client did not offer ALPN h2"}});
    close_socket();
    co_return;
  }
  if (X509* peer = SSL_get0_peer_certificate(ssl)) cert_ = read_client_cert(peer);
  if (config_.require_client_cert && !cert_) {
    state_.handshake_failed("no client certificate");
    close_socket();
    co_return;
  }

  id_ = state_.connection_opened(weak_from_this());
  mp::log::info("apns_sim.connection_open",
                {{"connection", id_}, {"client", cert_ ? cert_->subject : std::string("-")}});
  if (!open_session()) {
    close_socket();
    co_return;
  }

  asio::co_spawn(stream_.get_executor(), write_loop(), [self](std::exception_ptr e) {
    if (e) self->close_socket();
  });
  co_await read_loop();
  mp::log::info("apns_sim.connection_closed", {{"connection", id_}, {"streams", streams_begun_}});
}

bool H2Connection::open_session() {
  nghttp2_session* raw = nullptr;
  if (nghttp2_session_server_new(&raw, callbacks(), this) != 0) return false;
  session_.reset(raw);
  const auto faults = state_.faults();
  silent_ = faults->silent;
  announced_max_streams_ = faults->max_concurrent_streams;
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, announced_max_streams_},
  };
  return nghttp2_submit_settings(session_.get(), NGHTTP2_FLAG_NONE, settings, 1) == 0;
}

asio::awaitable<void> H2Connection::read_loop() {
  for (;;) {
    error_code ec;
    const std::size_t n = co_await stream_.async_read_some(
        asio::buffer(read_buffer_), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    // Silent, draining or failed: the bytes are read (so the peer is not blocked) and dropped.
    if (silent_ || draining_ || failed_) continue;
    const auto rv = nghttp2_session_mem_recv(
        session_.get(), reinterpret_cast<const std::uint8_t*>(read_buffer_.data()), n);
    if (rv < 0) {
      mp::log::info("apns_sim.protocol_error",
                    {{"connection", id_}, {"error", nghttp2_strerror(static_cast<int>(rv))}});
      failed_ = true;  // nghttp2 queued a GOAWAY; the write loop sends it and half-closes
      wake_writer();
      continue;
    }
    wake_writer();
  }
  closing_ = true;
  close_socket();
}

asio::awaitable<void> H2Connection::write_loop() {
  for (;;) {
    if (!silent_) {
      const std::uint8_t* data = nullptr;
      for (auto n = nghttp2_session_mem_send(session_.get(), &data); n > 0;
           n = nghttp2_session_mem_send(session_.get(), &data)) {
        out_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
      }
    }
    if (!out_.empty()) {
      error_code ec;
      co_await asio::async_write(stream_, asio::buffer(out_),
                                 asio::redirect_error(asio::use_awaitable, ec));
      out_.clear();
      if (ec) break;
      if (abrupt_ready_) {
        state_.abrupt_close();
        mp::log::info("apns_sim.abrupt_close", {{"connection", id_}});
        break;
      }
      continue;
    }
    if (closing_) break;
    // The target stream may close from the read side (the client reset it): nothing to write,
    // but the fault is due all the same.
    if (abrupt_ready_) {
      state_.abrupt_close();
      mp::log::info("apns_sim.abrupt_close", {{"connection", id_}});
      break;
    }
    if (!draining_ && !nghttp2_session_want_read(session_.get()) &&
        !nghttp2_session_want_write(session_.get())) {
      // GOAWAY sent and every stream below it answered: half-close and let the peer read it
      // all before the socket goes (closing at once could reset unread data on its side).
      draining_ = true;
      error_code ignored;
      stream_.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      deadline_.expires_after(std::chrono::seconds(2));
      deadline_.async_wait([weak = weak_from_this()](error_code ec) {
        if (auto c = weak.lock(); c && !ec) c->close_socket();
      });
    }
    wake_.expires_at(asio::steady_timer::time_point::max());
    error_code ignored;
    co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  closing_ = true;
  close_socket();
}

// ---- nghttp2 callbacks --------------------------------------------------------------------------

int H2Connection::on_begin_headers(nghttp2_session* session, const nghttp2_frame* frame,
                                   void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  const std::int32_t id = frame->hd.stream_id;
  self->state_.stream_begun();
  ++self->streams_begun_;
  StreamState& stream = self->streams_[id];
  stream.id = id;
  if (self->goaway_last_stream_ >= 0 && id > self->goaway_last_stream_) {
    stream.refused = true;
    self->state_.stream_refused();
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  const auto faults = self->state_.faults();
  if (faults->goaway_after_streams != 0 && self->goaway_last_stream_ < 0 &&
      self->streams_begun_ >= faults->goaway_after_streams) {
    self->goaway_last_stream_ = id;
    nghttp2_submit_goaway(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR, nullptr, 0);
    self->state_.goaway_sent();
    mp::log::info("apns_sim.goaway", {{"connection", self->id_}, {"last_stream_id", id}});
  }
  return 0;
}

int H2Connection::on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name,
                            std::size_t name_len, const std::uint8_t* value, std::size_t value_len,
                            std::uint8_t, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  const auto it = self->streams_.find(frame->hd.stream_id);
  if (it == self->streams_.end() || it->second.refused) return 0;
  H2Request& req = it->second.request;
  const std::string_view n = as_view(name, name_len);
  const std::string_view v = as_view(value, value_len);
  if (n == ":method") {
    req.method = v;
  } else if (n == ":path") {
    req.path = v;
  } else if (n == ":scheme") {
    req.scheme = v;
  } else if (n == ":authority") {
    req.authority = v;
  } else if (req.headers.size() < 100) {
    req.headers.emplace_back(n, v);
  }
  return 0;
}

int H2Connection::on_data_chunk(nghttp2_session*, std::uint8_t, std::int32_t stream_id,
                                const std::uint8_t* data, std::size_t len, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  const auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end() || it->second.refused) return 0;
  H2Request& req = it->second.request;
  req.body_bytes += len;
  if (req.body.size() <= kMaxPayloadBytes) {
    req.body.append(as_view(data, std::min(len, kMaxPayloadBytes + 1 - req.body.size())));
  }
  return 0;
}

int H2Connection::on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  const bool ends_request = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
                            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (!ends_request) return 0;
  const auto it = self->streams_.find(frame->hd.stream_id);
  if (it == self->streams_.end() || it->second.refused || it->second.answered) return 0;
  self->on_request_complete(it->second);
  return 0;
}

int H2Connection::on_stream_close(nghttp2_session*, std::int32_t stream_id, std::uint32_t,
                                  void* user) {
  auto* self = static_cast<H2Connection*>(user);
  if (stream_id == self->abrupt_after_stream_) self->abrupt_ready_ = true;
  self->streams_.erase(stream_id);  // also cancels a pending latency timer
  return 0;
}

ssize_t H2Connection::read_response_body(nghttp2_session*, std::int32_t stream_id,
                                         std::uint8_t* buf, std::size_t length,
                                         std::uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* self = static_cast<H2Connection*>(user);
  const auto it = self->streams_.find(stream_id);
  if (it == self->streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  StreamState& s = it->second;
  const std::size_t n = std::min(length, s.response_body.size() - s.response_offset);
  std::copy_n(s.response_body.data() + s.response_offset, n, buf);
  s.response_offset += n;
  if (s.response_offset == s.response_body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

// ---- APNs behaviour -----------------------------------------------------------------------------

void H2Connection::on_request_complete(StreamState& stream) {
  stream.answered = true;
  const auto faults = state_.faults();
  const ClientCertFacts* cert = cert_ ? &*cert_ : nullptr;
  Response response;
  const RequestVerdict verdict = check_request(stream.request, cert, config_.environment);
  if (cert && names_any_certificate(faults->bad_certificate, cert->sha256_hex, cert->subject)) {
    response = {403, "BadCertificate", std::nullopt, {}};
  } else if (verdict.rejection) {
    response = {verdict.rejection->status, verdict.rejection->reason, std::nullopt, {}};
  } else if (auto fault = state_.decide_fault(verdict.request.token)) {
    response = {fault->status, fault->reason, fault->timestamp_ms, {}};
  }
  response.apns_id = verdict.request.apns_id.empty() ? make_apns_id() : verdict.request.apns_id;

  if (response.status == 200) {
    AcceptedNotification n;
    n.connection_id = id_;
    n.stream_id = stream.id;
    n.token = verdict.request.token;
    n.topic = verdict.request.topic;
    n.payload = stream.request.body;
    n.apns_id = response.apns_id;
    n.client_subject = cert ? cert->subject : "";
    for (const auto& [k, v] : stream.request.headers) {
      if (k.starts_with("apns-")) n.headers.emplace_back(k, v);
    }
    n.received_ms = now_unix_ms();
    state_.record_accepted(std::move(n));
  }
  mp::log::debug("apns_sim.request", {{"connection", id_},
                                      {"stream", stream.id},
                                      {"token", mp::redact(verdict.request.token)},
                                      {"status", response.status},
                                      {"reason", response.reason}});

  if (faults->latency.count() > 0) {
    stream.delay = std::make_unique<asio::steady_timer>(stream_.get_executor(), faults->latency);
    stream.delay->async_wait([weak = weak_from_this(), id = stream.id, response](error_code ec) {
      auto self = weak.lock();
      if (!self || ec || self->closing_) return;
      const auto it = self->streams_.find(id);
      if (it == self->streams_.end()) return;  // reset by the client meanwhile
      self->submit_response(it->second, response);
      self->wake_writer();
    });
    return;
  }
  submit_response(stream, response);
}

void H2Connection::submit_response(StreamState& stream, const Response& response) {
  const std::string status = std::to_string(response.status);
  const std::string k_status = ":status", k_apns_id = "apns-id", k_type = "content-type",
                    k_length = "content-length", json_type = "application/json";
  if (response.status != 200) {
    nlohmann::json body = {{"reason", response.reason}};
    if (response.timestamp_ms) body["timestamp"] = *response.timestamp_ms;
    stream.response_body = body.dump();
  }
  const std::string length = std::to_string(stream.response_body.size());
  std::vector<nghttp2_nv> nva = {header(k_status, status), header(k_apns_id, response.apns_id)};
  if (!stream.response_body.empty()) {
    nva.push_back(header(k_type, json_type));
    nva.push_back(header(k_length, length));
  }
  nghttp2_data_provider provider{};
  provider.read_callback = &H2Connection::read_response_body;
  const int rv = nghttp2_submit_response(session_.get(), stream.id, nva.data(), nva.size(),
                                         stream.response_body.empty() ? nullptr : &provider);
  if (rv != 0) return;
  state_.response_sent(response.status, response.reason);
  ++responses_submitted_;
  const auto faults = state_.faults();
  if (faults->close_after_streams != 0 && abrupt_after_stream_ < 0 &&
      responses_submitted_ >= faults->close_after_streams) {
    abrupt_after_stream_ = stream.id;
  }
}

std::string H2Connection::make_apns_id() {
  // A version 4 UUID in Apple's upper-case form.
  const std::uint64_t hi = (rng_() & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  const std::uint64_t lo = (rng_() & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  char buf[37];
  std::snprintf(buf, sizeof buf, "%08X-%04X-%04X-%04X-%012llX", static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff), static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buf;
}

}  // namespace apns_sim
