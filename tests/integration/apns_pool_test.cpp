// ApnsConnectionPool against the real apns-sim (tools/apns_sim) on 127.0.0.1 with the test
// certificates of certs/make-apns-test-certs.sh: bursts across GOAWAY and abrupt closes, one
// stream at a time, 429 backoff, the credential breaker (revoked, 403, expired), PING, 410,
// graceful close, and logs that never hold a full device token.
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "apns/connection_pool.hpp"
#include "common/log.hpp"
#include "test_apns_sim.hpp"
#include "test_env.hpp"

namespace mp::test {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using apns::ApnsConnectionPool;
using apns::BadgeNotification;
using apns::SendOutcome;
using apns::SendResult;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// apns-sim with client certificates required (the tests pass --no-client-cert where needed).
using Simulator = ApnsSimProcess;

// Every log line of the process, for the token check; debug level so retries show too.
class LogCapture {
 public:
  LogCapture() {
    log::set_level(log::Level::debug);
    log::set_sink([this](std::string_view line) {
      const std::lock_guard lock(mutex_);
      text_.append(line);
      text_.push_back('\n');
    });
  }
  ~LogCapture() {
    log::set_sink(nullptr);
    log::set_level(log::Level::info);
  }
  std::string text() const {
    const std::lock_guard lock(mutex_);
    return text_;
  }
  std::vector<json> events(const std::string& name) const {
    std::vector<json> out;
    const std::string all = text();
    std::size_t pos = 0;
    while (pos < all.size()) {
      const std::size_t nl = all.find('\n', pos);
      const std::string line = all.substr(pos, nl - pos);
      pos = nl == std::string::npos ? all.size() : nl + 1;
      if (line.find("\"" + name + "\"") == std::string::npos) continue;
      json j = json::parse(line, nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }
  // No token appears beyond its first 8 characters (display_token's "a1b2c3d4…").
  void expect_no_full_token(const std::vector<std::string>& tokens) const {
    const std::string all = text();
    for (const auto& t : tokens) {
      ASSERT_EQ(all.find(t.substr(0, 9)), std::string::npos) << "token prefix of 9 in the logs";
    }
  }

 private:
  mutable std::mutex mutex_;
  std::string text_;
};

std::string token_for(int i) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "c0ffee%02x%056x", i % 256, i);
  return buf;
}

std::vector<BadgeNotification> notifications(int n) {
  std::vector<BadgeNotification> out;
  for (int i = 0; i < n; ++i) {
    BadgeNotification b;
    b.device_token_hex = token_for(i);
    b.topic = "com.example.mail";
    b.badge = i % 100;
    b.collapse_id = "mbx-" + std::to_string(i);
    out.push_back(std::move(b));
  }
  return out;
}

apns::ApnsCredential credential(const std::string& cert_name,
                                const std::string& customer = "dev-test") {
  const fs::path& c = apns_test_certs();
  auto identity = h2::ClientIdentity::from_pem(read_file(c / (cert_name + ".crt")),
                                               read_file(c / (cert_name + ".key")));
  if (!identity) throw std::runtime_error(identity.error().message);
  h2::TlsClientOptions trust;
  trust.ca_file = c / "apple-ca.crt";
  auto cred =
      apns::make_apns_credential(customer, apns::ApnsEnvironment::development, *identity, trust);
  if (!cred) throw std::runtime_error(cred.error().message);
  return std::move(cred).value();
}

apns::PoolOptions options_for(const Simulator& sim) {
  apns::PoolOptions o;
  o.connection.host = "127.0.0.1";
  o.connection.port = sim.h2_port();
  o.connection.connect_timeout = 2s;
  o.connection.request_timeout = 5s;
  o.connection.ping_interval = 0ms;
  o.retry_base = 20ms;
  o.retry_cap = 400ms;
  o.send_deadline = 15s;
  o.breaker.open_interval = 1s;
  o.breaker.reconnect_base = 50ms;
  o.breaker.reconnect_cap = 500ms;
  o.close_grace = 2s;
  o.seed = 12345;
  return o;
}

// Runs the io_context until `done()` or `limit`; fails the test on the limit.
template <class Done>
void run_until(asio::io_context& io, Done done, std::chrono::milliseconds limit) {
  const auto until = Clock::now() + limit;
  io.restart();
  while (!done() && Clock::now() < until) io.run_one_for(50ms);
  ASSERT_TRUE(done()) << "not done within " << limit.count() << " ms";
}

// Starts every send at once (in order) and runs until all have finished.
std::vector<SendResult> send_all(asio::io_context& io,
                                 const std::shared_ptr<ApnsConnectionPool>& pool,
                                 const std::vector<BadgeNotification>& batch,
                                 std::chrono::milliseconds limit, bool on_pool_strand = false) {
  std::vector<std::optional<SendResult>> results(batch.size());
  std::size_t finished = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const asio::any_io_executor where =
        on_pool_strand ? asio::any_io_executor(pool->executor()) : io.get_executor();
    asio::co_spawn(where, pool->send(batch[i]),
                   [&results, &finished, i](std::exception_ptr e, SendResult r) {
                     if (e) std::rethrow_exception(e);
                     results[i] = std::move(r);
                     ++finished;
                   });
  }
  run_until(
      io, [&] { return finished == batch.size(); }, limit);
  std::vector<SendResult> out;
  for (auto& r : results) out.push_back(r ? std::move(*r) : SendResult{});
  return out;
}

