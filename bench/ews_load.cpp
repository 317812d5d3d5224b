// ews_load: HTTPS load generator for the EWS listener benchmark (bench/ews_bench.sh).
//
//   ews_load --port 8443 --ca ca.crt --connections 8 --mode keepalive --duration 20 --bodies
//   mixed.tsv
//
// Loopback only: --host must be in 127.0.0.0/8 or ::1. Every run is bounded: it stops after
// --duration seconds and/or --requests requests (without --duration, after 600 s at most), and
// every network operation has a deadline (--timeout).
//
// Workload: --bodies FILE holds one callback per line, `path<TAB>base64(body)[<TAB>label]`
// (blank lines and lines starting with '#' are skipped). Requests take the lines in order,
// cycling, shared by all connections. The optional label groups the counts in the output (the
// benchmark labels lines newmail / modified / status / bind to check what was recorded).
// Without --bodies, every request POSTs one built-in StatusEvent notification to --path, or with
// --random-secrets to a new random listener secret each time (a flood of made-up URLs).
// --fresh-item-ids: the first 16 characters of every `ItemId Id="…"` in a body are replaced by a
// stamp unique to the request (a random run nonce and a counter), so that a body sent again is a
// new mail: the relay counts a NewMail once per ItemId and registration, as Exchange resends it.
// --graph: the bodies are Microsoft Graph change notifications (`Content-Type: application/json`,
// no SOAPAction) and a 202 counts as accepted (soap_ok); over_3s and over_10s count the answers
// slower than Graph's limits.
// Each request is a real EWS callback: POST, `Content-Type: text/xml; charset=utf-8`, the
// quoted SendNotification SOAPAction, Content-Length; in newconn mode also `Connection: close`.
//
// Modes: keepalive (each of --connections connections sends requests one after another) and
// newconn (each request on a new TCP connection with a full TLS handshake: no session cache, no
// tickets offered; the client closes the socket after the response).
//
// Pacing: --rate 0 sends as fast as the connections allow (closed loop; latency from the send).
// --rate R > 0 is open loop: request k is due at start + k/R whatever happened before, the
// next free connection takes the next due request, and latency is measured from the time it was
// due, so queueing behind a slow server shows in the percentiles (no coordinated omission).
//
// Output: one JSON line (see print_report): requests answered, ok (2xx), soap_ok (a
// SubscriptionStatus OK reply), unsubscribe, non-2xx by status, errors by kind, elapsed, rates,
// latency percentiles in ms, handshakes, the client's own CPU seconds, counts per label.
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Stream = beast::ssl_stream<beast::tcp_stream>;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

constexpr double kDefaultMaxSeconds = 600;             // without --duration
constexpr std::size_t kMaxLatencySamples = 64u << 20;  // 256 MiB of samples at most

const char kSoapAction[] =
    "http://schemas.microsoft.com/exchange/services/2006/messages/SendNotification";

const char kBuiltinBody[] =
    R"(<?xml version="1.0" encoding="utf-8"?>)"
    R"(<soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/">)"
    R"(<soap11:Header><t:RequestServerVersion xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" Version="Exchange2016"/></soap11:Header>)"
    R"(<soap11:Body><m:SendNotification xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" )"
    R"(xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:ResponseMessages>)"
    R"(<m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>)"
    R"(<m:Notification><t:SubscriptionId>ews-load-builtin-subscription</t:SubscriptionId>)"
    R"(<t:PreviousWatermark>AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents>)"
    R"(<t:StatusEvent><t:Watermark>AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE=</t:Watermark></t:StatusEvent>)"
    R"(</m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification>)"
    R"(</soap11:Body></soap11:Envelope>)";

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string ca;
  bool insecure = false;
  std::string server_name = "localhost";
  unsigned connections = 8;
  std::string mode = "keepalive";
  double rate = 0;
  double duration = 0;
  std::uint64_t requests = 0;
  std::string bodies;
  std::string path = "/ews/v1/notify/ews-load-builtin-secret-AAAAAAAAAAAAAAAAAAAAAAAA";
  bool random_secrets = false;  // each request to /ews/v1/notify/<a new random secret>
  bool fresh_item_ids = false;  // a unique prefix in every ItemId of each request
  unsigned secret_chars = 43;   // their length: 43 as URLs before capabilities, 44 as these
  unsigned threads = 1;
  double timeout = 10;
  std::string label;
  bool graph = false;  // --graph: the bodies are Graph notifications; 202 counts as soap_ok
};

