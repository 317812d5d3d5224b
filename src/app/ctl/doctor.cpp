// mailpushctl doctor and certs test: the checks support cases needed, each with a verdict and
// what to do. Network checks use only the hosts and ports the region file names (the relay's
// own view of APNs and of its public listener), each bounded by --timeout.
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "apns/connection_pool.hpp"
#include "apns/credential_probe.hpp"
#include "apns/device_token.hpp"
#include "app/ctl/ctl.hpp"
#include "certs/server_certificate.hpp"
#include "common/log.hpp"
#include "common/openssl_handles.hpp"
#include "credentials/credential_registry.hpp"
#include "http/listener_tls.hpp"
#include "keys/key_ring.hpp"
#include "store/admin.hpp"
#include "store/customers.hpp"
#include "store/migrations.hpp"
#include "store/outbox.hpp"
#include "store/registrations.hpp"

namespace mp::ctl {

using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

enum class Verdict { ok, warn, fail, skipped };

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::ok:
      return "ok";
    case Verdict::warn:
      return "warn";
    case Verdict::fail:
      return "fail";
    case Verdict::skipped:
      return "skipped";
  }
  return "?";
}

struct Check {
  std::string id;
  std::string subject;  // what was checked: a host, a customer, ...
  Verdict verdict = Verdict::ok;
  std::string finding;
  std::string action;  // what to do; empty when nothing
};

class Report {
 public:
  void add(std::string id, std::string subject, Verdict verdict, std::string finding,
           std::string action = {}) {
    checks_.push_back(
        {std::move(id), std::move(subject), verdict, std::move(finding), std::move(action)});
  }
  bool failed() const {
    return std::any_of(checks_.begin(), checks_.end(),
                       [](const Check& c) { return c.verdict == Verdict::fail; });
  }
  // How many checks with this id have this verdict.
  std::size_t count(std::string_view id, Verdict verdict) const {
    return static_cast<std::size_t>(
        std::count_if(checks_.begin(), checks_.end(),
                      [&](const Check& c) { return c.id == id && c.verdict == verdict; }));
  }
  int print(const Options& o, const std::string& region) const {
    std::map<Verdict, int> totals;
    for (const auto& c : checks_) ++totals[c.verdict];
    if (o.json_output) {
      json out = json::array();
      for (const auto& c : checks_) {
        out.push_back({{"check", c.id},
                       {"subject", c.subject},
                       {"verdict", verdict_name(c.verdict)},
                       {"finding", c.finding},
                       {"action", c.action.empty() ? json(nullptr) : json(c.action)}});
      }
      std::cout << json{{"region", region},
                        {"ok", !failed()},
                        {"counts",
                         {{"ok", totals[Verdict::ok]},
                          {"warn", totals[Verdict::warn]},
                          {"fail", totals[Verdict::fail]},
                          {"skipped", totals[Verdict::skipped]}}},
                        {"checks", out}}
                       .dump(2)
                << "\n";
    } else {
      for (const auto& c : checks_) {
        std::string tag = verdict_name(c.verdict);
        for (auto& ch : tag) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        std::cout << std::left << std::setw(8) << ("[" + tag + "]") << std::setw(22) << c.id
                  << c.subject << (c.subject.empty() ? "" : ": ") << c.finding << "\n";
        if (!c.action.empty()) std::cout << "        -> " << c.action << "\n";
      }
      std::cout << "\n"
                << totals[Verdict::ok] << " ok, " << totals[Verdict::warn] << " warnings, "
                << totals[Verdict::fail] << " failed, " << totals[Verdict::skipped] << " skipped\n";
    }
    return failed() ? app::kExitProblemsFound : app::kExitOk;
  }

 private:
  std::vector<Check> checks_;
};

// Runs `body` on its own io_context for at most `timeout`; `on_timeout` when it ran out.
template <class T>
T run_bounded(std::function<asio::awaitable<T>()> body, std::chrono::milliseconds timeout,
              T on_timeout) {
  std::optional<T> result;
  {
    asio::io_context ctx;
    asio::co_spawn(
        ctx, [&]() -> asio::awaitable<void> { result = co_await body(); }, asio::detached);
    ctx.run_for(timeout);
  }
  return result ? std::move(*result) : std::move(on_timeout);
}

std::string endpoint_name(const std::string& host, std::uint16_t port) {
  return host + ":" + std::to_string(port);
}

// ------------------------------------------------------------------ network

struct Resolved {
  std::string error;  // empty when it resolved
  std::vector<tcp::endpoint> endpoints;
};

asio::awaitable<Resolved> resolve(std::string host, std::uint16_t port) {
  tcp::resolver resolver(co_await asio::this_coro::executor);
  const std::string service = std::to_string(port);
  auto [ec, results] = co_await resolver.async_resolve(host, service, kAwait);
  Resolved r;
  if (ec) {
    r.error = ec.message();
    co_return r;
  }
  for (const auto& e : results) r.endpoints.push_back(e.endpoint());
  co_return r;
}

struct Connected {
  std::string error;  // empty when connected
  std::string address;
};