SendResult send_one(asio::io_context& io, const std::shared_ptr<ApnsConnectionPool>& pool,
                    const BadgeNotification& n, std::chrono::milliseconds limit = 10s) {
  std::vector<BadgeNotification> one{n};
  return send_all(io, pool, one, limit).at(0);
}

apns::PoolStatus status_of(asio::io_context& io, const std::shared_ptr<ApnsConnectionPool>& pool) {
  std::optional<apns::PoolStatus> s;
  asio::co_spawn(io, pool->status(), [&](std::exception_ptr, apns::PoolStatus v) { s = v; });
  run_until(
      io, [&] { return s.has_value(); }, 5s);
  return s.value_or(apns::PoolStatus{});
}

void close_pool(asio::io_context& io, const std::shared_ptr<ApnsConnectionPool>& pool) {
  bool closed = false;
  asio::co_spawn(io, pool->close(), [&](std::exception_ptr) { closed = true; });
  run_until(
      io, [&] { return closed; }, 10s);
}

// Every token of the batch accepted at least once; duplicates only as many as answers lost.
void expect_every_token_once_or_resent(const Simulator& sim,
                                       const std::vector<BadgeNotification>& batch,
                                       const std::vector<SendResult>& results) {
  std::map<std::string, int> seen;
  for (const auto& t : sim.accepted_tokens()) ++seen[t];
  int lost_answers = 0;
  for (const auto& r : results) lost_answers += r.lost_answer_resends;
  int duplicates = 0;
  for (const auto& n : batch) {
    const auto it = seen.find(n.device_token_hex);
    ASSERT_NE(it, seen.end()) << "never accepted: " << n.device_token_hex.substr(0, 8);
    duplicates += it->second - 1;
  }
  EXPECT_LE(duplicates, lost_answers);
}

TEST(ApnsPool, BurstAcrossGoawayDeliversEveryNotification) {
  Simulator sim({"--goaway-after", "500"});
  LogCapture logs;
  asio::io_context io;
  prometheus::Registry registry;
  apns::ApnsMetrics metrics(registry);
  auto pool =
      ApnsConnectionPool::create(io.get_executor(), credential("mail"), options_for(sim), &metrics);
  const auto batch = notifications(2000);
  const auto results = send_all(io, pool, batch, 30s);
  int delivered = 0, unprocessed = 0;
  for (const auto& r : results) {
    if (r.outcome == SendOutcome::delivered) ++delivered;
    unprocessed += r.unprocessed_resends;
    EXPECT_EQ(r.outcome, SendOutcome::delivered) << r.reason << ": " << r.explanation;
  }
  EXPECT_EQ(delivered, 2000);
  EXPECT_GT(unprocessed, 0) << "GOAWAY should have handed requests back";
  expect_every_token_once_or_resent(sim, batch, results);
  const json stats = sim.stats();
  EXPECT_EQ(stats["accepted"], 2000) << stats.dump();  // nothing was lost after sending
  EXPECT_GE(stats["goaways_sent"].get<int>(), 3) << stats.dump();
  const auto st = status_of(io, pool);
  EXPECT_GE(st.connections_opened, 4u);
  EXPECT_EQ(st.breaker, apns::BreakerState::closed);
  close_pool(io, pool);
  std::vector<std::string> tokens;
  for (const auto& n : batch) tokens.push_back(n.device_token_hex);
  logs.expect_no_full_token(tokens);
  // Metrics: customer and environment labels only, the counts right, gauges back to 0.
  std::map<std::string, double> values;
  for (const auto& family : registry.Collect()) {
    for (const auto& m : family.metric) {
      if (family.name == "mailpush_apns_retries_total" ||
          family.name == "mailpush_apns_failed_total" ||
          family.name == "mailpush_apns_connection_failures_total") {
        continue;  // these carry a third label
      }
      ASSERT_EQ(m.label.size(), 2u) << family.name;
      EXPECT_EQ(m.label[0].name, "customer");
      EXPECT_EQ(m.label[0].value, "dev-test");
      values[family.name] = m.counter.value + m.gauge.value;
    }
  }
  EXPECT_EQ(values["mailpush_apns_sent_total"], 2000);
  EXPECT_EQ(values["mailpush_apns_in_flight"], 0);
  EXPECT_EQ(values["mailpush_apns_connections_open"], 0);
  EXPECT_EQ(values["mailpush_apns_breaker_state"], 0);
  EXPECT_EQ(values["mailpush_apns_connection_attempts_total"],
            static_cast<double>(st.connection_attempts));
}