// ---- workload -------------------------------------------------------------------------------

std::optional<std::string> base64_decode(std::string_view in) {
  static const auto table = [] {
    std::array<int, 256> t{};
    t.fill(-1);
    const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(a[i])] = i;
    return t;
  }();
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  std::size_t i = 0;
  for (; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c == '=') break;
    const int v = table[c];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  for (; i < in.size(); ++i) {
    if (in[i] != '=') return std::nullopt;
  }
  return out;
}

// `graph`: a Microsoft Graph change notification (JSON) instead of an EWS callback.
std::string make_request(const std::string& path, std::string_view body, bool close,
                         bool graph = false) {
  std::string r;
  r.reserve(path.size() + body.size() + 300);
  r += "POST ";
  r += path;
  if (graph) {
    r += " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json; charset=utf-8";
  } else {
    r += " HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml; charset=utf-8\r\nSOAPAction: \"";
    r += kSoapAction;
    r += "\"";
  }
  r += "\r\nContent-Length: ";
  r += std::to_string(body.size());
  r += "\r\n";
  if (close) r += "Connection: close\r\n";
  r += "\r\n";
  r += body;
  return r;
}

constexpr std::size_t kItemStampChars = 16;

struct Workload {
  std::vector<std::string> requests;  // the bytes to send, headers and body
  // Per request: where its ItemId values start (each at least kItemStampChars long).
  std::vector<std::vector<std::size_t>> item_ids;
  std::vector<std::uint32_t> label_of;
  std::vector<std::string> labels;
};

Workload load_workload(const Options& o) {
  Workload w;
  const bool close = o.mode == "newconn";
  std::map<std::string, std::uint32_t> label_index;
  auto label_id = [&](const std::string& name) {
    auto [it, fresh] = label_index.try_emplace(name, static_cast<std::uint32_t>(w.labels.size()));
    if (fresh) w.labels.push_back(name);
    return it->second;
  };
  if (o.bodies.empty()) {
    w.requests.push_back(make_request(o.path, kBuiltinBody, close));
    w.label_of.push_back(label_id("builtin"));
    return w;
  }
  std::ifstream in(o.bodies, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + o.bodies);
  std::string line;
  std::size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    const auto tab1 = line.find('\t');
    if (tab1 == std::string::npos)
      throw std::runtime_error(o.bodies + ":" + std::to_string(number) + ": no TAB");
    const auto tab2 = line.find('\t', tab1 + 1);
    const std::string path = line.substr(0, tab1);
    const std::string_view b64 = std::string_view(line).substr(
        tab1 + 1, tab2 == std::string::npos ? std::string::npos : tab2 - tab1 - 1);
    const std::string label = tab2 == std::string::npos ? "" : line.substr(tab2 + 1);
    if (path.empty() || path[0] != '/' || path.find_first_of(" \r\n\t") != std::string::npos) {
      throw std::runtime_error(o.bodies + ":" + std::to_string(number) +
                               ": the path must start with / and hold no spaces");
    }
    auto body = base64_decode(b64);
    if (!body)
      throw std::runtime_error(o.bodies + ":" + std::to_string(number) + ": invalid base64");
    w.requests.push_back(make_request(path, *body, close, o.graph));
    w.label_of.push_back(label_id(label));
    auto& items = w.item_ids.emplace_back();
    static constexpr std::string_view kItem = "ItemId Id=\"";
    const std::string& r = w.requests.back();
    for (auto at = r.find(kItem); at != std::string::npos; at = r.find(kItem, at + 1)) {
      const auto value = at + kItem.size();
      const auto end = r.find('"', value);
      if (end != std::string::npos && end - value >= kItemStampChars) items.push_back(value);
    }
    if (o.fresh_item_ids && items.empty() && label == "newmail") {
      throw std::runtime_error(o.bodies + ":" + std::to_string(number) +
                               ": --fresh-item-ids, but this newmail body has no ItemId of " +
                               std::to_string(kItemStampChars) + " characters or more");
    }
  }
  if (w.requests.empty()) throw std::runtime_error(o.bodies + ": no entries");
  return w;
}