asio::awaitable<Connected> tcp_connect(std::string host, std::uint16_t port) {
  Resolved resolved = co_await resolve(host, port);
  Connected c;
  if (!resolved.error.empty()) {
    c.error = "does not resolve: " + resolved.error;
    co_return c;
  }
  tcp::socket socket(co_await asio::this_coro::executor);
  auto [ec, endpoint] = co_await asio::async_connect(socket, resolved.endpoints, kAwait);
  if (ec) {
    c.error = ec.message();
    co_return c;
  }
  c.address = endpoint.address().to_string();
  co_return c;
}

// What an HTTPS GET of the public listener found.
struct ListenerProbe {
  std::string unreachable;  // TCP or TLS failed outright
  std::string untrusted;    // the certificate did not verify (Exchange would refuse it)
  int status = 0;           // of GET /healthz, 0 if none
  std::string served_pem;   // the certificate the listener showed, when the handshake succeeded
};

std::string pem_of(X509* certificate) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), certificate) != 1) return "";
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : "";
}

asio::awaitable<ListenerProbe> probe_listener(std::string host, std::uint16_t port,
                                              std::optional<std::filesystem::path> ca_file) {
  ListenerProbe out;
  Resolved resolved = co_await resolve(host, port);
  if (!resolved.error.empty()) {
    out.unreachable = "does not resolve: " + resolved.error;
    co_return out;
  }
  for (int verify = 1; verify >= 0; --verify) {
    asio::ssl::context tls(asio::ssl::context::tls_client);
    tls.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                    asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
    boost::system::error_code trust_ec;
    if (ca_file) {
      tls.load_verify_file(ca_file->string(), trust_ec);
    } else {
      tls.set_default_verify_paths(trust_ec);
    }
    tls.set_verify_mode(verify ? asio::ssl::verify_peer : asio::ssl::verify_none);
    asio::ssl::stream<tcp::socket> stream(co_await asio::this_coro::executor, tls);
    SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
    if (verify) stream.set_verify_callback(asio::ssl::host_name_verification(host));
    auto [cec, endpoint] =
        co_await asio::async_connect(stream.lowest_layer(), resolved.endpoints, kAwait);
    (void)endpoint;
    if (cec) {
      out.unreachable = cec.message();
      co_return out;
    }
    auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, kAwait);
    if (hec) {
      const long result = SSL_get_verify_result(stream.native_handle());
      if (verify && result != X509_V_OK) {
        out.untrusted = X509_verify_cert_error_string(result);
        continue;  // again without verification: is it reachable at all?
      }
      if (verify && out.untrusted.empty()) {
        out.untrusted = "host name or certificate check failed: " + hec.message();
        continue;
      }
      out.unreachable = "TLS handshake failed: " + hec.message();
      co_return out;
    }
    if (X509* served = SSL_get0_peer_certificate(stream.native_handle())) {
      out.served_pem = pem_of(served);
    }
    beast::http::request<beast::http::empty_body> req{beast::http::verb::get, "/healthz", 11};
    req.set(beast::http::field::host, host);
    req.set(beast::http::field::user_agent, "mailpushctl-doctor");
    auto [wec, written] = co_await beast::http::async_write(stream, req, kAwait);
    (void)written;
    if (wec) {
      out.unreachable = "sending the request failed: " + wec.message();
      co_return out;
    }
    beast::flat_buffer buffer;
    beast::http::response<beast::http::string_body> res;
    auto [rec, read] = co_await beast::http::async_read(stream, buffer, res, kAwait);
    (void)read;
    if (rec) {
      out.unreachable = "no HTTP answer: " + rec.message();
      co_return out;
    }
    out.status = res.result_int();
    co_return out;
  }
  co_return out;
}

// ------------------------------------------------------------------ APNs credential verdicts

// The verdict on one credential in one environment, from what APNs answered.
void judge_probe(Report& report, const std::string& subject, const apns::CredentialProbe& p,
                 const char* environment) {
  const std::string env = environment;
  if (!p.handshake_error.empty()) {
    report.add("apns.tls", subject, Verdict::fail,
               "the TLS/HTTP/2 connection to APNs failed: " + p.handshake_error,
               "if the port is reachable, APNs refused the certificate: it is revoked, expired or "
               "not an Apple push certificate; the customer uploads a new one in the portal");
    return;
  }
  const apns::SendResult& a = *p.answer;
  const std::string answer =
      std::to_string(a.http_status) + (a.reason.empty() ? "" : " " + a.reason);
  if (a.http_status == 200 || a.reason == "BadDeviceToken" || a.reason == "Unregistered" ||
      a.reason == "DeviceTokenNotForTopic") {
    report.add("apns.tls", subject, Verdict::ok,
               "APNs (" + env + ") accepted the certificate and topic (test push answered " +
                   answer + ")");
  } else if (a.reason == "BadCertificateEnvironment") {
    report.add("apns.environment", subject, Verdict::fail,
               "APNs refused the certificate for " + env + " (" + answer + ")",
               "the certificate does not serve the environment of the host it was sent to: "
               "check apns." +
                   std::string(env == "production" ? "production" : "sandbox") +
                   ".host in the region file, or have the customer upload a certificate for " +
                   env);
  } else if (a.reason == "TopicDisallowed" || a.reason == "BadTopic" ||
             a.reason == "MissingTopic") {
    report.add("apns.topic", subject, Verdict::fail, "APNs refused the topic (" + answer + ")",
               "the certificate's App ID and the app's bundle id differ: the customer uploads "
               "the certificate made for the mail app's bundle id");
  } else if (a.http_status == 403) {
    report.add("apns.tls", subject, Verdict::fail, "APNs refused the certificate (" + answer + ")",
               "the certificate is revoked or not a push certificate: the customer uploads a new "
               "one in the portal");
  } else {
    report.add("apns.tls", subject, Verdict::warn,
               "no usable answer from APNs (" + (answer == "0" ? a.explanation : answer) + ")",
               "run it again; if it persists, check the path to APNs (proxy, TLS inspection)");
  }
}