TEST(ApnsPool, OneStreamAtATimeDeliversInOrderOfSubmission) {
  Simulator sim({"--max-concurrent-streams", "1"});
  asio::io_context io;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options_for(sim));
  const auto batch = notifications(300);
  const auto results = send_all(io, pool, batch, 20s);
  for (const auto& r : results) ASSERT_EQ(r.outcome, SendOutcome::delivered) << r.explanation;
  const auto accepted = sim.accepted_tokens();
  ASSERT_EQ(accepted.size(), batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    ASSERT_EQ(accepted[i], batch[i].device_token_hex) << "out of order at " << i;
  }
  close_pool(io, pool);
}

TEST(ApnsPool, SendsFromThePoolsStrandKeepTheirOrderToo) {
  Simulator sim({"--max-concurrent-streams", "1"});
  asio::io_context io;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options_for(sim));
  const auto batch = notifications(100);
  const auto results = send_all(io, pool, batch, 20s, /*on_pool_strand=*/true);
  for (const auto& r : results) ASSERT_EQ(r.outcome, SendOutcome::delivered) << r.explanation;
  const auto accepted = sim.accepted_tokens();
  ASSERT_EQ(accepted.size(), batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    ASSERT_EQ(accepted[i], batch[i].device_token_hex) << "out of order at " << i;
  }
  close_pool(io, pool);
}

TEST(ApnsPool, TooManyRequestsBackOffWithGrowingDelaysAndLoseNothing) {
  Simulator sim({"--seed", "7", "--faults", R"({"error_rates":{"429":0.3}})"});
  LogCapture logs;
  asio::io_context io;
  auto options = options_for(sim);
  options.max_attempts = 12;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options);
  const auto batch = notifications(200);
  const auto results = send_all(io, pool, batch, 30s);
  int backoffs = 0;
  for (const auto& r : results) {
    ASSERT_EQ(r.outcome, SendOutcome::delivered) << r.explanation;
    backoffs += r.backoff_attempts;
  }
  EXPECT_GT(backoffs, 30);
  expect_every_token_once_or_resent(sim, batch, results);
  EXPECT_EQ(sim.stats()["accepted"], 200);
  // The waits chosen grow with the attempt: full jitter over base * 2^(attempt-1).
  std::map<int, std::vector<long long>> delays;
  for (const auto& e : logs.events("apns.retry")) {
    delays[e["attempt"].get<int>()].push_back(e["delay_ms"].get<long long>());
  }
  ASSERT_GE(delays[1].size(), 20u);
  ASSERT_GE(delays[2].size(), 5u);
  auto mean = [](const std::vector<long long>& v) {
    long long s = 0;
    for (auto x : v) s += x;
    return static_cast<double>(s) / static_cast<double>(v.size());
  };
  std::vector<long long> later;
  for (const auto& [attempt, v] : delays) {
    const long long upper = std::min<long long>(20LL << (attempt - 1), 400);
    for (auto d : v) EXPECT_LE(d, upper) << "attempt " << attempt;
    if (attempt >= 2) later.insert(later.end(), v.begin(), v.end());
  }
  EXPECT_LT(mean(delays[1]), mean(later));
  close_pool(io, pool);
}