// ---- schedule --------------------------------------------------------------------------------

struct Ticket {
  std::uint64_t index;
  Clock::time_point due;
};

class Plan {
 public:
  Plan(const Options& o, Clock::time_point start)
      : start_(start),
        deadline_(start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                              o.duration > 0 ? o.duration : kDefaultMaxSeconds))),
        max_requests_(o.requests),
        rate_(o.rate) {}

  std::optional<Ticket> take() {
    const std::uint64_t k = next_.fetch_add(1, std::memory_order_relaxed);
    if (max_requests_ && k >= max_requests_) return std::nullopt;
    Clock::time_point due;
    if (rate_ > 0) {
      due = start_ + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(static_cast<double>(k) / rate_));
    } else {
      due = Clock::now();
    }
    if (due >= deadline_) return std::nullopt;
    return Ticket{k, due};
  }
  Clock::time_point start() const { return start_; }
  bool paced() const { return rate_ > 0; }

 private:
  std::atomic<std::uint64_t> next_{0};
  Clock::time_point start_;
  Clock::time_point deadline_;
  std::uint64_t max_requests_;
  double rate_;
};

// ---- per-thread counts -----------------------------------------------------------------------

struct Stats {
  std::uint64_t answered = 0;
  std::uint64_t ok = 0;
  std::uint64_t soap_ok = 0;
  std::uint64_t unsubscribe = 0;
  std::uint64_t errors = 0;
  std::uint64_t handshakes = 0;
  std::uint64_t resumed = 0;
  std::map<unsigned, std::uint64_t> non_2xx;
  std::map<std::string, std::uint64_t> error_kinds;
  std::vector<std::uint32_t> latency_us;
  std::vector<std::uint32_t> answer_us;  // from the send (latency_us counts from the due time)
  std::vector<std::uint64_t> label_answered;
  std::vector<std::uint64_t> label_soap_ok;
};