struct OpenedCredential {
  store::CredentialRow row;
  std::shared_ptr<const credentials::LoadedCredential> loaded;
  std::string error;
};

// Active credentials (of one customer, or all up to `max`) opened with the region's key file.
Result<std::vector<OpenedCredential>> open_credentials(const config::RegionConfig& cfg,
                                                       store::Connection& conn,
                                                       const std::string& customer_id,
                                                       std::size_t max) {
  if (!cfg.portal.kek_file) {
    return make_error(Errc::invalid_argument,
                      "the region has no portal.kek_file: credentials cannot be opened");
  }
  auto ring = keys::KeyRing::load_file(*cfg.portal.kek_file);
  if (!ring) return std::move(ring).error();
  auto rows = store::active_credentials_sealed(conn);
  if (!rows) return std::move(rows).error();
  h2::TlsClientOptions trust;
  trust.ca_file = cfg.apns.ca_file;
  std::vector<OpenedCredential> out;
  for (auto& row : *rows) {
    if (!customer_id.empty() && row.customer_id != customer_id) continue;
    if (out.size() >= max) break;
    OpenedCredential c;
    auto loaded = credentials::open_credential(*ring, row, trust);
    if (loaded) {
      c.loaded = std::move(*loaded);
    } else {
      c.error = loaded.error().message;
    }
    row.sealed_material.clear();
    row.wrapped_data_key.clear();
    c.row = std::move(row);
    out.push_back(std::move(c));
  }
  return out;
}

// Probes every environment each credential serves; adds one check per pair.
// Endpoints in `unreachable` ("host:port") are not probed: apns.tcp already said why.
void check_credentials(Report& report, const config::RegionConfig& cfg,
                       const std::vector<OpenedCredential>& credentials,
                       std::chrono::milliseconds timeout,
                       const std::set<std::string>& unreachable = {}) {
  for (const auto& c : credentials) {
    const std::string who = c.row.customer_id + " (" + c.row.topic + ")";
    if (!c.loaded) {
      report.add("apns.credential", who, Verdict::fail,
                 "the stored credential does not open: " + c.error,
                 "check that portal.kek_file holds every key listed by `mailpushctl kek status`");
      continue;
    }
    for (const auto* env : {"development", "production"}) {
      const bool production = std::string_view(env) == "production";
      const auto& credential = production ? c.loaded->production : c.loaded->development;
      if (!credential) continue;
      const config::Endpoint endpoint = production ? cfg.apns.production : cfg.apns.sandbox;
      const std::string subject =
          who + " " + env + " via " + endpoint_name(endpoint.host, endpoint.port);
      if (unreachable.count(endpoint_name(endpoint.host, endpoint.port)) != 0) {
        report.add("apns.tls", subject, Verdict::skipped, "APNs is not reachable (see apns.tcp)");
        continue;
      }
      const apns::ProbeTarget target{endpoint.host, endpoint.port, timeout};
      auto probe = run_bounded<apns::CredentialProbe>(
          [&]() { return apns::probe_credential(*credential, target, c.row.topic); }, timeout * 3,
          apns::CredentialProbe{"no answer within " + std::to_string(timeout.count() * 3) + " ms",
                                {}});
      judge_probe(report, subject, probe, env);
    }
  }
}