TEST(ApnsPool, TimeBetweenAttemptsIsTheBackoff) {
  // Four refusals in a row for one notification: it waits between each, then gets through.
  Simulator sim({"--faults", R"({"next_statuses":[429,503,500,429]})"});
  asio::io_context io;
  auto options = options_for(sim);
  options.retry_base = 40ms;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options);
  const auto start = Clock::now();
  const SendResult r = send_one(io, pool, notifications(1)[0]);
  const auto elapsed = Clock::now() - start;
  ASSERT_EQ(r.outcome, SendOutcome::delivered) << r.explanation;
  EXPECT_EQ(r.requests, 5);
  EXPECT_EQ(r.backoff_attempts, 4);
  EXPECT_LE(r.backoff_total.count(), 40 + 80 + 160 + 320);
  EXPECT_GE(elapsed, r.backoff_total);
  // Exhaustion is reported, not hidden.
  sim.control("POST", "/faults", R"({"next_statuses":[503,503,503]})");
  options.max_attempts = 3;
  auto strict = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options);
  const SendResult gave_up = send_one(io, strict, notifications(2)[1]);
  EXPECT_EQ(gave_up.outcome, SendOutcome::retry_exhausted);
  EXPECT_EQ(gave_up.reason, "ServiceUnavailable");
  EXPECT_EQ(gave_up.requests, 3);
  close_pool(io, pool);
  close_pool(io, strict);
}

TEST(ApnsPool, AbruptCloseReconnectsAndResendsWhatWasUnanswered) {
  Simulator sim({"--close-after", "150"});
  LogCapture logs;
  asio::io_context io;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options_for(sim));
  const auto batch = notifications(1000);
  const auto results = send_all(io, pool, batch, 30s);
  int resent = 0;
  for (const auto& r : results) {
    ASSERT_EQ(r.outcome, SendOutcome::delivered) << r.reason << ": " << r.explanation;
    resent += r.lost_answer_resends + r.unprocessed_resends;
  }
  EXPECT_GT(resent, 0);
  expect_every_token_once_or_resent(sim, batch, results);
  const json stats = sim.stats();
  const auto closes = stats["abrupt_closes"].get<std::uint64_t>();
  EXPECT_GE(closes, 3u) << stats.dump();
  EXPECT_GE(status_of(io, pool).connections_opened, closes);
  close_pool(io, pool);
  std::vector<std::string> tokens;
  for (const auto& n : batch) tokens.push_back(n.device_token_hex);
  logs.expect_no_full_token(tokens);
}

// Sends one notification every 20 ms for `duration`; returns the results.
std::vector<SendResult> trickle(asio::io_context& io,
                                const std::shared_ptr<ApnsConnectionPool>& pool,
                                const std::vector<BadgeNotification>& batch,
                                std::chrono::milliseconds duration) {
  std::vector<SendResult> out;
  const auto until = Clock::now() + duration;
  for (std::size_t i = 0; Clock::now() < until; ++i) {
    const auto next = Clock::now() + 20ms;
    out.push_back(send_one(io, pool, batch[i % batch.size()]));
    io.restart();
    while (Clock::now() < next) io.run_one_until(next);
  }
  return out;
}

