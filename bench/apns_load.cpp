// apns_load: drives ApnsConnectionPool against apns-sim for the APNs client benchmark
// (bench/apns_bench.sh). Loopback only, bounded in count and time.
//
//   apns_load throughput --port P --ca apple-ca.crt --cert mail.crt --key mail.key
//             [--requests 200000] [--connections 2] [--concurrency 200] [--timeout 120]
//     One pool, --connections connections at most, --concurrency sends in flight (workers that
//     each send the next notification as soon as theirs finished: closed loop). Each
//     notification goes to its own device token. Prints one JSON line: delivered, failed by
//     outcome, elapsed_s, rate, latency p50/p90/p99/max (ms, from the call of send() to its
//     result), client_cpu_s (getrusage of this process), cpu_s_per_100k.
//
//   apns_load idle --port P --ca apple-ca.crt --ca-key apple-ca.key [--customers 1000]
//             [--parallel 50] [--timeout 120]
//     --customers distinct push certificates (EC P-256, subject UID=com.example.mail..., signed
//     in memory by the test CA key; nothing written to disk), one pool and one connection each
//     (--parallel handshakes at a time). Prints one JSON line: customers, connected, open_s,
//     rss_before_kib (credentials made, nothing connected), rss_after_kib, kib_per_connection.
#include <malloc.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apns/connection_pool.hpp"
#include "common/log.hpp"
#include "common/openssl_handles.hpp"

namespace {

namespace asio = boost::asio;
using namespace mp;
using apns::ApnsConnectionPool;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double cpu_seconds_self() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Bytes malloc has handed out and not got back (all arenas).
long heap_in_use_kib() {
  const struct mallinfo2 m = mallinfo2();
  return static_cast<long>((m.uordblks + m.hblkhd) / 1024);
}

long rss_kib() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

void raise_open_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

std::string token_for(std::uint64_t i) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "%08llx%056llx", static_cast<unsigned long long>(i * 2654435761u),
                static_cast<unsigned long long>(i));
  return buf;
}

apns::PoolOptions pool_options(std::uint16_t port, std::size_t connections, int timeout_s) {
  apns::PoolOptions o;
  o.connection.host = "127.0.0.1";
  o.connection.port = port;
  o.connection.connect_timeout = std::chrono::seconds(10);
  o.connection.request_timeout = std::chrono::seconds(timeout_s);
  o.max_connections = connections;
  o.send_deadline = std::chrono::seconds(timeout_s);
  o.retry_base = std::chrono::milliseconds(10);
  o.retry_cap = std::chrono::milliseconds(1000);
  o.close_grace = std::chrono::milliseconds(1500);
  return o;
}

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto i = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

// ---------------------------------------------------------------------------------------------
// throughput

struct Throughput {
  std::vector<apns::BadgeNotification> notifications;
  std::vector<double> latency_ms;
  std::map<std::string, std::uint64_t> outcomes;
  std::size_t next = 0;
  std::size_t workers_done = 0;
};

asio::awaitable<void> worker(std::shared_ptr<ApnsConnectionPool> pool, Throughput& t) {
  while (t.next < t.notifications.size()) {
    const apns::BadgeNotification& n = t.notifications[t.next++];
    const auto start = Clock::now();
    const apns::SendResult r = co_await pool->send(n);
    t.latency_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    ++t.outcomes[apns::send_outcome_name(r.outcome)];
  }
  ++t.workers_done;
}

