// fanout_load: EWS callbacks for the fan-out benchmark (bench/fanout_bench.sh), over HTTPS
// keep-alive connections to mailpushd's listener, for the registrations fanout_bench.sh loaded
// (the layout is in fanout_common.hpp).
//
//   fanout_load --port P --ca ca.crt --mailboxes N --rate 5000 --duration 20 --events ev.tsv
//   fanout_load --port P --ca ca.crt --mode status --mailboxes M        (warm-up, each once)
//
// Modes:
//   events  each request is one SendNotification to a random mailbox (uniform over 1…N, drawn
//           from --seed), posted on the subscription of one of its devices (also drawn), holding
//           an item ModifiedEvent and the inbox's folder ModifiedEvent whose UnreadCount is the
//           event's badge, --badge-base + k for the k-th event: unique per event, so that the
//           badge apns-sim records names the event it came from. A mailbox has at most one
//           callback in flight (Exchange posts a subscription's notifications one after the
//           other): a mailbox still in flight is skipped and another drawn, so that commit order
//           per mailbox is send order. A mailbox whose callback ended without an answer (timeout,
//           connection lost: it may still be written) is not used again in the run.
//   status  one StatusEvent per registration of mailboxes 1…N, in order, each once: the
//           heartbeat that fills mailpushd's registration cache (warm-up); no badge changes.
//
// Pacing: --rate R > 0 is open loop: event k is due at start + k/R whatever happened before, the
// next free connection takes the next due event, and every time is taken from when it was due,
// so a slow server cannot hide its queue. --rate 0 sends as fast as the connections allow.
// Loopback only; every run is bounded (--duration, --max-events; the status mode by its count)
// and every network operation has --timeout.
//
// Output: --events FILE (events mode) gets one line per event, in event order:
//   k  mailbox  slot  badge  due_us  sent_us  done_us  http_status  result
// with times in µs since the Unix epoch (system clock, as apns-sim's received_ms), http_status 0
// for no answer, result ok | unsubscribe | other | http | error | skipped. stdout gets one JSON
// line of counts, rates, answer latencies and the tool's own CPU time.
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
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fanout_common.hpp"
#include "fanout_requests.hpp"
#include "load_client.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using Stream = beast::ssl_stream<beast::tcp_stream>;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

constexpr std::int64_t kMaxBadge = 1000000;  // mailpushd caps unread counts here
constexpr unsigned kDraws = 64;              // mailboxes tried per event before giving up

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string ca;
  std::string server_name = "localhost";
  std::string mode = "events";
  std::uint64_t mailboxes = 0;
  unsigned connections = 64;
  double rate = 0;
  double duration = 0;
  std::uint64_t max_events = 1000000;
  std::uint64_t seed = 1;
  std::int64_t badge_base = 1;
  std::string events_path;
  unsigned threads = 1;
  double timeout = 10;
  std::string label;
};

// ---- what is sent and what came back --------------------------------------------------------

enum class Result : std::uint8_t { none, ok, unsubscribe, other, http, error, skipped };
const char* result_name(Result r) {
  switch (r) {
    case Result::none:
      return "none";
    case Result::ok:
      return "ok";
    case Result::unsubscribe:
      return "unsubscribe";
    case Result::other:
      return "other";
    case Result::http:
      return "http";
    case Result::error:
      return "error";
    case Result::skipped:
      return "skipped";
  }
  return "none";
}

struct EventRecord {
  std::uint32_t mailbox = 0;
  std::uint8_t slot = 0;
  Result result = Result::none;
  std::uint16_t status = 0;
  std::int64_t due_us = 0;
  std::int64_t sent_us = 0;
  std::int64_t done_us = 0;
};

struct Ticket {
  std::uint64_t k;
  Clock::time_point due;
};