TEST(ApnsPool, RevokedCertificateOpensTheBreakerOneAttemptPerInterval) {
  const auto cred = credential("mail");
  const json revoked = {{"revoked", {cred.fingerprint}}};
  Simulator sim({"--faults", revoked.dump()});
  LogCapture logs;
  asio::io_context io;
  prometheus::Registry registry;
  apns::ApnsMetrics metrics(registry);
  auto pool = ApnsConnectionPool::create(io.get_executor(), cred, options_for(sim), &metrics);
  const auto batch = notifications(50);
  const auto start = Clock::now();
  const auto results = trickle(io, pool, batch, 3500ms);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  int fast = 0;
  for (const auto& r : results) {
    ASSERT_EQ(r.outcome, SendOutcome::credential_failed) << r.explanation;
    if (r.requests == 0) ++fast;
  }
  EXPECT_GT(fast, static_cast<int>(results.size()) - 6);
  const json stats = sim.stats();
  const int handshakes = stats["handshakes_failed"].get<int>();
  EXPECT_GE(handshakes, 2) << stats.dump();
  EXPECT_LE(handshakes, static_cast<int>(seconds / 1.0) + 1) << stats.dump();
  const auto st = status_of(io, pool);
  EXPECT_NE(st.breaker, apns::BreakerState::closed);
  EXPECT_EQ(st.breaker_reason, "TlsHandshakeRefused");
  EXPECT_EQ(st.connection_attempts, static_cast<std::uint64_t>(handshakes));
  EXPECT_EQ(logs.events("apns.breaker_opened").size(), 1u);
  EXPECT_EQ(logs.events("apns.breaker_probe_failed").size(),
            static_cast<std::size_t>(handshakes - 1));
  // The certificate is accepted again: the next probe (after the interval) closes the breaker.
  sim.control("POST", "/faults", R"({"revoked":[]})");
  std::this_thread::sleep_for(1100ms);
  const SendResult probe = send_one(io, pool, batch[0]);
  EXPECT_EQ(probe.outcome, SendOutcome::delivered) << probe.explanation;
  EXPECT_EQ(status_of(io, pool).breaker, apns::BreakerState::closed);
  EXPECT_EQ(send_one(io, pool, batch[1]).outcome, SendOutcome::delivered);
  close_pool(io, pool);
}

TEST(ApnsPool, BadCertificate403OpensTheBreakerWithoutReconnecting) {
  const auto cred = credential("mail");
  const json bad = {{"bad_certificate", {cred.fingerprint}}};
  Simulator sim({"--faults", bad.dump()});
  asio::io_context io;
  auto pool = ApnsConnectionPool::create(io.get_executor(), cred, options_for(sim));
  const auto batch = notifications(20);
  const SendResult first = send_one(io, pool, batch[0]);
  EXPECT_EQ(first.outcome, SendOutcome::credential_failed);
  EXPECT_EQ(first.reason, "BadCertificate");
  EXPECT_EQ(first.http_status, 403);
  const auto results = trickle(io, pool, batch, 2500ms);
  int on_wire = 0;
  for (const auto& r : results) {
    EXPECT_EQ(r.outcome, SendOutcome::credential_failed);
    EXPECT_EQ(r.reason, "BadCertificate");
    on_wire += r.requests;
  }
  EXPECT_LE(on_wire, 3);  // one probe per second
  EXPECT_EQ(sim.stats()["connections_total"], 1);
  close_pool(io, pool);
}

TEST(ApnsPool, ExpiredCertificateIsNotEvenTried) {
  Simulator sim;
  asio::io_context io;
  auto pool =
      ApnsConnectionPool::create(io.get_executor(), credential("mail-expired"), options_for(sim));
  const SendResult r = send_one(io, pool, notifications(1)[0]);
  EXPECT_EQ(r.outcome, SendOutcome::credential_failed);
  EXPECT_EQ(r.reason, "CertificateExpired");
  EXPECT_EQ(status_of(io, pool).connection_attempts, 0u);
  EXPECT_EQ(sim.stats()["handshakes_failed"], 0);
  close_pool(io, pool);
}

TEST(ApnsPool, ExpiredCertificateRefusedAtTheHandshakeOneAttemptPerInterval) {
  // The same certificate with a clock that thinks it is still valid: APNs refuses it.
  Simulator sim;
  LogCapture logs;
  asio::io_context io;
  auto cred = credential("mail-expired");
  cred.not_after.reset();
  auto pool = ApnsConnectionPool::create(io.get_executor(), cred, options_for(sim));
  const auto start = Clock::now();
  const auto results = trickle(io, pool, notifications(10), 2500ms);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  for (const auto& r : results) EXPECT_EQ(r.outcome, SendOutcome::credential_failed);
  const json stats = sim.stats();
  EXPECT_GE(stats["handshakes_failed"].get<int>(), 1);
  EXPECT_LE(stats["handshakes_failed"].get<int>(), static_cast<int>(seconds) + 1) << stats.dump();
  EXPECT_TRUE(stats["handshake_failures"].contains("certificate has expired")) << stats.dump();
  close_pool(io, pool);
}

