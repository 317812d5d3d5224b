// soak_load: the load of the soak benchmark (bench/soak.sh): EWS callbacks to mailpushd for the
// registrations of the fan-out seed (fanout_common.hpp), open loop for a long time, with a sample
// line every --interval seconds and, at the end, the check that nothing acknowledged was lost.
//
//   soak_load --port P --ca ca.crt --mailboxes N --rate R --duration S --status-share 0.3
//             --control-port C --intervals iv.jsonl --until-file drained --other-tokens other.tsv
//   soak_load --port P --ca ca.crt --mailboxes N --rate 0 --duration 10      (capacity)
//   soak_load --port P --ca ca.crt --idle-tcp 500 --idle-tls 200 --hold 20    (idle burst)
//   soak_load --port P --ca ca.crt --callback SECRET --subscription S --badge 3 (one callback)
//
// Each request goes to a random mailbox not in flight (one callback per mailbox at a time, as
// Exchange posts a subscription's notifications one after the other) on one of its devices'
// subscriptions. A share of them (--status-share) are StatusEvent heartbeats; the others carry
// the inbox's UnreadCount = the mailbox's own counter, 1, 2, 3… (per mailbox, so that a run of
// hours stays far below mailpushd's cap of 1,000,000 and the newest badge is the largest).
//
// Loss: a poller thread reads every notification apns-sim accepts (GET /accepted, every second;
// apns-sim must keep --max-recorded above a few seconds of notifications) and keeps each
// token's last badge in apns-sim's order. At the end (after --until-file appears, i.e. the
// outbox is drained, or --drain-timeout) every device of a mailbox whose newest badge was
// answered OK must have last received that badge or a later one of the mailbox: the devices that
// did not are lost. Tokens outside the seed (registrations the soak churns through the
// registration API) go to --other-tokens as "token<TAB>last badge" for soak.sh to check.
//
// Pacing as fanout_load: request k is due at start + k/R, latencies count from the due time.
// Loopback only; bounded by --duration and --timeout on every network operation.
#include <openssl/ssl.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
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
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fanout_common.hpp"
#include "fanout_requests.hpp"
#include "load_client.hpp"
#include "sim_control.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Stream = beast::ssl_stream<beast::tcp_stream>;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr unsigned kDraws = 64;  // mailboxes tried per request before it is skipped

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string ca;
  std::string server_name = "localhost";
  std::uint64_t mailboxes = 0;
  unsigned connections = 64;
  double rate = 0;
  double duration = 0;
  double status_share = 0.3;
  double interval = 10;
  std::string intervals_path;
  std::uint16_t control_port = 0;
  std::string until_file;
  double drain_timeout = 120;
  std::string other_tokens_path;
  std::uint64_t seed = 1;
  double timeout = 10;
  unsigned idle_tcp = 0;
  unsigned idle_tls = 0;
  double hold = 20;
  std::string callback_secret;
  std::string subscription;
  std::uint32_t badge = 0;
};

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

double percentile_ms(std::vector<std::uint32_t> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1] / 1000.0;
}

double cpu_seconds_self() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

// ---- what apns-sim received -----------------------------------------------------------------

// Folds apns-sim's accepted notifications into each token's last badge, in apns-sim's order.
class SimPoller {
 public:
  // Only what apns-sim accepts from now on counts (not an earlier run's notifications).
  explicit SimPoller(std::uint16_t port)
      : port_(port),
        control_(std::make_unique<fanout::SimControl>(port)),
        at_(control_->get("/stats").at("next_seq").get<std::uint64_t>() - 1) {}
  void start() {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        poll();
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
      poll();  // what arrived since the last round
    });
  }
  void finish() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  std::uint64_t received() const { return received_.load(); }
  std::uint64_t dropped() const { return dropped_.load(); }
  std::uint64_t unreadable() const { return unreadable_.load(); }
  // After finish(): token -> last badge.
  const std::unordered_map<std::string, std::int64_t>& last_badges() const { return last_; }

 private:
  void poll() {
    try {
      if (!control_) control_ = std::make_unique<fanout::SimControl>(port_);
      for (;;) {
        const json page = control_->get("/accepted?since=" + std::to_string(at_) + "&limit=20000");
        const auto& records = page.at("records");
        if (records.empty()) return;
        for (const auto& r : records) fold(r);
        at_ = page.at("last_seq").get<std::uint64_t>();
      }
    } catch (const std::exception& e) {
      std::cerr << "soak_load: reading apns-sim: " << e.what() << "\n";
      ++unreadable_;
      control_.reset();  // a new connection next round
    }
  }
  void fold(const json& r) {
    const auto seq = r.at("seq").get<std::uint64_t>();
    // apns-sim drops its oldest records past --max-recorded: a gap means unseen notifications.
    if (seq > at_ + 1) dropped_ += seq - at_ - 1;
    at_ = seq;
    ++received_;
    const json payload = json::parse(r.at("payload").get<std::string>(), nullptr, false);
    if (!payload.is_object() || !payload.contains("aps") || !payload["aps"].contains("badge")) {
      ++unreadable_;
      return;
    }
    last_[r.at("token").get<std::string>()] = payload["aps"]["badge"].get<std::int64_t>();
  }

  std::uint16_t port_;
  std::unique_ptr<fanout::SimControl> control_;
  std::uint64_t at_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> received_{0}, dropped_{0}, unreadable_{0};
  std::unordered_map<std::string, std::int64_t> last_;
};

