// apns-sim: parses the command line, sets up TLS (ALPN h2, client certificates), the HTTP/2
// listener and the control port, prints one ready line on stdout and runs until SIGINT/SIGTERM.
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "common/log.hpp"
#include "control_api.hpp"
#include "h2_connection.hpp"
#include "sim_state.hpp"

namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using apns_sim::SimState;
using asio::ip::tcp;

constexpr unsigned char kSessionIdContext[] = "apns-sim";

struct Options {
  std::string listen = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint16_t control_port = 0;
  std::string cert, key, client_ca;
  bool no_client_cert = false;
  std::string environment = "development";
  unsigned threads = 1;
  std::size_t max_recorded = 100'000;  // ~100 MB at most with 1 KB payloads
  std::uint64_t seed = 1;
  std::string faults_json;
  std::string log_level = "info";
  // Shorthands for common faults; --faults overrides them.
  std::uint32_t max_concurrent_streams = 1000;
  std::uint32_t goaway_after = 0;
  std::uint32_t close_after = 0;
  std::uint32_t latency_ms = 0;
  std::vector<std::string> unregistered;
  bool silent = false;
};

int select_h2(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
              unsigned int inlen, void*) {
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof kH2, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // APNs speaks only h2
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

void configure_tls(ssl::context& tls, const Options& opt, SimState& state) {
  tls.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                  ssl::context::single_dh_use);
  SSL_CTX* ctx = tls.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // HTTP/2 forbids TLS 1.2 ciphers without forward secrecy and AEAD (RFC 9113 appendix A).
  SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
  // Idle connections give their TLS buffers back: apns-sim holds thousands of them.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof kSessionIdContext - 1);
  SSL_CTX_set_alpn_select_cb(ctx, &select_h2, nullptr);
  tls.use_certificate_chain_file(opt.cert);
  tls.use_private_key_file(opt.key, ssl::context::pem);
  if (opt.no_client_cert) {
    tls.set_verify_mode(ssl::verify_none);
    return;
  }
  tls.load_verify_file(opt.client_ca);
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(opt.client_ca.c_str())) {
    SSL_CTX_set_client_CA_list(ctx, names);  // takes ownership
  }
  tls.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  tls.set_verify_callback([&state](bool preverified, ssl::verify_context& vc) {
    X509_STORE_CTX* store = vc.native_handle();
    if (!preverified) return false;
    if (X509_STORE_CTX_get_error_depth(store) != 0) return true;
    const auto facts = apns_sim::read_client_cert(X509_STORE_CTX_get_current_cert(store));
    const auto faults = state.faults();
    if (apns_sim::names_any_certificate(faults->revoked, facts.sha256_hex, facts.subject)) {
      X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REVOKED);
      return false;
    }
    return true;
  });
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, ssl::context& tls, SimState& state,
                                  const apns_sim::ServerConfig& config) {
  auto& io = static_cast<asio::io_context&>(acceptor.get_executor().context());
  for (;;) {
    tcp::socket socket(asio::make_strand(io));
    boost::system::error_code ec;
    co_await acceptor.async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      mp::log::warn("apns_sim.accept_failed", {{"error", ec.message()}});
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    std::make_shared<apns_sim::H2Connection>(std::move(socket), tls, state, config)->start();
  }
}

void raise_open_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

}  // namespace