std::string plural(std::int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

// What a stored token that APNs cannot take looks like, without printing it.
std::string token_kind(const std::string& token) {
  if (token.empty()) return "empty";
  auto normal = apns::normalize_device_token(token);
  if (normal) {
    return *normal == token
               ? "hex"
               : "base64 or formatted (hex would be " + apns::display_token(*normal) + ")";
  }
  return "unreadable (" + normal.error().message + ")";
}

// Whether a finding about `customer_id` belongs in a report narrowed to `customer` (or to none).
bool concerns(const std::optional<store::CustomerRow>& customer, const std::string& customer_id) {
  return !customer || customer->customer_id == customer_id;
}

// Device tokens that are not lowercase hex.
void check_device_tokens(Report& report, store::Connection& conn, std::optional<std::int64_t> row) {
  auto bad = store::devices_with_malformed_tokens(conn, 1000, row);
  if (!bad) {
    report.add("devices.tokens", "", Verdict::fail, "query failed: " + bad.error().message);
  } else if (bad->empty()) {
    report.add("devices.tokens", "", Verdict::ok, "every active device token is hex");
  } else {
    std::map<std::string, std::map<std::string, int>> by_customer;  // customer -> kind -> n
    for (const auto& d : *bad) {
      std::string kind = token_kind(d.token);
      if (kind.rfind("base64", 0) == 0) kind = "base64";
      ++by_customer[d.customer_id][kind];
    }
    for (const auto& [customer, kinds] : by_customer) {
      std::string finding;
      for (const auto& [kind, n] : kinds)
        finding += (finding.empty() ? "" : ", ") + plural(n, "device", "devices") + " with a " +
                   kind + " token";
      report.add("devices.tokens", customer, Verdict::fail, finding,
                 "APNs refuses these (BadDeviceToken): the app must register the token as hex "
                 "(the registration API converts base64); the devices recover when the app "
                 "registers again");
    }
  }
}

// Devices of an environment the customer's credential does not serve.
void check_device_environments(Report& report, store::Connection& conn,
                               const std::optional<store::CustomerRow>& customer) {
  const auto mine = [&](const std::string& customer_id) { return concerns(customer, customer_id); };
  auto mismatches = store::environment_mismatches(conn);
  if (!mismatches) {
    report.add("devices.environment", "", Verdict::fail,
               "query failed: " + mismatches.error().message);
  } else if (std::none_of(mismatches->begin(), mismatches->end(),
                          [&](const auto& m) { return mine(m.customer_id); })) {
    report.add("devices.environment", "", Verdict::ok,
               "every active device's environment is served by its customer's certificate");
  } else {
    for (const auto& m : *mismatches) {
      if (!mine(m.customer_id)) continue;
      report.add(
          "devices.environment", m.customer_id, Verdict::fail,
          plural(m.devices, "device is", "devices are") + " registered for " + m.environment +
              ", but the active certificate serves " +
              (m.credential_environments.empty() ? std::string("nothing (no active certificate)")
                                                 : m.credential_environments),
          "their badges are dead-lettered (NoCredentialForEnvironment): the customer "
          "uploads a certificate for " +
              m.environment + ", or the app registers with the right environment");
    }
  }
}

void check_refused_tokens(Report& report, store::Connection& conn,
                          const std::optional<store::CustomerRow>& customer) {
  auto refused = store::refused_tokens(conn);
  if (refused && !refused->empty()) {
    for (const auto& r : *refused) {
      if (!concerns(customer, r.customer_id)) continue;
      report.add("devices.refused", r.customer_id, Verdict::warn,
                 plural(r.devices, "device", "devices") + " registered for " + r.environment +
                     " were refused by APNs with " + r.reason,
                 "usually development-build tokens registered as production (or the reverse): "
                 "check which environment the app build registers with");
    }
  }
}

// Credentials expired or close to it.
void check_credential_expiry(Report& report, store::Connection& conn,
                             const std::optional<store::CustomerRow>& customer) {
  const auto mine = [&](const std::string& customer_id) { return concerns(customer, customer_id); };
  auto creds = store::list_credentials(conn, std::int64_t{30} * 86400);
  if (!creds) {
    report.add("credentials.expiry", "", Verdict::fail, "query failed: " + creds.error().message);
  } else if (std::none_of(creds->begin(), creds->end(),
                          [&](const auto& k) { return mine(k.customer_id); })) {
    report.add("credentials.expiry", "", Verdict::ok, "no certificate ends within 30 days");
  } else {
    for (const auto& k : *creds) {
      if (!mine(k.customer_id)) continue;
      const bool expired = k.seconds_left <= 0;
      report.add("credentials.expiry", k.customer_id + " (" + k.topic + ")",
                 expired ? Verdict::fail : Verdict::warn,
                 expired ? "the certificate expired at " + k.not_after + ": no badge is sent"
                         : "the certificate ends at " + k.not_after + " (" +
                               plural(k.seconds_left / 86400, "day", "days") + " left)",
                 "the customer renews it in the portal (same App ID; devices are kept)");
    }
  }
}

void check_silent_subscriptions(Report& report, store::Connection& conn,
                                const std::optional<store::CustomerRow>& customer,
                                std::optional<std::int64_t> row) {
  auto subs = store::subscription_counts(conn, row);
  if (!subs) {
    report.add("subscriptions.silent", "", Verdict::fail, "query failed: " + subs.error().message);
  } else {
    const auto [active, silent] = *subs;
    const double ratio = active > 0 ? static_cast<double>(silent) / active : 0.0;
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f %%", ratio * 100);
    const Verdict v = (silent >= 5 && ratio > 0.2) ? Verdict::fail
                      : ratio > 0.05               ? Verdict::warn
                                                   : Verdict::ok;
    report.add("subscriptions.silent", customer ? customer->customer_id : "", v,
               std::to_string(silent) + " of " + std::to_string(active) +
                   " subscriptions are silent (" + pct + ")",
               v == Verdict::ok ? ""
                                : "many at once means Exchange cannot reach the listener "
                                  "(firewall, proxy, certificate): see the listener check; a few "
                                  "are apps that must subscribe again (mailpushctl subscriptions "
                                  "--silent)");
  }
}

// `customer` (public id, row id) narrows the per-customer checks to that customer.
void check_database_content(Report& report, store::Connection& conn,
                            const std::optional<store::CustomerRow>& customer) {
  const std::optional<std::int64_t> row =
      customer ? std::optional<std::int64_t>(customer->id) : std::nullopt;
  check_device_tokens(report, conn, row);
  check_device_environments(report, conn, customer);
  check_refused_tokens(report, conn, customer);
  check_credential_expiry(report, conn, customer);
  check_silent_subscriptions(report, conn, customer, row);
}

// Returns the queue as first seen, for dispatch.progress's second look (nullopt when unreadable).
std::optional<store::OutboxStats> check_outbox(Report& report, store::Connection& conn,
                                               const config::RegionConfig& cfg) {
  auto b = store::outbox_breakdown(conn, cfg.dispatch.lease);
  if (!b) {
    report.add("outbox", "", Verdict::fail, "query failed: " + b.error().message);
    return std::nullopt;
  }
  const Verdict age = b->oldest_queued_seconds > 300  ? Verdict::fail
                      : b->oldest_queued_seconds > 60 ? Verdict::warn
                                                      : Verdict::ok;
  report.add("outbox.age", "", age,
             std::to_string(b->queued) + " queued, the oldest for " +
                 std::to_string(b->oldest_queued_seconds) + " s",
             age == Verdict::ok ? ""
                                : "badges are late: see `mailpushctl outbox stats` (paused "
                                  "customers, instances not alive) and the APNs checks");
  report.add("outbox.dead", "", b->dead > 0 ? Verdict::warn : Verdict::ok,
             plural(b->dead, "dead letter", "dead letters"),
             b->dead > 0 ? "`mailpushctl outbox stats` shows the reasons; after fixing the "
                           "cause, `mailpushctl outbox retry-dead --yes`"
                         : "");
  auto alive = count(conn,
                     "SELECT COUNT(*) FROM instances WHERE stopped_at IS NULL AND heartbeat_at >= "
                     "UTC_TIMESTAMP(6) - INTERVAL " +
                         std::to_string(cfg.dispatch.lease.count()) + " SECOND");
  if (alive) {
    report.add("instances", "", *alive > 0 ? Verdict::ok : Verdict::warn,
               plural(*alive, "mailpushd instance", "mailpushd instances") + " alive",
               *alive > 0 ? ""
                          : "no instance has a recent heartbeat: start mailpushd "
                            "(systemctl start mailpushd@<region>)");
  }
  return store::OutboxStats{b->queued, b->dead, b->oldest_queued_seconds};
}

// One of the server's limits against its use now: WARN from half, FAIL from 80 %.
void judge_server_limit(Report& report, const std::string& id, std::int64_t used,
                        std::int64_t limit, const std::string& what, const std::string& action) {
  const double share = limit > 0 ? static_cast<double>(used) / static_cast<double>(limit) : 0;
  const Verdict v = share >= 0.8 ? Verdict::fail : share >= 0.5 ? Verdict::warn : Verdict::ok;
  report.add(id, "", v,
             std::to_string(used) + " of " + std::to_string(limit) + " " + what + " (" +
                 std::to_string(static_cast<int>(share * 100)) + " %)",
             v == Verdict::ok ? "" : action);
}

// Resources every client of the database server shares, which a leak in one of them exhausts
// for all: prepared statements (error 1461 stops every writer) and connections.
void check_database_resources(Report& report, store::Connection& conn) {
  auto rows = conn.query(
      "SELECT (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = "
      "'PREPARED_STMT_COUNT'), @@GLOBAL.max_prepared_stmt_count, (SELECT VARIABLE_VALUE FROM "
      "information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED'), "
      "@@GLOBAL.max_connections");
  if (!rows || rows->empty()) {
    report.add(
        "database.resources", "", Verdict::warn,
        "cannot read the server's status: " + (rows ? std::string("no row") : rows.error().message),
        "grant the region's database user PROCESS, or check the server by hand");
    return;
  }
  const auto& r = rows->front();
  judge_server_limit(report, "database.statements", r.i64(0), r.i64(1),
                     "prepared statements (max_prepared_stmt_count)",
                     "compare each instance's mailpush_db_prepared_statements metric: one that "
                     "keeps growing leaks (restart it, and report it); other clients of this "
                     "server count too. At the limit every write fails with error 1461");
  judge_server_limit(report, "database.connections", r.i64(2), r.i64(3),
                     "connections (max_connections)",
                     "count the instances × database.pool_size and other clients; raise "
                     "max_connections or lower pool sizes before new connections are refused");
}

// The oldest queued badge still waits at the end of the run (it aged by the run's length) while
// APNs accepted this run's test pushes: the dispatcher is not sending, not APNs refusing.
void check_dispatch_progress(Report& report, store::Connection& conn,
                             const store::OutboxStats& first, std::chrono::seconds elapsed) {
  auto now = store::outbox_stats(conn);
  if (!now) return;
  const bool apns_answers = report.count("apns.tls", Verdict::ok) > 0 &&
                            report.count("apns.tls", Verdict::fail) == 0 &&
                            report.count("apns.tcp", Verdict::fail) == 0;
  // Whole seconds on both sides: a second of slack for the truncation.
  const bool stuck =
      first.oldest_queued_seconds > 60 &&
      now->oldest_queued_seconds + 1 >= first.oldest_queued_seconds + elapsed.count() &&
      now->queued >= first.queued;
  if (!apns_answers) {
    report.add("dispatch.progress", "", Verdict::skipped, "needs an APNs test push that passed");
  } else if (stuck) {
    report.add("dispatch.progress", "", Verdict::fail,
               "the oldest queued badge has waited " + std::to_string(now->oldest_queued_seconds) +
                   " s and the queue did not shrink during this run, while APNs accepted the "
                   "test push",
               "the dispatcher is not sending: look for dispatch.* and database errors in "
               "mailpushd's log (e.g. error 1461, see database.statements) and for paused "
               "customers in `mailpushctl outbox stats`; restart the instance that owns the "
               "rows if it is stuck");
  } else {
    report.add(
        "dispatch.progress", "", Verdict::ok,
        "queued badges move while APNs answers (" + std::to_string(now->queued) + " queued)");
  }
}

// ------------------------------------------------------------------ listener certificate

// What the listener's certificate expiry alerts say, as verdicts: warn within 30 days, fail
// within 7 and once expired.
constexpr int kListenerWarnDays = 30;
constexpr int kListenerFailDays = 7;
constexpr const char* kRenewListener =
    "renew it: replace listener.tls_cert and listener.tls_key (the key last, or both by renaming "
    "into place), then `systemctl reload mailpushd@<region>` (SIGHUP) or wait "
    "listener.tls_poll_interval_ms; confirm with mailpush_listener_certificate_not_after_seconds "
    "or this check (ops/runbook.md, ListenerCertificateExpiring)";

struct Expiry {
  Verdict verdict = Verdict::ok;
  std::string finding;
};

Expiry judge_listener_expiry(const certs::ServerCertificate& c,
                             std::chrono::system_clock::time_point now) {
  const std::string what = "serial " + c.serial_hex + ", not after " + c.not_after_utc + " UTC";
  if (auto invalid = certs::check_validity(c, now)) return {Verdict::fail, invalid->message};
  const auto days = std::chrono::duration_cast<std::chrono::hours>(c.not_after - now).count() / 24;
  const std::string finding = what + " (" + plural(days, "day", "days") + " left)";
  if (days < kListenerFailDays) return {Verdict::fail, finding};
  if (days < kListenerWarnDays) return {Verdict::warn, finding};
  return {Verdict::ok, finding};
}

// The listener's own certificate, from the configured files and (when the probe got one) as
// served: expiry by days left, and a served pair that is not the files' (a refused or missed
// reload, or another instance behind the address).
void check_listener_certificate(Report& report, const config::RegionConfig& cfg,
                                const std::string& served_url, const std::string& served_pem) {
  const auto now = std::chrono::system_clock::now();
  const std::string file_subject = cfg.listener.tls_cert.string();
  std::optional<certs::ServerCertificate> file;
  auto pem = http::read_server_tls_files({cfg.listener.tls_cert, cfg.listener.tls_key});
  const auto file_facts = pem ? certs::inspect_server_pair(pem->cert_chain, pem->private_key.view())
                              : certs::ServerPairResult{certs::ServerPairRefused{
                                    certs::ServerPairProblem::no_certificate, pem.error().message}};
  if (const auto* refused = std::get_if<certs::ServerPairRefused>(&file_facts)) {
    report.add("listener.certificate_file", file_subject, Verdict::fail, refused->message,
               "mailpushd refuses this pair (and keeps serving the one it has): install the "
               "certificate with its own key, both readable by the mailpush user");
  } else {
    file = std::get<certs::ServerCertificate>(file_facts);
    const Expiry e = judge_listener_expiry(*file, now);
    report.add("listener.certificate_file", file_subject, e.verdict, e.finding,
               e.verdict == Verdict::ok ? "" : kRenewListener);
  }
  if (served_pem.empty()) return;
  const auto served_facts = certs::inspect_server_certificate(served_pem);
  if (!std::holds_alternative<certs::ServerCertificate>(served_facts)) return;
  const auto& served = std::get<certs::ServerCertificate>(served_facts);
  Expiry e = judge_listener_expiry(served, now);
  std::string action = e.verdict == Verdict::ok ? "" : kRenewListener;
  if (file && file->fingerprint_sha256_hex != served.fingerprint_sha256_hex) {
    e.verdict = std::max(e.verdict, Verdict::warn);
    e.finding += "; the file holds serial " + file->serial_hex + " (not after " +
                 file->not_after_utc + " UTC)";
    action =
        "the listener serves another certificate than the file: look for "
        "listener.certificate_refused in its log, send SIGHUP (systemctl reload), or check "
        "which instance or load balancer answers at " +
        served_url;
  }
  report.add("listener.certificate", served_url, e.verdict, e.finding, action);
}

}  // namespace