// ---- one callback ------------------------------------------------------------------------

enum class Answer { ok, unsubscribe, other, http, error };

asio::awaitable<bool> open(const Options& o, tcp::endpoint target, Stream& st) {
  auto& layer = beast::get_lowest_layer(st);
  layer.expires_after(seconds(o.timeout));
  auto [cec] = co_await layer.async_connect(target, nothrow);
  if (cec) co_return false;
  layer.socket().set_option(tcp::no_delay(true));
  SSL_set_tlsext_host_name(st.native_handle(), o.server_name.c_str());
  SSL_set1_host(st.native_handle(), o.server_name.c_str());
  auto [hec] = co_await st.async_handshake(asio::ssl::stream_base::client, nothrow);
  co_return !hec;
}

// One request and its answer on the connection (opened first when there is none; closed when
// the answer does not keep it alive or there was none).
asio::awaitable<Answer> exchange(const Options& o, asio::ssl::context& tls, tcp::endpoint target,
                                 std::unique_ptr<Stream>& stream, beast::flat_buffer& buffer,
                                 const std::string& request) {
  if (!stream) {
    stream = std::make_unique<Stream>(co_await asio::this_coro::executor, tls);
    buffer.clear();
    if (!co_await open(o, target, *stream)) {
      stream.reset();
      co_return Answer::error;
    }
  }
  auto& layer = beast::get_lowest_layer(*stream);
  layer.expires_after(seconds(o.timeout));
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(1 << 20);
  auto [wec, wn] = co_await asio::async_write(*stream, asio::buffer(request), nothrow);
  beast::error_code rec;
  if (!wec)
    std::tie(rec, std::ignore) = co_await bhttp::async_read(*stream, buffer, parser, nothrow);
  if (wec || rec || !parser.get().keep_alive()) {
    beast::error_code ignored;
    layer.socket().shutdown(tcp::socket::shutdown_both, ignored);
    layer.close();
    stream.reset();
    if (wec || rec) co_return Answer::error;
  }
  const auto& res = parser.get();
  if (res.result_int() < 200 || res.result_int() >= 300) co_return Answer::http;
  if (res.body().find("SubscriptionStatus>OK<") != std::string::npos) co_return Answer::ok;
  if (res.body().find("SubscriptionStatus>Unsubscribe<") != std::string::npos)
    co_return Answer::unsubscribe;
  co_return Answer::other;
}

const char* answer_name(Answer a) {
  switch (a) {
    case Answer::ok:
      return "OK";
    case Answer::unsubscribe:
      return "Unsubscribe";
    case Answer::other:
      return "other";
    case Answer::http:
      return "http";
    case Answer::error:
      return "error";
  }
  return "error";
}

// --callback: one callback to a listener URL (soak.sh's churned registrations), a StatusEvent
// or, with --badge N, the inbox's UnreadCount N; prints the answer's SubscriptionStatus.
int post_callback(const Options& o, asio::ssl::context& tls, tcp::endpoint target) {
  asio::io_context ioc{1};
  Answer answer = Answer::error;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        std::unique_ptr<Stream> stream;
        beast::flat_buffer buffer;
        const std::string events =
            o.badge == 0 ? fanout::status_events(1) : fanout::unread_events(o.badge, o.badge);
        answer = co_await exchange(
            o, tls, target, stream, buffer,
            fanout::make_request(o.callback_secret,
                                 fanout::envelope(o.subscription, o.badge, events)));
      },
      asio::detached);
  ioc.run();
  std::cout << answer_name(answer) << std::endl;
  return answer == Answer::error ? 1 : 0;
}