class Plan {
 public:
  Plan(const Options& o, Clock::time_point start, std::uint64_t count)
      : start_(start),
        deadline_(o.duration > 0 ? start + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(o.duration))
                                 : Clock::time_point::max()),
        count_(count),
        rate_(o.rate) {}

  std::optional<Ticket> take() {
    const std::uint64_t k = next_.fetch_add(1, std::memory_order_relaxed);
    if (k >= count_) return std::nullopt;
    const auto due =
        rate_ > 0 ? start_ + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(static_cast<double>(k) / rate_))
                  : Clock::now();
    if (due >= deadline_) return std::nullopt;
    return Ticket{k, due};
  }
  bool paced() const { return rate_ > 0; }
  Clock::time_point start() const { return start_; }

 private:
  std::atomic<std::uint64_t> next_{0};
  Clock::time_point start_;
  Clock::time_point deadline_;
  std::uint64_t count_;
  double rate_;
};

// The state shared by all connections: the plan, the per-mailbox in-flight flags, the records.
struct Shared {
  const Options& o;
  Plan& plan;
  std::vector<std::atomic<std::uint8_t>> flags;  // 0 free, 1 in flight, 2 never again
  std::vector<EventRecord> records;              // events mode, by k
  std::vector<std::uint64_t> status_targets;     // status mode: registration ids, by k
  std::int64_t sys0_us;                          // system clock at steady0
  Clock::time_point steady0;
  std::int64_t to_sys_us(Clock::time_point t) const {
    return sys0_us + std::chrono::duration_cast<std::chrono::microseconds>(t - steady0).count();
  }
};

struct Stats {
  std::uint64_t answered = 0, ok = 0, unsubscribe = 0, errors = 0, skipped = 0, redraws = 0;
  std::uint64_t handshakes = 0;
  std::map<unsigned, std::uint64_t> non_2xx;
  std::map<std::string, std::uint64_t> error_kinds;
  std::vector<std::uint32_t> latency_us;  // answer latency from the due time
  std::int64_t max_lag_us = 0;            // how late a request was written after its due time
};