namespace {
// The APNs client's own log lines would repeat what the report says, on stderr: the report is
// the output.
void quiet_library_logs() {
  log::set_sink([](std::string_view) {});
}
}  // namespace

// APNs: names, then TCP to each endpoint the relay sends to. Endpoints that fail go into
// `unreachable`, so the credential checks do not repeat the failure.
void check_apns_reachability(Report& report, const config::RegionConfig& cfg,
                             std::chrono::milliseconds timeout,
                             std::set<std::string>& unreachable) {
  std::vector<std::pair<std::string, config::Endpoint>> endpoints{
      {"production", cfg.apns.production}, {"sandbox", cfg.apns.sandbox}};
  if (endpoints[0].second.host == endpoints[1].second.host &&
      endpoints[0].second.port == endpoints[1].second.port)
    endpoints.pop_back();
  for (const auto& [name, endpoint] : endpoints) {
    const std::string host = endpoint.host;
    const std::uint16_t port = endpoint.port;
    auto r = run_bounded<Resolved>([&]() { return resolve(host, port); }, timeout,
                                   Resolved{"no answer within the timeout", {}});
    if (!r.error.empty()) {
      unreachable.insert(endpoint_name(host, port));
      report.add("apns.dns", host, Verdict::fail, "does not resolve: " + r.error,
                 "the relay's DNS resolver must resolve " + host + " (APNs " + name + ")");
      continue;
    }
    report.add("apns.dns", host, Verdict::ok,
               "resolves to " +
                   plural(static_cast<std::int64_t>(r.endpoints.size()), "address", "addresses"));
    auto c =
        run_bounded<Connected>([&]() { return tcp_connect(host, port); }, timeout,
                               Connected{"no answer within " + std::to_string(timeout.count()) +
                                             " ms (dropped by a firewall?)",
                                         ""});
    if (!c.error.empty()) {
      unreachable.insert(endpoint_name(host, port));
      report.add("apns.tcp", endpoint_name(host, port), Verdict::fail,
                 "outbound TCP is blocked: " + c.error,
                 "open outbound TCP " + std::to_string(port) + " to " + host + " (APNs " + name +
                     ") in the firewall or proxy; APNs also listens on " +
                     (port == 2197 ? std::string("443") : std::string("2197")) + ", set apns." +
                     name + ".port if only that one is open");
    } else {
      report.add("apns.tcp", endpoint_name(host, port), Verdict::ok,
                 "reachable (" + c.address + ")");
    }
  }
}