// ---- the load -------------------------------------------------------------------------------

struct MailboxState {
  std::uint32_t sent = 0;       // the newest badge sent (the mailbox's counter)
  std::uint32_t newest_ok = 0;  // the newest badge answered OK
  bool busy = false;
};

// Counts of one interval and of the whole run.
struct Counts {
  std::uint64_t requests = 0, badges_ok = 0, heartbeats_ok = 0, unsubscribe = 0, other = 0,
                http = 0, errors = 0, skipped = 0;
  std::vector<std::uint32_t> latency_us;  // answer latency from the due time
  std::int64_t max_lag_us = 0;
  void add(const Counts& c) {
    requests += c.requests;
    badges_ok += c.badges_ok;
    heartbeats_ok += c.heartbeats_ok;
    unsubscribe += c.unsubscribe;
    other += c.other;
    http += c.http;
    errors += c.errors;
    skipped += c.skipped;
    latency_us.insert(latency_us.end(), c.latency_us.begin(), c.latency_us.end());
    max_lag_us = std::max(max_lag_us, c.max_lag_us);
  }
  json to_json(double elapsed) const {
    const std::uint64_t ok = badges_ok + heartbeats_ok;
    return {{"requests", requests},
            {"ok", ok},
            {"badges_ok", badges_ok},
            {"heartbeats_ok", heartbeats_ok},
            {"unsubscribe", unsubscribe},
            {"other", other},
            {"http_errors", http},
            {"errors", errors},
            {"skipped", skipped},
            {"ok_rate", elapsed > 0 ? std::round(ok / elapsed * 10) / 10 : 0.0},
            {"p50_ms", percentile_ms(latency_us, 50)},
            {"p99_ms", percentile_ms(latency_us, 99)},
            {"max_ms", latency_us.empty() ? 0.0 : percentile_ms(latency_us, 100)},
            {"max_lag_ms", static_cast<double>(max_lag_us) / 1000.0}};
  }
};

class Load {
 public:
  Load(const Options& o, asio::io_context& ioc, asio::ssl::context& tls, tcp::endpoint target)
      : o_(o),
        ioc_(ioc),
        tls_(tls),
        target_(target),
        mailboxes_(o.mailboxes + 1),
        registrations_(fanout::registration_id(o.mailboxes, 2) + 1) {}

  void spawn() {
    start_ = Clock::now() + std::chrono::milliseconds(20);
    deadline_ = start_ + seconds(o_.duration);
    for (unsigned i = 0; i < o_.connections; ++i)
      asio::co_spawn(ioc_, connection(), asio::detached);
    if (!o_.intervals_path.empty()) asio::co_spawn(ioc_, sampler(), asio::detached);
  }
  const std::vector<MailboxState>& mailboxes() const { return mailboxes_; }
  // Badges belong to registrations: each one's counts, by registration id.
  const std::vector<MailboxState>& registrations() const { return registrations_; }
  Counts total() const {
    Counts t = total_;
    t.add(interval_);
    return t;
  }
  double elapsed() const { return std::chrono::duration<double>(ended_ - start_).count(); }
  void set_poller(const SimPoller* p) { poller_ = p; }

 private:
  struct Pick {
    std::uint32_t mailbox = 0;
    unsigned slot = 0;
    bool heartbeat = false;
  };

  std::optional<Clock::time_point> take(std::uint64_t& k) {
    k = next_++;
    const auto due =
        o_.rate > 0 ? start_ + seconds(static_cast<double>(k) / o_.rate) : Clock::now();
    if (due >= deadline_) return std::nullopt;
    return due;
  }

  // A mailbox not in flight, one of its devices, and heartbeat or badge; false when none was free.
  bool draw(std::uint64_t k, Pick& p) {
    for (unsigned a = 0; a < kDraws; ++a) {
      const std::uint64_t x = fanout::mix(o_.seed * 0x100000001b3ull ^ fanout::mix(k * kDraws + a));
      const std::uint64_t i = 1 + x % o_.mailboxes;
      if (mailboxes_[i].busy) continue;
      mailboxes_[i].busy = true;
      p.mailbox = static_cast<std::uint32_t>(i);
      p.slot = static_cast<unsigned>((x >> 40) % fanout::devices_of(i));
      p.heartbeat = static_cast<double>(fanout::mix(x) % 1000000) < o_.status_share * 1e6;
      return true;
    }
    return false;
  }