class Worker {
 public:
  Worker(const Options& o, const Workload& w, Plan& plan, asio::ssl::context& tls,
         tcp::endpoint target, std::size_t latency_reserve)
      : o_(o),
        w_(w),
        plan_(plan),
        tls_(tls),
        target_(target),
        timeout_(
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.timeout))) {
    stats.latency_us.reserve(latency_reserve);
    stats.label_answered.assign(w.labels.size(), 0);
    stats.label_soap_ok.assign(w.labels.size(), 0);
  }

  // A path no registration has: 43 random base64url characters, like a listener secret.
  std::string random_path() {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::string path = "/ews/v1/notify/";
    for (unsigned k = 0; k < o_.secret_chars; ++k) path += kAlphabet[rng_() % 64];
    return path;
  }

  // kItemStampChars base64 characters: 32 bits of the run's nonce, 64 of a counter shared by
  // every thread of the run.
  std::string item_stamp() {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const std::uint32_t nonce = std::random_device{}();
    static std::atomic<std::uint64_t> counter{0};
    const std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
    std::string stamp(kItemStampChars, 'A');
    for (std::size_t k = 0; k < 11; ++k) stamp[k] = kAlphabet[(n >> (6 * k)) & 63];
    for (std::size_t k = 0; k < 5; ++k) stamp[11 + k] = kAlphabet[(nonce >> (6 * k)) & 63];
    return stamp;
  }

  void spawn(unsigned connections) {
    for (unsigned i = 0; i < connections; ++i) {
      if (o_.mode == "newconn") {
        asio::co_spawn(ioc, newconn_loop(), asio::detached);
      } else {
        asio::co_spawn(ioc, keepalive_loop(), asio::detached);
      }
    }
  }

  asio::io_context ioc{1};
  Stats stats;

 private:
  void error(const char* phase, const beast::error_code& ec) {
    ++stats.errors;
    std::string kind = phase;
    kind += ": ";
    kind += ec == beast::error::timeout ? std::string("timeout") : ec.message();
    ++stats.error_kinds[kind];
  }

  asio::awaitable<void> wait_until_due(asio::steady_timer& timer, const Ticket& t) {
    if (!plan_.paced() || t.due <= Clock::now()) co_return;
    timer.expires_at(t.due);
    co_await timer.async_wait(nothrow);
  }

  asio::awaitable<bool> open(Stream& s) {
    auto& layer = beast::get_lowest_layer(s);
    layer.expires_after(timeout_);
    auto [cec] = co_await layer.async_connect(target_, nothrow);
    if (cec) {
      error("connect", cec);
      co_return false;
    }
    layer.socket().set_option(tcp::no_delay(true));
    SSL_set_tlsext_host_name(s.native_handle(), o_.server_name.c_str());
    if (!o_.insecure) {
      SSL_set1_host(s.native_handle(), o_.server_name.c_str());
    }
    auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::client, nothrow);
    if (hec) {
      error("handshake", hec);
      co_return false;
    }
    ++stats.handshakes;
    if (SSL_session_reused(s.native_handle())) ++stats.resumed;
    co_return true;
  }

  // One request and its response; false when the connection is no longer usable.
  asio::awaitable<bool> exchange(Stream& s, beast::flat_buffer& buffer, const Ticket& t,
                                 bool& keep) {
    const std::size_t i = t.index % w_.requests.size();
    const Clock::time_point sent = Clock::now();
    const Clock::time_point from = plan_.paced() ? t.due : sent;
    auto& layer = beast::get_lowest_layer(s);
    layer.expires_after(timeout_);
    std::string made_up;  // --random-secrets: the secret no registration has, made for this request
    if (random_secrets_) {
      made_up = make_request(random_path(), kBuiltinBody, close_);
    } else if (fresh_items_ && i < w_.item_ids.size() && !w_.item_ids[i].empty()) {
      made_up = w_.requests[i];
      const std::string stamp = item_stamp();
      for (const auto at : w_.item_ids[i]) made_up.replace(at, stamp.size(), stamp);
    }
    const std::string& bytes = made_up.empty() ? w_.requests[i] : made_up;
    auto [wec, wn] = co_await asio::async_write(s, asio::buffer(bytes), nothrow);
    if (wec) {
      error("write", wec);
      co_return false;
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1 << 20);
    auto [rec, rn] = co_await bhttp::async_read(s, buffer, parser, nothrow);
    if (rec) {
      error("read", rec);
      co_return false;
    }
    const auto done = Clock::now();
    const auto& res = parser.get();
    ++stats.answered;
    const std::uint32_t label = w_.label_of[i];
    ++stats.label_answered[label];
    const unsigned status = res.result_int();
    if (status >= 200 && status < 300) {
      ++stats.ok;
      const std::string& body = res.body();
      if (o_.graph ? status == 202 : body.find("SubscriptionStatus>OK<") != std::string::npos) {
        ++stats.soap_ok;
        ++stats.label_soap_ok[label];
      } else if (body.find("SubscriptionStatus>Unsubscribe<") != std::string::npos) {
        ++stats.unsubscribe;
      }
    } else {
      ++stats.non_2xx[status];
    }
    if (stats.latency_us.size() < kMaxLatencySamples) {
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(done - from).count();
      stats.latency_us.push_back(
          static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, UINT32_MAX)));
      // From the send: the server's own answer time, as a sender like Graph measures it.
      const auto answer =
          std::chrono::duration_cast<std::chrono::microseconds>(done - sent).count();
      stats.answer_us.push_back(
          static_cast<std::uint32_t>(std::clamp<std::int64_t>(answer, 0, UINT32_MAX)));
    }
    keep = res.keep_alive();
    co_return true;
  }

  asio::awaitable<void> keepalive_loop() {
    asio::steady_timer timer(ioc);
    std::unique_ptr<Stream> stream;
    beast::flat_buffer buffer;
    while (auto t = plan_.take()) {
      co_await wait_until_due(timer, *t);
      if (!stream) {
        stream = std::make_unique<Stream>(ioc, tls_);
        buffer.clear();
        if (!co_await open(*stream)) {
          stream.reset();
          co_await backoff(timer);
          continue;
        }
      }
      bool keep = false;
      if (!co_await exchange(*stream, buffer, *t, keep) || !keep) close(std::move(stream));
    }
    if (stream) close(std::move(stream));
  }

  asio::awaitable<void> newconn_loop() {
    asio::steady_timer timer(ioc);
    while (auto t = plan_.take()) {
      co_await wait_until_due(timer, *t);
      auto stream = std::make_unique<Stream>(ioc, tls_);
      if (!co_await open(*stream)) {
        close(std::move(stream));
        co_await backoff(timer);
        continue;
      }
      beast::flat_buffer buffer;
      bool keep = false;
      co_await exchange(*stream, buffer, *t, keep);
      close(std::move(stream));
    }
  }

  // After a failed connect: a short pause so that a dead server does not turn into a busy loop.
  asio::awaitable<void> backoff(asio::steady_timer& timer) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(nothrow);
  }

  // The server said Connection: close, or the run is over: close the socket without waiting.
  static void close(std::unique_ptr<Stream> stream) {
    auto& layer = beast::get_lowest_layer(*stream);
    beast::error_code ignored;
    layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
    layer.close();
  }

  const Options& o_;
  const Workload& w_;
  Plan& plan_;
  asio::ssl::context& tls_;
  tcp::endpoint target_;
  Clock::duration timeout_;
  const bool random_secrets_ = o_.random_secrets;
  const bool fresh_items_ = o_.fresh_item_ids;
  const bool close_ = o_.mode == "newconn";
  std::mt19937_64 rng_{std::random_device{}()};
};