// What the public listener served: its URL and certificate chain ("" when not probed).
struct ServedListener {
  std::string url, pem;
};

// The public listener, as Exchange reaches it.
ServedListener check_public_listener(Report& report, const config::RegionConfig& cfg,
                                     const DoctorOptions& d) {
  const auto timeout = d.timeout;
  const std::string host = cfg.listener.public_host;
  const std::uint16_t port = d.listener_port != 0 ? d.listener_port : cfg.listener.port;
  const auto ca = d.listener_ca;
  auto p = run_bounded<ListenerProbe>(
      [&]() { return probe_listener(host, port, ca); }, timeout,
      ListenerProbe{"no answer within " + std::to_string(timeout.count()) + " ms", "", 0, ""});
  const std::string url = "https://" + endpoint_name(host, port) + "/healthz";
  if (!p.unreachable.empty()) {
    report.add("listener", url, Verdict::fail, "not reachable: " + p.unreachable,
               "Exchange must reach this URL: check that mailpushd runs, the load balancer and "
               "firewall forward TCP " +
                   std::to_string(port) + ", and that " + host + " resolves to it");
  } else if (!p.untrusted.empty()) {
    report.add("listener", url, Verdict::warn,
               "reachable (HTTP " + std::to_string(p.status) +
                   "), but its certificate is not trusted: " + p.untrusted,
               "Exchange only calls listeners whose certificate chains to a public CA and "
               "matches " +
                   host + ": install such a certificate (listener.tls_cert)");
  } else if (p.status != 200) {
    report.add(
        "listener", url, Verdict::warn,
        "reachable with a trusted certificate, but /healthz answered " + std::to_string(p.status),
        "the address may reach another service: check the load balancer's target");
  } else {
    report.add("listener", url, Verdict::ok, "reachable with a trusted certificate");
  }
  return {"https://" + endpoint_name(host, port), p.served_pem};
}