  void record(const Pick& p, std::uint32_t badge, Answer a) {
    MailboxState& m = registrations_[fanout::registration_id(p.mailbox, p.slot)];
    mailboxes_[p.mailbox].busy = false;
    switch (a) {
      case Answer::ok:
        if (p.heartbeat) {
          ++interval_.heartbeats_ok;
        } else {
          ++interval_.badges_ok;
          m.newest_ok = std::max(m.newest_ok, badge);
        }
        break;
      case Answer::unsubscribe:
        ++interval_.unsubscribe;
        break;
      case Answer::other:
        ++interval_.other;
        break;
      case Answer::http:
        ++interval_.http;
        break;
      case Answer::error:
        // No answer: the callback may still be written later; the mailbox stays busy (is not
        // used again), so that its newest badge stays well defined.
        mailboxes_[p.mailbox].busy = true;
        ++interval_.errors;
        break;
    }
  }

  asio::awaitable<void> connection() {
    asio::steady_timer timer(ioc_);
    std::unique_ptr<Stream> stream;
    beast::flat_buffer buffer;
    std::uint64_t k = 0;
    while (auto due = take(k)) {
      Pick p;
      if (!draw(k, p)) {
        ++interval_.skipped;
        continue;
      }
      if (o_.rate > 0 && *due > Clock::now()) {
        timer.expires_at(*due);
        co_await timer.async_wait(nothrow);
      }
      const std::uint64_t registration = fanout::registration_id(p.mailbox, p.slot);
      const std::uint32_t badge =
          p.heartbeat ? 0 : ++registrations_[fanout::registration_id(p.mailbox, p.slot)].sent;
      const std::string events =
          p.heartbeat ? fanout::status_events(k) : fanout::unread_events(k, badge);
      const std::string request =
          fanout::make_request(fanout::secret(registration),
                               fanout::envelope(fanout::subscription(registration), k, events));
      const auto sent = Clock::now();
      ++interval_.requests;
      const Answer a = co_await exchange(o_, tls_, target_, stream, buffer, request);
      record(p, badge, a);
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - *due);
      interval_.latency_us.push_back(
          static_cast<std::uint32_t>(std::clamp<std::int64_t>(us.count(), 0, UINT32_MAX)));
      interval_.max_lag_us = std::max<std::int64_t>(
          interval_.max_lag_us,
          std::chrono::duration_cast<std::chrono::microseconds>(sent - *due).count());
    }
    ended_ = std::max(ended_, Clock::now());
    if (--open_connections_ == 0) sampling_ = false;
  }

  // Every --interval seconds one JSON line with the interval's counts and answer latencies.
  asio::awaitable<void> sampler() {
    std::ofstream out(o_.intervals_path, std::ios::trunc);
    asio::steady_timer timer(ioc_);
    auto at = start_;
    while (sampling_) {
      at += seconds(o_.interval);
      timer.expires_at(at);
      co_await timer.async_wait(nothrow);
      json line = interval_.to_json(o_.interval);
      line["t_s"] =
          std::round(std::chrono::duration<double>(Clock::now() - start_).count() * 10) / 10;
      line["wall_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
      if (poller_) line["sim_received"] = poller_->received();
      out << line.dump() << std::endl;
      total_.add(interval_);
      interval_ = Counts{};
    }
  }

  const Options& o_;
  asio::io_context& ioc_;
  asio::ssl::context& tls_;
  tcp::endpoint target_;
  std::vector<MailboxState> mailboxes_;      // busy: a callback of the mailbox in flight
  std::vector<MailboxState> registrations_;  // sent and newest_ok, by registration id
  Clock::time_point start_, deadline_, ended_{};
  std::uint64_t next_ = 0;
  unsigned open_connections_ = o_.connections;
  bool sampling_ = true;
  Counts interval_, total_;
  const SimPoller* poller_ = nullptr;
};

// ---- the check ------------------------------------------------------------------------------