int run_throughput(std::uint16_t port, const std::string& ca, const std::string& cert,
                   const std::string& key, std::size_t requests, std::size_t connections,
                   std::size_t concurrency, int timeout_s) {
  auto identity = h2::ClientIdentity::from_pem(read_text(cert), read_text(key));
  if (!identity) throw std::runtime_error(identity.error().message);
  h2::TlsClientOptions trust;
  trust.ca_file = ca;
  auto credential = apns::make_apns_credential(
      "bench-throughput", apns::ApnsEnvironment::development, *identity, trust);
  if (!credential) throw std::runtime_error(credential.error().message);

  Throughput t;
  t.notifications.reserve(requests);
  for (std::size_t i = 0; i < requests; ++i) {
    apns::BadgeNotification n;
    n.device_token_hex = token_for(i);
    n.topic = "com.example.mail";
    n.badge = static_cast<int>(i % 1000);
    t.notifications.push_back(std::move(n));
  }
  t.latency_ms.reserve(requests);

  asio::io_context io(1);
  auto pool = ApnsConnectionPool::create(io.get_executor(), std::move(credential).value(),
                                         pool_options(port, connections, timeout_s));
  // Connect before the clock starts, as h2load does.
  bool connected = false;
  asio::co_spawn(io, pool->connect(), [&](std::exception_ptr e, Status st) {
    if (e || !st) throw std::runtime_error("connect failed: " + (st ? "" : st.error().message));
    connected = true;
  });
  while (!connected) io.run_one();

  const double cpu_before = cpu_seconds_self();
  const auto start = Clock::now();
  for (std::size_t w = 0; w < concurrency; ++w) {
    // On the pool's strand, as a dispatcher draining this customer's queue would run.
    asio::co_spawn(pool->executor(), worker(pool, t), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
  }
  const auto limit = start + std::chrono::seconds(timeout_s);
  while (t.workers_done < concurrency && Clock::now() < limit)
    io.run_one_for(std::chrono::milliseconds(100));
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = cpu_seconds_self() - cpu_before;

  bool closed = false;
  asio::co_spawn(io, pool->close(), [&](std::exception_ptr) { closed = true; });
  const auto close_limit = Clock::now() + std::chrono::seconds(10);
  while (!closed && Clock::now() < close_limit) io.run_one_for(std::chrono::milliseconds(100));

  std::sort(t.latency_ms.begin(), t.latency_ms.end());
  const std::uint64_t delivered = t.outcomes["delivered"];
  json out = {
      {"mode", "throughput"},
      {"requests", requests},
      {"completed", t.latency_ms.size()},
      {"delivered", delivered},
      {"outcomes", t.outcomes},
      {"connections", connections},
      {"concurrency", concurrency},
      {"elapsed_s", elapsed},
      {"rate", static_cast<double>(delivered) / elapsed},
      {"p50_ms", percentile(t.latency_ms, 0.50)},
      {"p90_ms", percentile(t.latency_ms, 0.90)},
      {"p99_ms", percentile(t.latency_ms, 0.99)},
      {"max_ms", t.latency_ms.empty() ? 0.0 : t.latency_ms.back()},
      {"client_cpu_s", cpu},
      {"cpu_s_per_100k", delivered ? cpu * 100000.0 / static_cast<double>(delivered) : 0.0}};
  std::cout << out.dump() << std::endl;
  return t.latency_ms.size() == requests ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// idle: many customers, one connection each

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) throw std::runtime_error("extension");
}