// The database, reachable and migrated; null (and reported) when it is not.
std::unique_ptr<store::Connection> open_checked_database(Report& report,
                                                         const config::RegionConfig& cfg) {
  auto conn_options = app::connection_options(cfg.database);
  std::unique_ptr<store::Connection> conn;
  if (!conn_options) {
    report.add("database", "", Verdict::fail, conn_options.error().message,
               "fix database.* in the region file");
  } else {
    conn = std::make_unique<store::Connection>(*conn_options);
    if (auto st = conn->connect(); !st) {
      report.add("database", conn_options->describe(), Verdict::fail, st.error().message,
                 "start MariaDB or fix database.* in the region file");
      conn.reset();
    } else {
      auto state = store::read_schema_state(*conn);
      const std::string problem = app::readiness_problem(state);
      report.add("database", conn_options->describe(),
                 problem.empty() ? Verdict::ok : Verdict::fail,
                 problem.empty() ? "reachable, schema up to date" : problem,
                 problem.empty() ? "" : "run `mailpushctl migrate`");
      if (!problem.empty()) conn.reset();
    }
  }
  return conn;
}

// A TLS connection to APNs with each active certificate (of one customer, or up to
// max_credentials).
void check_apns_credentials(Report& report, const config::RegionConfig& cfg,
                            store::Connection& conn, const DoctorOptions& d,
                            const std::set<std::string>& unreachable) {
  const auto timeout = d.timeout;
  auto opened = open_credentials(cfg, conn, d.customer_id, d.max_credentials);
  if (!opened) {
    report.add("apns.credential", "", Verdict::fail, opened.error().message);
  } else if (opened->empty()) {
    report.add(
        "apns.tls", d.customer_id, Verdict::skipped,
        "no active certificate" + std::string(d.customer_id.empty() ? "" : " for this customer"));
  } else {
    check_credentials(report, cfg, *opened, timeout, unreachable);
  }
}