// Every device whose registration had a badge answered OK must have last received that badge or
// a later one of its registration (badges belong to registrations: a device of the same mailbox
// gets only its own subscription's). Tokens outside the seed are written to --other-tokens.
json check(const Options& o, const std::vector<MailboxState>& registrations,
           const std::unordered_map<std::string, std::int64_t>& last) {
  std::uint64_t registrations_ok = 0, devices_checked = 0, lost = 0, stale = 0, unsent = 0;
  json examples = json::array();
  std::unordered_map<std::string, bool> seeded;
  for (std::uint64_t i = 1; i <= o.mailboxes; ++i) {
    for (unsigned s = 0; s < fanout::devices_of(i); ++s) {
      const std::string token = fanout::token(i, s);
      seeded[token] = true;
      const MailboxState& m = registrations[fanout::registration_id(i, s)];
      if (m.newest_ok == 0) continue;
      ++registrations_ok;
      ++devices_checked;
      const auto it = last.find(token);
      const std::int64_t got = it == last.end() ? 0 : it->second;
      if (got > m.sent) ++unsent;  // a badge never sent to this mailbox
      if (got >= m.newest_ok) continue;
      ++lost;
      if (got > 0) ++stale;
      if (examples.size() < 10)
        examples.push_back(
            {{"mailbox", i}, {"device", s}, {"newest_ok", m.newest_ok}, {"last_received", got}});
    }
  }
  std::uint64_t others = 0;
  if (!o.other_tokens_path.empty()) {
    std::ofstream out(o.other_tokens_path, std::ios::trunc);
    for (const auto& [token, badge] : last) {
      if (seeded.count(token)) continue;
      out << token << '\t' << badge << '\n';
      ++others;
    }
  }
  return {{"registrations_ok", registrations_ok},
          {"devices_checked", devices_checked},
          {"lost_devices", lost},
          {"stale_devices", stale},
          {"unsent_badges", unsent},
          {"other_tokens", others},
          {"lost_examples", examples}};
}

// After the sending: until --until-file exists (soak.sh: the outbox is drained) or the timeout.
void wait_for_drain(const Options& o) {
  const auto until = Clock::now() + seconds(o.drain_timeout);
  while (!o.until_file.empty() && !std::filesystem::exists(o.until_file) && Clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

// ---- idle connections -----------------------------------------------------------------------

// Opens --idle-tcp bare TCP connections and --idle-tls TLS connections (handshake done, no
// request), holds them --hold seconds, closes them; prints how many opened and how many the
// server had closed by then.
int idle_burst(const Options& o, asio::ssl::context& tls, tcp::endpoint target) {
  asio::io_context ioc{1};
  std::vector<std::unique_ptr<tcp::socket>> bare;
  std::vector<std::unique_ptr<Stream>> secure;
  unsigned tcp_open = 0, tls_open = 0, failed = 0;
  asio::co_spawn(
      ioc,
      [&]() -> asio::awaitable<void> {
        for (unsigned i = 0; i < o.idle_tcp; ++i) {
          bare.push_back(std::make_unique<tcp::socket>(ioc));
          auto [ec] = co_await bare.back()->async_connect(target, nothrow);
          ec ? ++failed : ++tcp_open;
        }
        for (unsigned i = 0; i < o.idle_tls; ++i) {
          secure.push_back(std::make_unique<Stream>(ioc, tls));
          Stream& st = *secure.back();
          beast::get_lowest_layer(st).expires_after(seconds(o.timeout));
          auto [ec] = co_await beast::get_lowest_layer(st).async_connect(target, nothrow);
          SSL_set_tlsext_host_name(st.native_handle(), o.server_name.c_str());
          if (!ec)
            std::tie(ec) = co_await st.async_handshake(asio::ssl::stream_base::client, nothrow);
          beast::get_lowest_layer(st).expires_never();
          ec ? ++failed : ++tls_open;
        }
        asio::steady_timer timer(ioc);
        timer.expires_after(seconds(o.hold));
        co_await timer.async_wait(nothrow);
      },
      asio::detached);
  ioc.run();
  unsigned closed_by_server = 0;
  for (auto& s : bare) {
    char byte;
    beast::error_code ec;
    s->non_blocking(true, ec);
    if (!ec) s->read_some(asio::buffer(&byte, 1), ec);
    if (ec == asio::error::eof || ec == asio::error::connection_reset) ++closed_by_server;
    s->close(ec);
  }
  for (auto& st : secure) beast::get_lowest_layer(*st).close();
  std::cout << json{{"tool", "soak_load"},
                    {"mode", "idle"},
                    {"tcp_open", tcp_open},
                    {"tls_open", tls_open},
                    {"failed", failed},
                    {"hold_s", o.hold},
                    {"tcp_closed_by_server", closed_by_server}}
                   .dump()
            << std::endl;
  return failed == 0 ? 0 : 1;
}

void add_options(CLI::App& app, Options& o) {
  app.add_option("--host", o.host, "server address; must be loopback")->capture_default_str();
  app.add_option("--port", o.port, "listener port")->required();
  app.add_option("--ca", o.ca, "CA file of the listener's certificate")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--server-name", o.server_name, "TLS SNI and verified host name")
      ->capture_default_str();
  app.add_option("--mailboxes", o.mailboxes, "mailboxes 1…N of the seed")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{10000000}));
  app.add_option("--connections", o.connections, "keep-alive connections")
      ->check(CLI::Range(1u, 1000u))
      ->capture_default_str();
  app.add_option("--rate", o.rate, "requests per second, open loop; 0 = as fast as possible")
      ->check(CLI::Range(0.0, 1e5))
      ->capture_default_str();
  app.add_option("--duration", o.duration, "seconds of sending")->check(CLI::Range(0.0, 86400.0));
  app.add_option("--status-share", o.status_share, "share of StatusEvent heartbeats")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--interval", o.interval, "seconds per --intervals line")
      ->check(CLI::Range(1.0, 600.0))
      ->capture_default_str();
  app.add_option("--intervals", o.intervals_path, "JSON lines, one per interval");
  app.add_option("--control-port", o.control_port, "apns-sim control port: check for loss");
  app.add_option("--until-file", o.until_file, "after sending, wait for this file (drained)");
  app.add_option("--drain-timeout", o.drain_timeout, "seconds to wait for --until-file")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  app.add_option("--other-tokens", o.other_tokens_path, "last badge of tokens outside the seed");
  app.add_option("--seed", o.seed, "seed of the draws")->capture_default_str();
  app.add_option("--timeout", o.timeout, "seconds for each connect, handshake, request")
      ->check(CLI::Range(0.1, 120.0))
      ->capture_default_str();
  app.add_option("--idle-tcp", o.idle_tcp, "idle burst: bare TCP connections")
      ->check(CLI::Range(0u, 5000u));
  app.add_option("--idle-tls", o.idle_tls, "idle burst: TLS connections")
      ->check(CLI::Range(0u, 5000u));
  app.add_option("--hold", o.hold, "idle burst: seconds to hold them")
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--callback", o.callback_secret, "one callback to this listener URL secret");
  app.add_option("--subscription", o.subscription, "--callback: its subscription id");
  app.add_option("--badge", o.badge, "--callback: UnreadCount (0: a StatusEvent)")
      ->check(CLI::Range(0u, 1000000u));
}