TEST(ApnsPool, SilentServerIsDetectedByPing) {
  Simulator sim;
  LogCapture logs;
  asio::io_context io;
  auto options = options_for(sim);
  options.connection.ping_interval = 200ms;
  options.connection.ping_timeout = 300ms;
  options.connection.request_timeout = 20s;  // so only PING can notice
  options.connection.connect_timeout = 500ms;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options);
  const auto batch = notifications(2);
  ASSERT_EQ(send_one(io, pool, batch[0]).outcome, SendOutcome::delivered);
  sim.control("POST", "/faults", R"({"silent":true})");

  std::optional<SendResult> second;
  asio::co_spawn(io, pool->send(batch[1]),
                 [&](std::exception_ptr, SendResult r) { second = std::move(r); });
  const auto start = Clock::now();
  // The connection goes quiet; PING notices within interval + timeout.
  run_until(
      io, [&] { return logs.text().find("PING not answered") != std::string::npos; }, 3s);
  const auto detected = Clock::now() - start;
  EXPECT_LT(detected, 1500ms);
  sim.control("POST", "/faults", R"({"silent":false})");
  run_until(
      io, [&] { return second.has_value(); }, 8s);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->outcome, SendOutcome::delivered) << second->explanation;
  EXPECT_GE(second->lost_answer_resends, 1);
  EXPECT_LT(Clock::now() - start, 8s);
  close_pool(io, pool);
}

TEST(ApnsPool, UnregisteredGivesApplesTimestamp) {
  const auto batch = notifications(2);
  const json faults = {
      {"unregistered", {{{"token", batch[0].device_token_hex}, {"timestamp", 1700000000123LL}}}}};
  Simulator sim({"--faults", faults.dump()});
  LogCapture logs;
  asio::io_context io;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options_for(sim));
  const SendResult r = send_one(io, pool, batch[0]);
  EXPECT_EQ(r.outcome, SendOutcome::unregistered);
  EXPECT_EQ(r.http_status, 410);
  ASSERT_TRUE(r.unregistered_at);
  EXPECT_EQ(
      std::chrono::duration_cast<std::chrono::milliseconds>(r.unregistered_at->time_since_epoch())
          .count(),
      1700000000123LL);
  EXPECT_EQ(send_one(io, pool, batch[1]).outcome, SendOutcome::delivered);
  // A token that is not hex never reaches the wire; the log shows a prefix only.
  BadgeNotification bad = batch[1];
  bad.device_token_hex = "zz" + batch[1].device_token_hex.substr(2);
  EXPECT_EQ(send_one(io, pool, bad).outcome, SendOutcome::permanent_payload);
  close_pool(io, pool);
  logs.expect_no_full_token(
      {batch[0].device_token_hex, batch[1].device_token_hex, bad.device_token_hex});
  EXPECT_FALSE(logs.events("apns.send_failed").empty());
}

TEST(ApnsPool, CloseFinishesWhatIsOnTheWire) {
  Simulator sim({"--latency-ms", "300"});
  asio::io_context io;
  auto pool = ApnsConnectionPool::create(io.get_executor(), credential("mail"), options_for(sim));
  const auto batch = notifications(50);
  std::vector<std::optional<SendResult>> results(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    asio::co_spawn(io, pool->send(batch[i]),
                   [&results, i](std::exception_ptr, SendResult r) { results[i] = std::move(r); });
  }
  // Let them reach the wire, then close. The bound is generous: on a busy CI machine the
  // connection and its TLS handshake alone once took longer than 5 s, and closing earlier would
  // test something else (sends that never left).
  // The simulator's stats are an HTTP call that blocks this thread: asked at most every 100 ms,
  // or the handshake's handlers, one per run_one_for, wait for them and the connection times out.
  int streams = 0;
  auto next_look = Clock::now();
  run_until(
      io,
      [&] {
        if (Clock::now() >= next_look) {
          streams = sim.stats()["streams"].get<int>();
          next_look = Clock::now() + 100ms;
        }
        return streams >= 50;
      },
      30s);
  if (HasFatalFailure()) return;
  close_pool(io, pool);
  for (const auto& r : results) {
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outcome, SendOutcome::delivered) << r->explanation;
  }
  EXPECT_EQ(send_one(io, pool, batch[0]).reason, "PoolClosed");
  EXPECT_EQ(sim.stats()["connections_open"], 0);
}

}  // namespace
}  // namespace mp::test