// Late badges: a second look at least a few seconds after the first tells a queue that moves
// from one that does not.
void check_late_badges(Report& report, store::Connection& conn,
                       const store::OutboxStats& outbox_at_start,
                       std::chrono::steady_clock::time_point started) {
  if (outbox_at_start.oldest_queued_seconds > 60) {
    std::this_thread::sleep_until(started + std::chrono::seconds(3));
  }
  check_dispatch_progress(
      report, conn, outbox_at_start,
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started));
}

int cmd_doctor(const Options& o, const DoctorOptions& d) {
  quiet_library_logs();
  Report report;
  auto cfg = config::load_region(o.region_file, {.check_files = true, .overrides = o.overrides});
  if (!cfg) {
    report.add("config", o.region_file, Verdict::fail, cfg.error().message,
               "fix the region file; `mailpushd --check-config` says the same");
    // The database and network checks still run with what the file says.
    cfg = load_region(o);
    if (!cfg) return report.print(o, "?");
  } else {
    report.add("config", o.region_file, Verdict::ok, "valid, and its files are readable");
  }
  std::set<std::string> unreachable;
  check_apns_reachability(report, *cfg, d.timeout, unreachable);
  ServedListener served;
  if (!d.skip_listener) served = check_public_listener(report, *cfg, d);
  check_listener_certificate(report, *cfg, served.url, served.pem);

  // The database, then what is in it.
  std::unique_ptr<store::Connection> conn = open_checked_database(report, *cfg);
  std::optional<store::CustomerRow> customer;
  if (conn && !d.customer_id.empty()) {
    auto found = customer_named(*conn, d.customer_id);
    if (!found) return fail(o, "doctor", found.error());
    customer = std::move(*found);
  }
  if (!conn) {
    report.add("apns.tls", "", Verdict::skipped, "needs the database");
    return report.print(o, cfg->region);
  }
  const auto started = std::chrono::steady_clock::now();
  check_database_resources(report, *conn);
  check_database_content(report, *conn, customer);
  const std::optional<store::OutboxStats> outbox_at_start = check_outbox(report, *conn, *cfg);
  check_apns_credentials(report, *cfg, *conn, d, unreachable);
  if (outbox_at_start) check_late_badges(report, *conn, *outbox_at_start, started);
  return report.print(o, cfg->region);
}

int cmd_certs_test(const Options& o, const std::string& customer_id,
                   const std::string& environment) {
  const std::string what = "certs test";
  quiet_library_logs();
  if (!environment.empty() && environment != "development" && environment != "production")
    return usage(what, "--environment must be development or production");
  auto cfg = load_region(o);
  if (!cfg) return fail(o, what, cfg.error());
  const std::string& region = cfg->region;
  auto conn = connect(*cfg);
  if (!conn) return fail(o, what, conn.error());
  auto customer = customer_named(**conn, customer_id);
  if (!customer) return fail(o, what, customer.error());
  auto opened = open_credentials(*cfg, **conn, customer_id, 1);
  if (!opened) return fail(o, what, opened.error());
  if (opened->empty()) {
    return fail(o, what,
                make_error(Errc::not_found, customer_id + " has no active certificate" +
                                                (customer->state == "active"
                                                     ? ""
                                                     : " (customer is " + customer->state + ")")));
  }
  Report report;
  std::vector<OpenedCredential> one;
  one.push_back(std::move(opened->front()));
  if (!environment.empty() && one.front().loaded) {
    auto loaded = std::make_shared<credentials::LoadedCredential>(*one.front().loaded);
    (environment == "production" ? loaded->development : loaded->production).reset();
    if (!loaded->development && !loaded->production) {
      return fail(o, what,
                  make_error(Errc::not_found, "the certificate of " + customer_id +
                                                  " does not serve " + environment));
    }
    one.front().loaded = std::move(loaded);
  }
  check_credentials(report, *cfg, one, std::chrono::milliseconds(10'000));
  return report.print(o, region);
}

}  // namespace mp::ctl