class Worker {
 public:
  Worker(Shared& shared, asio::ssl::context& tls, tcp::endpoint target)
      : s_(shared),
        tls_(tls),
        target_(target),
        timeout_(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(shared.o.timeout))) {}

  void spawn(unsigned connections) {
    for (unsigned i = 0; i < connections; ++i) asio::co_spawn(ioc, loop(), asio::detached);
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

  // Draws the event's mailbox (one not in flight) and device; false when none was free.
  bool draw(std::uint64_t k, std::uint32_t& mailbox, unsigned& slot) {
    const std::uint64_t n = s_.o.mailboxes;
    for (unsigned a = 0; a < kDraws; ++a) {
      const std::uint64_t x =
          fanout::mix(s_.o.seed * 0x100000001b3ull ^ fanout::mix(k * kDraws + a));
      const std::uint64_t i = 1 + x % n;
      std::uint8_t expected = 0;
      if (s_.flags[i].compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
        mailbox = static_cast<std::uint32_t>(i);
        slot = static_cast<unsigned>((x >> 40) % fanout::devices_of(i));
        return true;
      }
      ++stats.redraws;
    }
    return false;
  }

  asio::awaitable<bool> open(Stream& st) {
    auto& layer = beast::get_lowest_layer(st);
    layer.expires_after(timeout_);
    auto [cec] = co_await layer.async_connect(target_, nothrow);
    if (cec) {
      error("connect", cec);
      co_return false;
    }
    layer.socket().set_option(tcp::no_delay(true));
    SSL_set_tlsext_host_name(st.native_handle(), s_.o.server_name.c_str());
    SSL_set1_host(st.native_handle(), s_.o.server_name.c_str());
    auto [hec] = co_await st.async_handshake(asio::ssl::stream_base::client, nothrow);
    if (hec) {
      error("handshake", hec);
      co_return false;
    }
    ++stats.handshakes;
    co_return true;
  }

  asio::awaitable<void> loop() {
    asio::steady_timer timer(ioc);
    std::unique_ptr<Stream> stream;
    beast::flat_buffer buffer;
    const bool events = s_.o.mode == "events";
    while (auto t = s_.plan.take()) {
      std::uint32_t mailbox = 0;
      unsigned slot = 0;
      std::uint64_t registration = 0;
      EventRecord* rec = nullptr;
      if (events) {
        rec = &s_.records[t->k];
        rec->due_us = s_.to_sys_us(t->due);
        if (!draw(t->k, mailbox, slot)) {
          rec->result = Result::skipped;
          ++stats.skipped;
          continue;
        }
        rec->mailbox = mailbox;
        rec->slot = static_cast<std::uint8_t>(slot);
        registration = fanout::registration_id(mailbox, slot);
      } else {
        registration = s_.status_targets[t->k];
      }
      if (s_.plan.paced() && t->due > Clock::now()) {
        timer.expires_at(t->due);
        co_await timer.async_wait(nothrow);
      }
      const std::string request =
          events
              ? fanout::make_request(
                    fanout::secret(registration),
                    fanout::envelope(fanout::subscription(registration), t->k,
                                     fanout::unread_events(
                                         t->k, s_.o.badge_base + static_cast<std::int64_t>(t->k))))
              : fanout::make_request(fanout::secret(registration),
                                     fanout::envelope(fanout::subscription(registration), t->k,
                                                      fanout::status_events(t->k)));
      Result result = Result::error;
      unsigned status = 0;
      if (!stream) {
        stream = std::make_unique<Stream>(ioc, tls_);
        buffer.clear();
        if (!co_await open(*stream)) stream.reset();
      }
      const auto sent = Clock::now();
      bool keep = false;
      if (stream) {
        auto& layer = beast::get_lowest_layer(*stream);
        layer.expires_after(timeout_);
        auto [wec, wn] = co_await asio::async_write(*stream, asio::buffer(request), nothrow);
        if (wec) {
          error("write", wec);
        } else {
          bhttp::response_parser<bhttp::string_body> parser;
          parser.body_limit(1 << 20);
          auto [rec_ec, rn] = co_await bhttp::async_read(*stream, buffer, parser, nothrow);
          if (rec_ec) {
            error("read", rec_ec);
          } else {
            const auto& res = parser.get();
            status = res.result_int();
            ++stats.answered;
            if (status >= 200 && status < 300) {
              if (res.body().find("SubscriptionStatus>OK<") != std::string::npos) {
                result = Result::ok;
                ++stats.ok;
              } else if (res.body().find("SubscriptionStatus>Unsubscribe<") != std::string::npos) {
                result = Result::unsubscribe;
                ++stats.unsubscribe;
              } else {
                result = Result::other;
              }
            } else {
              result = Result::http;
              ++stats.non_2xx[status];
            }
            keep = res.keep_alive();
          }
        }
      }
      const auto done = Clock::now();
      const auto from = s_.plan.paced() ? t->due : sent;
      const auto us = std::chrono::duration_cast<std::chrono::microseconds>(done - from).count();
      stats.latency_us.push_back(
          static_cast<std::uint32_t>(std::clamp<std::int64_t>(us, 0, UINT32_MAX)));
      if (s_.plan.paced()) {
        stats.max_lag_us = std::max<std::int64_t>(
            stats.max_lag_us,
            std::chrono::duration_cast<std::chrono::microseconds>(sent - t->due).count());
      }
      if (rec) {
        rec->sent_us = s_.to_sys_us(sent);
        rec->done_us = s_.to_sys_us(done);
        rec->status = static_cast<std::uint16_t>(status);
        rec->result = result;
        // No answer: the callback may still be written later; its mailbox is not used again,
        // so that the newest badge of every mailbox stays well defined.
        s_.flags[mailbox].store(result == Result::error ? 2 : 0, std::memory_order_release);
      }
      if (!keep && stream) {
        beast::error_code ignored;
        beast::get_lowest_layer(*stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
        beast::get_lowest_layer(*stream).close();
        stream.reset();
      }
    }
    if (stream) {
      beast::error_code ignored;
      beast::get_lowest_layer(*stream).socket().shutdown(tcp::socket::shutdown_both, ignored);
      beast::get_lowest_layer(*stream).close();
    }
  }

  Shared& s_;
  asio::ssl::context& tls_;
  tcp::endpoint target_;
  Clock::duration timeout_;
};

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

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"fanout_load: EWS callbacks for the fan-out benchmark (loopback only)"};
  app.add_option("--host", o.host, "server address; must be loopback")->capture_default_str();
  app.add_option("--port", o.port, "listener port")->required();
  app.add_option("--ca", o.ca, "CA file that signed the listener's certificate")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--server-name", o.server_name, "TLS SNI and verified host name")
      ->capture_default_str();
  app.add_option("--mode", o.mode, "events (badges to random mailboxes) or status (warm-up)")
      ->check(CLI::IsMember({"events", "status"}))
      ->capture_default_str();
  app.add_option("--mailboxes", o.mailboxes, "mailboxes 1…N of the seed")
      ->required()
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100000000}));
  app.add_option("--connections", o.connections, "keep-alive connections")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  app.add_option("--rate", o.rate, "events per second, open loop; 0 = as fast as possible")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  app.add_option("--duration", o.duration, "seconds to send for (events mode)")
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--max-events", o.max_events, "events at most")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{1000000}))
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the mailbox draws")->capture_default_str();
  app.add_option("--badge-base", o.badge_base, "badge of event 0; event k gets base + k")
      ->check(CLI::Range(std::int64_t{0}, kMaxBadge))
      ->capture_default_str();
  app.add_option("--events", o.events_path, "per-event output file (events mode)");
  app.add_option("--threads", o.threads, "client threads")
      ->check(CLI::Range(1u, 16u))
      ->capture_default_str();
  app.add_option("--timeout", o.timeout, "seconds for each connect, handshake, request")
      ->check(CLI::Range(0.1, 120.0))
      ->capture_default_str();
  app.add_option("--label", o.label, "name of this run, echoed in the output");
  CLI11_PARSE(app, argc, argv);

  asio::ssl::context tls(asio::ssl::context::tls_client);
  tcp::endpoint target;
  if (!fanout::setup_client("fanout_load", o.host, o.port, o.ca, target, tls)) return 2;
  const bool events = o.mode == "events";
  if (events && o.duration <= 0) {
    std::cerr << "fanout_load: the events mode needs --duration\n";
    return 2;
  }
  std::uint64_t count = 0;
  if (events) {
    count = o.max_events;
    if (o.rate > 0)
      count = std::min<std::uint64_t>(count,
                                      static_cast<std::uint64_t>(std::ceil(o.rate * o.duration)));
    if (o.badge_base + static_cast<std::int64_t>(count) - 1 > kMaxBadge) {
      std::cerr << "fanout_load: badges would pass " << kMaxBadge
                << " (mailpushd's cap): lower --badge-base or the event count\n";
      return 2;
    }
  }
  std::vector<std::uint64_t> status_targets;
  if (!events) {
    for (std::uint64_t i = 1; i <= o.mailboxes; ++i) {
      for (unsigned s = 0; s < fanout::devices_of(i); ++s)
        status_targets.push_back(fanout::registration_id(i, s));
    }
    count = status_targets.size();
  }

  const double cpu_before = cpu_seconds_self();
  const auto steady0 = Clock::now();
  const auto sys0 = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  const auto start = steady0 + std::chrono::milliseconds(20);
  Plan plan(o, start, count);
  Shared shared{o,
                plan,
                std::vector<std::atomic<std::uint8_t>>(events ? o.mailboxes + 1 : 0),
                {},
                std::move(status_targets),
                sys0,
                steady0};
  if (events) shared.records.resize(count);

  const unsigned threads = std::min(o.threads, o.connections);
  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned t = 0; t < threads; ++t) {
    workers.push_back(std::make_unique<Worker>(shared, tls, target));
    workers.back()->stats.latency_us.reserve(count / threads + 1024);
    workers.back()->spawn(o.connections / threads + (t < o.connections % threads ? 1 : 0));
  }
  std::vector<std::thread> pool;
  for (auto& w : workers) pool.emplace_back([&w] { w->ioc.run(); });
  for (auto& th : pool) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = cpu_seconds_self() - cpu_before;

  Stats total;
  for (auto& w : workers) {
    const Stats& s = w->stats;
    total.answered += s.answered;
    total.ok += s.ok;
    total.unsubscribe += s.unsubscribe;
    total.errors += s.errors;
    total.skipped += s.skipped;
    total.redraws += s.redraws;
    total.handshakes += s.handshakes;
    total.max_lag_us = std::max(total.max_lag_us, s.max_lag_us);
    for (const auto& [k, v] : s.non_2xx) total.non_2xx[k] += v;
    for (const auto& [k, v] : s.error_kinds) total.error_kinds[k] += v;
    total.latency_us.insert(total.latency_us.end(), s.latency_us.begin(), s.latency_us.end());
  }
  std::sort(total.latency_us.begin(), total.latency_us.end());

  std::uint64_t sent = 0;
  if (events && !o.events_path.empty()) {
    std::ofstream out(o.events_path, std::ios::trunc);
    if (!out) {
      std::cerr << "fanout_load: cannot write " << o.events_path << "\n";
      return 1;
    }
    out << "# k\tmailbox\tslot\tbadge\tdue_us\tsent_us\tdone_us\thttp_status\tresult\n";
    for (std::size_t k = 0; k < shared.records.size(); ++k) {
      const auto& r = shared.records[k];
      if (r.result == Result::none) continue;  // past the deadline: never sent
      ++sent;
      out << k << '\t' << r.mailbox << '\t' << unsigned(r.slot) << '\t'
          << o.badge_base + static_cast<std::int64_t>(k) << '\t' << r.due_us << '\t' << r.sent_us
          << '\t' << r.done_us << '\t' << r.status << '\t' << result_name(r.result) << '\n';
    }
    out.close();
    if (!out) {
      std::cerr << "fanout_load: writing " << o.events_path << " failed\n";
      return 1;
    }
  }

  std::string j = "{\"tool\":\"fanout_load\",\"label\":" + json_string(o.label);
  j += ",\"mode\":" + json_string(o.mode);
  j += ",\"mailboxes\":" + std::to_string(o.mailboxes);
  j += ",\"connections\":" + std::to_string(o.connections);
  j += ",\"rate_target\":" + number(o.rate, 1);
  j += ",\"requests\":" + std::to_string(total.answered + total.errors);
  j += ",\"answered\":" + std::to_string(total.answered);
  j += ",\"soap_ok\":" + std::to_string(total.ok);
  j += ",\"unsubscribe\":" + std::to_string(total.unsubscribe);
  j += ",\"non_2xx\":{";
  bool first = true;
  for (const auto& [k, v] : total.non_2xx) {
    j += (first ? "\"" : ",\"") + std::to_string(k) + "\":" + std::to_string(v);
    first = false;
  }
  j += "},\"errors\":" + std::to_string(total.errors) + ",\"error_kinds\":{";
  first = true;
  for (const auto& [k, v] : total.error_kinds) {
    j += (first ? "" : ",") + json_string(k) + ":" + std::to_string(v);
    first = false;
  }
  j += "},\"skipped\":" + std::to_string(total.skipped);
  j += ",\"redraws\":" + std::to_string(total.redraws);
  j += ",\"handshakes\":" + std::to_string(total.handshakes);
  j += ",\"elapsed_s\":" + number(elapsed);
  j += ",\"rate\":" + number(elapsed > 0 ? static_cast<double>(total.answered) / elapsed : 0, 1);
  j += ",\"ok_rate\":" + number(elapsed > 0 ? static_cast<double>(total.ok) / elapsed : 0, 1);
  j += ",\"max_lag_ms\":" + number(static_cast<double>(total.max_lag_us) / 1000.0);
  j += ",\"answer_ms\":{\"p50\":" + number(percentile_ms(total.latency_us, 50)) +
       ",\"p99\":" + number(percentile_ms(total.latency_us, 99)) +
       ",\"max\":" + number(total.latency_us.empty() ? 0 : total.latency_us.back() / 1000.0) + "}";
  j += ",\"events_written\":" + std::to_string(sent);
  j += ",\"client_cpu_s\":" + number(cpu) + "}";
  std::cout << j << std::endl;
  return 0;
}