namespace {

void add_options(CLI::App& cli, Options& opt) {
  cli.add_option("--listen", opt.listen, "Loopback address to listen on")->capture_default_str();
  cli.add_option("--port", opt.port, "HTTP/2 port; 0 picks one (see the ready line)");
  cli.add_option("--control-port", opt.control_port, "Control HTTP/1.1 port; 0 picks one");
  cli.add_option("--cert", opt.cert, "Server certificate chain (PEM)")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--key", opt.key, "Server private key (PEM)")
      ->required()
      ->check(CLI::ExistingFile);
  auto* ca = cli.add_option("--client-ca", opt.client_ca,
                            "CA whose client certificates are accepted (required)")
                 ->check(CLI::ExistingFile);
  auto* none = cli.add_flag("--no-client-cert", opt.no_client_cert,
                            "Accept clients without a certificate; topic from the header alone");
  ca->excludes(none);
  cli.add_option("--environment", opt.environment, "Which APNs this is: development|production")
      ->check(CLI::IsMember({"development", "production"}))
      ->capture_default_str();
  cli.add_option("--threads", opt.threads, "io_context threads")
      ->check(CLI::Range(1u, 64u))
      ->capture_default_str();
  cli.add_option("--max-recorded", opt.max_recorded, "Accepted notifications kept in memory")
      ->capture_default_str();
  cli.add_option("--seed", opt.seed, "Seed of the error-rate draws")->capture_default_str();
  cli.add_option("--faults", opt.faults_json, "Initial faults, as the POST /faults JSON");
  cli.add_option("--max-concurrent-streams", opt.max_concurrent_streams,
                 "SETTINGS_MAX_CONCURRENT_STREAMS")
      ->capture_default_str();
  cli.add_option("--goaway-after", opt.goaway_after, "GOAWAY after N streams per connection");
  cli.add_option("--close-after", opt.close_after, "TCP close after N responses per connection");
  cli.add_option("--latency-ms", opt.latency_ms, "Delay before each response");
  cli.add_option("--unregistered", opt.unregistered, "Token answered 410 (repeatable)");
  cli.add_flag("--silent", opt.silent, "Answer nothing at all, not even PING");
  cli.add_option("--log-level", opt.log_level, "debug|info|warn|error")->capture_default_str();
}

// The faults of the command line: the flags, then --unregistered, then --faults over them; none
// (and a message on stderr) when they do not parse.
std::optional<apns_sim::FaultSettings> initial_faults(const Options& opt) {
  apns_sim::FaultSettings faults;
  faults.max_concurrent_streams = opt.max_concurrent_streams;
  faults.goaway_after_streams = opt.goaway_after;
  faults.close_after_streams = opt.close_after;
  faults.latency = std::chrono::milliseconds(opt.latency_ms);
  faults.silent = opt.silent;
  try {
    nlohmann::json tokens = nlohmann::json::array();
    for (const auto& t : opt.unregistered) tokens.push_back(t);
    if (!tokens.empty()) apns_sim::apply_fault_patch(faults, {{"unregistered", tokens}});
    if (!opt.faults_json.empty()) {
      apns_sim::apply_fault_patch(faults, nlohmann::json::parse(opt.faults_json));
    }
  } catch (const std::exception& e) {
    std::cerr << "apns-sim: bad faults: " << e.what() << "\n";
    return std::nullopt;
  }
  return faults;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"apns-sim: an HTTP/2 APNs simulator with fault injection (loopback only)",
               "apns-sim"};
  Options opt;
  add_options(cli, opt);
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  if (!opt.no_client_cert && opt.client_ca.empty()) {
    std::cerr << "apns-sim: --client-ca is required (or --no-client-cert)\n";
    return 2;
  }
  mp::log::Level level{};
  if (!mp::log::parse_level(opt.log_level, level)) {
    std::cerr << "apns-sim: bad --log-level\n";
    return 2;
  }
  mp::log::set_level(level);

  boost::system::error_code ec;
  const auto address = asio::ip::make_address(opt.listen, ec);
  if (ec || !address.is_loopback()) {
    std::cerr << "apns-sim: --listen must be a loopback address\n";
    return 2;
  }

  auto initial = initial_faults(opt);
  if (!initial) return 2;
  const apns_sim::FaultSettings& faults = *initial;

  raise_open_file_limit();
  SimState state(faults, opt.max_recorded, opt.seed);
  apns_sim::ServerConfig config;
  config.environment = opt.environment == "production" ? apns_sim::Environment::production
                                                       : apns_sim::Environment::development;
  config.require_client_cert = !opt.no_client_cert;

  ssl::context tls(ssl::context::tls_server);  // outlives the io_context and its connections
  asio::io_context io(static_cast<int>(opt.threads));
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<apns_sim::ControlServer> control;
  try {
    configure_tls(tls, opt, state);
    acceptor = std::make_unique<tcp::acceptor>(io, tcp::endpoint(address, opt.port));
    control = std::make_unique<apns_sim::ControlServer>(
        io, tcp::endpoint(address, opt.control_port), state);
  } catch (const std::exception& e) {
    std::cerr << "apns-sim: cannot start: " << e.what() << "\n";
    return 1;
  }
  asio::co_spawn(io, accept_loop(*acceptor, tls, state, config), asio::detached);
  control->start();

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });

  const nlohmann::json ready = {{"ready", true},
                                {"h2_port", acceptor->local_endpoint().port()},
                                {"control_port", control->port()},
                                {"environment", opt.environment},
                                {"client_cert", opt.no_client_cert ? "none" : "required"},
                                {"pid", ::getpid()}};
  std::cout << ready.dump() << std::endl;

  std::vector<std::thread> workers;
  for (unsigned i = 1; i < opt.threads; ++i) workers.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : workers) t.join();
  mp::log::info("apns_sim.stopped", {{"stats", state.stats_json()}});
  return 0;
}