// ---- report ---------------------------------------------------------------------------------

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string number(double v, int decimals = 3) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

double percentile_ms(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1] / 1000.0;
}

double cpu_seconds_self() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return s(u.ru_utime) + s(u.ru_stime);
}

void print_report(const Options& o, const Workload& w,
                  std::vector<std::unique_ptr<Worker>>& workers, double elapsed,
                  double client_cpu) {
  Stats total;
  total.label_answered.assign(w.labels.size(), 0);
  total.label_soap_ok.assign(w.labels.size(), 0);
  std::size_t samples = 0;
  for (const auto& wk : workers) samples += wk->stats.latency_us.size();
  total.latency_us.reserve(samples);
  for (auto& wk : workers) {
    const Stats& s = wk->stats;
    total.answered += s.answered;
    total.ok += s.ok;
    total.soap_ok += s.soap_ok;
    total.unsubscribe += s.unsubscribe;
    total.errors += s.errors;
    total.handshakes += s.handshakes;
    total.resumed += s.resumed;
    for (const auto& [k, v] : s.non_2xx) total.non_2xx[k] += v;
    for (const auto& [k, v] : s.error_kinds) total.error_kinds[k] += v;
    for (std::size_t i = 0; i < w.labels.size(); ++i) {
      total.label_answered[i] += s.label_answered[i];
      total.label_soap_ok[i] += s.label_soap_ok[i];
    }
    total.latency_us.insert(total.latency_us.end(), s.latency_us.begin(), s.latency_us.end());
    std::vector<std::uint32_t>().swap(wk->stats.latency_us);
    total.answer_us.insert(total.answer_us.end(), s.answer_us.begin(), s.answer_us.end());
    std::vector<std::uint32_t>().swap(wk->stats.answer_us);
  }
  std::sort(total.latency_us.begin(), total.latency_us.end());
  std::sort(total.answer_us.begin(), total.answer_us.end());

  std::string j = "{\"tool\":\"ews_load\"";
  j += ",\"label\":" + json_string(o.label);
  j += ",\"target\":" + json_string(o.host + ":" + std::to_string(o.port));
  j += ",\"mode\":" + json_string(o.mode);
  j += ",\"connections\":" + std::to_string(o.connections);
  j += ",\"threads\":" + std::to_string(o.threads);
  j += ",\"rate_target\":" + number(o.rate, 1);
  j += ",\"entries\":" + std::to_string(w.requests.size());
  j += ",\"requests\":" + std::to_string(total.answered + total.errors);
  j += ",\"answered\":" + std::to_string(total.answered);
  j += ",\"ok\":" + std::to_string(total.ok);
  j += ",\"soap_ok\":" + std::to_string(total.soap_ok);
  j += ",\"unsubscribe\":" + std::to_string(total.unsubscribe);
  j += ",\"non_2xx\":{";
  bool first = true;
  for (const auto& [k, v] : total.non_2xx) {
    j += (first ? "\"" : ",\"") + std::to_string(k) + "\":" + std::to_string(v);
    first = false;
  }
  j += "},\"errors\":" + std::to_string(total.errors);
  j += ",\"error_kinds\":{";
  first = true;
  for (const auto& [k, v] : total.error_kinds) {
    j += (first ? "" : ",") + json_string(k) + ":" + std::to_string(v);
    first = false;
  }
  j += "},\"handshakes\":" + std::to_string(total.handshakes);
  j += ",\"resumed\":" + std::to_string(total.resumed);
  j += ",\"elapsed_s\":" + number(elapsed);
  j += ",\"rate\":" + number(elapsed > 0 ? static_cast<double>(total.answered) / elapsed : 0, 1);
  j += ",\"ok_rate\":" + number(elapsed > 0 ? static_cast<double>(total.soap_ok) / elapsed : 0, 1);
  j += ",\"latency_ms\":{\"p50\":" + number(percentile_ms(total.latency_us, 50)) +
       ",\"p90\":" + number(percentile_ms(total.latency_us, 90)) +
       ",\"p99\":" + number(percentile_ms(total.latency_us, 99)) +
       ",\"max\":" + number(total.latency_us.empty() ? 0 : total.latency_us.back() / 1000.0) +
       ",\"samples\":" + std::to_string(total.latency_us.size()) + "}";
  // Answers slower than Graph's limits (3 s: the host is delayed; 10 s: notifications dropped),
  // from the due time (over_*: the client's queue included) and from the send (answer_over_*:
  // what a sender like Graph times).
  const auto over = [](const std::vector<std::uint32_t>& sorted, std::uint64_t us) {
    return sorted.end() - std::upper_bound(sorted.begin(), sorted.end(), us);
  };
  j += ",\"over_3s\":" + std::to_string(over(total.latency_us, 3'000'000)) +
       ",\"over_10s\":" + std::to_string(over(total.latency_us, 10'000'000));
  j += ",\"answer_ms\":{\"p50\":" + number(percentile_ms(total.answer_us, 50)) +
       ",\"p99\":" + number(percentile_ms(total.answer_us, 99)) +
       ",\"max\":" + number(total.answer_us.empty() ? 0 : total.answer_us.back() / 1000.0) + "}";
  j += ",\"answer_over_3s\":" + std::to_string(over(total.answer_us, 3'000'000)) +
       ",\"answer_over_10s\":" + std::to_string(over(total.answer_us, 10'000'000));
  j += ",\"client_cpu_s\":" + number(client_cpu);
  j += ",\"labels\":{";
  for (std::size_t i = 0; i < w.labels.size(); ++i) {
    j += (i ? "," : "") + json_string(w.labels[i]) +
         ":{\"answered\":" + std::to_string(total.label_answered[i]) +
         ",\"soap_ok\":" + std::to_string(total.label_soap_ok[i]) + "}";
  }
  j += "}}";
  std::cout << j << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ews_load: HTTPS load generator for EWS push callbacks (loopback only)"};
  app.add_option("--host", o.host, "server address; must be loopback")->capture_default_str();
  app.add_option("--port", o.port, "server port")->required();
  auto* ca = app.add_option("--ca", o.ca, "CA file to verify the server certificate with")
                 ->check(CLI::ExistingFile);
  auto* insecure = app.add_flag("--insecure", o.insecure, "do not verify the server certificate");
  ca->excludes(insecure);
  app.add_option("--server-name", o.server_name, "TLS SNI and verified host name")
      ->capture_default_str();
  app.add_option("--connections", o.connections, "concurrent connections")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  app.add_option("--mode", o.mode, "keepalive or newconn (full TLS handshake per request)")
      ->check(CLI::IsMember({"keepalive", "newconn"}))
      ->capture_default_str();
  app.add_option("--rate", o.rate, "requests per second, open loop; 0 = as fast as possible")
      ->check(CLI::Range(0.0, 10e6))
      ->capture_default_str();
  app.add_option("--duration", o.duration, "seconds to send for (600 s at most without it)")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--requests", o.requests, "requests to send at most");
  app.add_option("--bodies", o.bodies, "file of path<TAB>base64(body)[<TAB>label] lines")
      ->check(CLI::ExistingFile);
  app.add_option("--path", o.path, "path for the built-in body (without --bodies)")
      ->capture_default_str();
  app.add_flag("--random-secrets", o.random_secrets,
               "POST the built-in body to a new random listener secret each time (a flood of "
               "made-up URLs)");
  app.add_flag("--fresh-item-ids", o.fresh_item_ids,
               "give every ItemId of each request a unique prefix (a body sent again is a new "
               "mail, not Exchange resending one)");
  app.add_option("--secret-chars", o.secret_chars,
                 "length of the --random-secrets: 43 (untagged, looked up) or 44 (the capability's "
                 "form, refused from its missing tag)")
      ->check(CLI::Range(22u, 128u))
      ->capture_default_str();
  app.add_option("--threads", o.threads, "client threads (one io_context each)")
      ->check(CLI::Range(1u, 64u))
      ->capture_default_str();
  app.add_option("--timeout", o.timeout, "seconds allowed for each connect, handshake, request")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_option("--label", o.label, "name of this run, echoed in the output");
  app.add_flag("--graph", o.graph,
               "the --bodies are Microsoft Graph change notifications: Content-Type "
               "application/json, no SOAPAction, and 202 counts as OK (soap_ok)");
  CLI11_PARSE(app, argc, argv);

  if (o.ca.empty() && !o.insecure) {
    std::cerr << "ews_load: give --ca FILE or --insecure\n";
    return 2;
  }
  if (o.duration <= 0 && o.requests == 0) {
    std::cerr << "ews_load: give --duration and/or --requests\n";
    return 2;
  }
  boost::system::error_code aec;
  const auto address = asio::ip::make_address(o.host, aec);
  if (aec || !address.is_loopback()) {
    std::cerr << "ews_load: --host must be a loopback address (127.0.0.0/8 or ::1), got " << o.host
              << "\n";
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);

  Workload workload;
  try {
    workload = load_workload(o);
  } catch (const std::exception& e) {
    std::cerr << "ews_load: " << e.what() << "\n";
    return 2;
  }

  asio::ssl::context tls(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  // No session reuse in any mode: newconn must pay a full handshake every time.
  SSL_CTX_set_session_cache_mode(tls.native_handle(), SSL_SESS_CACHE_OFF);
  if (o.insecure) {
    tls.set_verify_mode(asio::ssl::verify_none);
  } else {
    boost::system::error_code ec;
    tls.load_verify_file(o.ca, ec);
    if (ec) {
      std::cerr << "ews_load: cannot load " << o.ca << ": " << ec.message() << "\n";
      return 2;
    }
    tls.set_verify_mode(asio::ssl::verify_peer);
  }

  const unsigned threads = std::min(o.threads, o.connections);
  o.threads = threads;
  std::size_t reserve = o.requests ? o.requests / threads + 1024 : 1u << 20;
  if (o.rate > 0 && o.duration > 0) {
    reserve = std::min<std::size_t>(reserve,
                                    static_cast<std::size_t>(o.rate * o.duration / threads) + 1024);
  }
  reserve = std::min<std::size_t>(reserve, 16u << 20);

  const double cpu_before = cpu_seconds_self();
  const auto start = Clock::now() + std::chrono::milliseconds(10);
  Plan plan(o, start);
  const tcp::endpoint target(address, o.port);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.push_back(std::make_unique<Worker>(o, workload, plan, tls, target, reserve));
    workers.back()->spawn(o.connections / threads + (t < o.connections % threads ? 1 : 0));
  }
  std::vector<std::thread> pool;
  for (auto& wk : workers) pool.emplace_back([&wk] { wk->ioc.run(); });
  for (auto& th : pool) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  print_report(o, workload, workers, elapsed, cpu_seconds_self() - cpu_before);
  return 0;
}