// Apple's environment markers are extensions holding an ASN.1 NULL.
void add_null_ext(X509* cert, const char* oid) {
  AsnObjectPtr obj(OBJ_txt2obj(oid, 1));
  AsnOctetStringPtr data(ASN1_OCTET_STRING_new());
  static const unsigned char kNull[] = {0x05, 0x00};
  if (!obj || !data || ASN1_OCTET_STRING_set(data.get(), kNull, sizeof kNull) != 1) {
    throw std::runtime_error("extension");
  }
  X509ExtensionPtr ext(X509_EXTENSION_create_by_OBJ(nullptr, obj.get(), 0, data.get()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) throw std::runtime_error("extension");
}

// A push certificate like Apple's (EC P-256 instead of RSA, for speed), signed by the CA.
h2::ClientIdentity make_identity(X509* ca_cert, EVP_PKEY* ca_key, int serial) {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  X509Ptr cert(X509_new());
  if (!key || !cert) throw std::runtime_error("keygen");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 100000 + serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -86400);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400L * 365);
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string bundle = "com.example.mail";
  const std::string cn = "Apple Push Services: " + bundle;
  const std::string org = "Bench Customer " + std::to_string(serial);
  X509_NAME_add_entry_by_txt(name, "UID", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(bundle.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(org.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(ca_cert));
  X509_set_pubkey(cert.get(), key.get());
  add_ext(cert.get(), ca_cert, NID_basic_constraints, "critical,CA:FALSE");
  add_ext(cert.get(), ca_cert, NID_key_usage, "critical,digitalSignature");
  add_ext(cert.get(), ca_cert, NID_ext_key_usage, "clientAuth");
  add_ext(cert.get(), ca_cert, NID_authority_key_identifier, "keyid");
  add_null_ext(cert.get(), "1.2.840.113635.100.6.3.1");
  add_null_ext(cert.get(), "1.2.840.113635.100.6.3.2");
  if (X509_sign(cert.get(), ca_key, EVP_sha256()) == 0) throw std::runtime_error("sign");
  auto identity = h2::ClientIdentity::from_handles(cert.get(), key.get());
  if (!identity) throw std::runtime_error(identity.error().message);
  return std::move(identity).value();
}

int run_idle(std::uint16_t port, const std::string& ca, const std::string& ca_key_path,
             std::size_t customers, std::size_t parallel, int timeout_s) {
  const std::string ca_pem = read_text(ca), ca_key_pem = read_text(ca_key_path);
  const BioPtr cbio = memory_bio(ca_pem);
  X509Ptr ca_cert(PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr));
  const BioPtr kbio = memory_bio(ca_key_pem);
  EvpPkeyPtr ca_key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  if (!ca_cert || !ca_key) throw std::runtime_error("cannot read the CA certificate or key");

  asio::io_context io(1);
  std::vector<std::shared_ptr<ApnsConnectionPool>> pools;
  const auto make_start = Clock::now();
  for (std::size_t i = 0; i < customers; ++i) {
    h2::ClientIdentity identity = make_identity(ca_cert.get(), ca_key.get(), static_cast<int>(i));
    h2::TlsClientOptions trust;
    trust.ca_pem = ca_pem;
    auto credential = apns::make_apns_credential(
        "bench-" + std::to_string(i), apns::ApnsEnvironment::development, identity, trust);
    if (!credential) throw std::runtime_error(credential.error().message);
    auto options = pool_options(port, 1, timeout_s);
    pools.push_back(
        ApnsConnectionPool::create(io.get_executor(), std::move(credential).value(), options));
  }
  const double make_s = std::chrono::duration<double>(Clock::now() - make_start).count();
  malloc_trim(0);  // the same on both sides of the delta: freed key-generation scratch goes back
  const long rss_before = rss_kib();
  const long heap_before = heap_in_use_kib();

  std::size_t next = 0, done = 0, connected = 0, in_progress = 0;
  std::string first_error;
  const double cpu_before = cpu_seconds_self();
  const auto start = Clock::now();
  const auto limit = start + std::chrono::seconds(timeout_s);
  while (done < customers && Clock::now() < limit) {
    while (in_progress < parallel && next < customers) {
      ++in_progress;
      asio::co_spawn(io, pools[next++]->connect(), [&](std::exception_ptr e, Status st) {
        --in_progress;
        ++done;
        if (!e && st) {
          ++connected;
        } else if (first_error.empty()) {
          first_error = e ? "exception" : st.error().message;
        }
      });
    }
    io.run_one_for(std::chrono::milliseconds(100));
  }
  const double open_s = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = cpu_seconds_self() - cpu_before;
  // Let the last SETTINGS acks and window updates settle, then measure.
  const auto settle = Clock::now() + std::chrono::milliseconds(500);
  while (Clock::now() < settle) io.run_one_until(settle);
  malloc_trim(0);
  const long rss_after = rss_kib();
  const long heap_after = heap_in_use_kib();

  std::size_t open = 0;
  for (auto& pool : pools) {
    std::optional<apns::PoolStatus> s;
    asio::co_spawn(io, pool->status(), [&](std::exception_ptr, apns::PoolStatus v) { s = v; });
    while (!s) io.run_one();
    for (const auto& c : s->connections) {
      if (c.state == h2::ConnectionState::open) ++open;
    }
  }
  json out = {
      {"mode", "idle"},
      {"customers", customers},
      {"connected", connected},
      {"open_after", open},
      {"credentials_s", make_s},
      {"open_s", open_s},
      {"connections_per_s", static_cast<double>(connected) / open_s},
      {"client_cpu_s", cpu},
      {"rss_before_kib", rss_before},
      {"rss_after_kib", rss_after},
      {"kib_per_connection",
       connected ? static_cast<double>(rss_after - rss_before) / static_cast<double>(connected)
                 : 0.0},
      {"heap_kib_per_connection",
       connected ? static_cast<double>(heap_after - heap_before) / static_cast<double>(connected)
                 : 0.0},
      {"first_error", first_error}};
  std::cout << out.dump() << std::endl;

  std::size_t closed = 0;
  for (auto& pool : pools) {
    asio::co_spawn(io, pool->close(), [&](std::exception_ptr) { ++closed; });
  }
  const auto close_limit = Clock::now() + std::chrono::seconds(20);
  while (closed < pools.size() && Clock::now() < close_limit)
    io.run_one_for(std::chrono::milliseconds(100));
  return connected == customers ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"apns_load: ApnsConnectionPool against apns-sim (loopback only)", "apns_load"};
  cli.require_subcommand(1);
  std::uint16_t port = 0;
  std::string ca, cert, key, ca_key;
  std::size_t requests = 200000, connections = 2, concurrency = 200, customers = 1000,
              parallel = 50;
  int timeout_s = 120;
  auto* tp = cli.add_subcommand("throughput", "N notifications through one pool");
  tp->add_option("--port", port)->required();
  tp->add_option("--ca", ca)->required();
  tp->add_option("--cert", cert)->required();
  tp->add_option("--key", key)->required();
  tp->add_option("--requests", requests)->check(CLI::Range(1ul, 10'000'000ul));
  tp->add_option("--connections", connections)->check(CLI::Range(1ul, 64ul));
  tp->add_option("--concurrency", concurrency)->check(CLI::Range(1ul, 100'000ul));
  tp->add_option("--timeout", timeout_s)->check(CLI::Range(1, 600));
  auto* idle = cli.add_subcommand("idle", "one idle connection per customer");
  idle->add_option("--port", port)->required();
  idle->add_option("--ca", ca)->required();
  idle->add_option("--ca-key", ca_key)->required();
  idle->add_option("--customers", customers)->check(CLI::Range(1ul, 20'000ul));
  idle->add_option("--parallel", parallel)->check(CLI::Range(1ul, 1000ul));
  idle->add_option("--timeout", timeout_s)->check(CLI::Range(1, 600));
  CLI11_PARSE(cli, argc, argv);

  if (std::getenv("APNS_LOAD_DEBUG"))
    log::set_level(log::Level::debug);
  else
    log::set_level(log::Level::warn);  // 1,000 "connected" lines would be noise
  raise_open_file_limit();
  try {
    if (tp->parsed()) {
      return run_throughput(port, ca, cert, key, requests, connections, concurrency, timeout_s);
    }
    return run_idle(port, ca, ca_key, customers, parallel, timeout_s);
  } catch (const std::exception& e) {
    std::cerr << "apns_load: " << e.what() << "\n";
    return 1;
  }
}