int run_load(const Options& o, asio::ssl::context& tls, tcp::endpoint target) {
  if (o.mailboxes == 0 || o.duration <= 0) {
    std::cerr << "soak_load: the load needs --mailboxes and --duration\n";
    return 2;
  }
  const double cpu0 = cpu_seconds_self();
  std::optional<SimPoller> poller;
  if (o.control_port != 0) {
    poller.emplace(o.control_port);
    poller->start();
  }
  asio::io_context ioc{1};
  Load load(o, ioc, tls, target);
  if (poller) load.set_poller(&*poller);
  load.spawn();
  ioc.run();
  const Counts total = load.total();
  json out = {{"tool", "soak_load"},
              {"mode", "load"},
              {"mailboxes", o.mailboxes},
              {"connections", o.connections},
              {"rate_target", o.rate},
              {"status_share", o.status_share},
              {"elapsed_s", std::round(load.elapsed() * 1000) / 1000}};
  out.update(total.to_json(load.elapsed()));
  if (poller) {
    wait_for_drain(o);
    std::this_thread::sleep_for(std::chrono::seconds(1));  // the last notifications' records
    poller->finish();
    out["sim_received"] = poller->received();
    out["sim_dropped"] = poller->dropped();
    out["sim_unreadable"] = poller->unreadable();
    out["check"] = check(o, load.registrations(), poller->last_badges());
  }
  out["client_cpu_s"] = std::round((cpu_seconds_self() - cpu0) * 100) / 100;
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"soak_load: the soak benchmark's EWS load and loss check (loopback only)"};
  add_options(app, o);
  CLI11_PARSE(app, argc, argv);

  asio::ssl::context tls(asio::ssl::context::tls_client);
  tcp::endpoint target;
  if (!fanout::setup_client("soak_load", o.host, o.port, o.ca, target, tls)) return 2;
  try {
    if (!o.callback_secret.empty()) return post_callback(o, tls, target);
    if (o.idle_tcp > 0 || o.idle_tls > 0) return idle_burst(o, tls, target);
    return run_load(o, tls, target);
  } catch (const std::exception& e) {
    std::cerr << "soak_load: " << e.what() << "\n";
    return 1;
  }
}
