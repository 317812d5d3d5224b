// graph-sim: a Microsoft Graph change-notification simulator for tests, the demo and benchmarks
// (as apns-sim is for APNs). Parses the command line, sets up the TLS client (the endpoint is
// verified against --ca and the URL's host name; loopback addresses only) and the control port,
// prints one ready line on stdout and runs on one thread until SIGINT/SIGTERM.
#include <openssl/ssl.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <iostream>

#include "common/log.hpp"
#include "control_api.hpp"
#include "https_client.hpp"
#include "simulator.hpp"

namespace {

namespace asio = boost::asio;
using graph_sim::milliseconds;

struct Options {
  std::string listen = "127.0.0.1";
  std::uint16_t control_port = 0;
  std::string ca;
  std::vector<std::string> resolve;
  unsigned connections = 64;
  std::uint64_t seed = 1;
  std::string log_level = "info";
  std::int64_t validation_timeout_ms = 10'000, answer_timeout_ms = 10'000;
  std::int64_t retry_base_ms = 1'000, retry_cap_ms = 60'000;
  unsigned max_attempts = 5;
  std::int64_t slow_ms = 3'000, drop_ms = 10'000, window_ms = 600'000, penalty_ms = 600'000;
  std::int64_t slow_delay_ms = 600'000;
  std::size_t min_answers = 20;
};

void add_options(CLI::App& cli, Options& o) {
  cli.add_option("--listen", o.listen, "Loopback address of the control port")
      ->capture_default_str();
  cli.add_option("--control-port", o.control_port, "Control HTTP/1.1 port; 0 picks one");
  cli.add_option("--ca", o.ca, "CA that signed the endpoints' TLS certificates (PEM)")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--resolve", o.resolve,
                 "HOST=ADDRESS: connect to this loopback address for URLs naming HOST "
                 "(repeatable; localhost=127.0.0.1 is built in)");
  cli.add_option("--connections", o.connections, "Keep-alive connections per endpoint")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  cli.add_option("--validation-timeout-ms", o.validation_timeout_ms,
                 "Graph: the validation answer within 10 s")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();
  cli.add_option("--answer-timeout-ms", o.answer_timeout_ms,
                 "A notification unanswered this long is a timeout (then retried)")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();
  cli.add_option("--retry-base-ms", o.retry_base_ms, "First retry delay (doubles each retry)")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  cli.add_option("--retry-cap-ms", o.retry_cap_ms, "Longest retry delay")
      ->check(CLI::Range(1, 3'600'000))
      ->capture_default_str();
  cli.add_option("--max-attempts", o.max_attempts, "Attempts per delivery before giving up")
      ->check(CLI::Range(1u, 100u))
      ->capture_default_str();
  cli.add_option("--slow-ms", o.slow_ms, "An answer slower than this is slow (Graph: 3 s)")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();
  cli.add_option("--drop-ms", o.drop_ms, "An answer this slow counts toward drop (Graph: 10 s)")
      ->check(CLI::Range(1, 600'000))
      ->capture_default_str();
  cli.add_option("--window-ms", o.window_ms, "The window an endpoint is judged over")
      ->check(CLI::Range(1, 86'400'000))
      ->capture_default_str();
  cli.add_option("--min-answers", o.min_answers, "Answers in the window before any judgement")
      ->capture_default_str();
  cli.add_option("--penalty-ms", o.penalty_ms, "How long a slow or drop judgement lasts")
      ->check(CLI::Range(1, 86'400'000))
      ->capture_default_str();
  cli.add_option("--slow-delay-ms", o.slow_delay_ms, "How long a slow endpoint's sends wait")
      ->check(CLI::Range(0, 86'400'000))
      ->capture_default_str();
  cli.add_option("--seed", o.seed, "Seed of ids, tokens and jitter")->capture_default_str();
  cli.add_option("--log-level", o.log_level, "debug|info|warn|error")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"graph-sim: a Microsoft Graph change-notification simulator (loopback only)",
               "graph-sim"};
  Options o;
  add_options(cli, o);
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  mp::log::Level level{};
  if (!mp::log::parse_level(o.log_level, level)) {
    std::cerr << "graph-sim: bad --log-level\n";
    return 2;
  }
  mp::log::set_level(level);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(o.listen, ec);
  if (ec || !address.is_loopback()) {
    std::cerr << "graph-sim: --listen must be a loopback address\n";
    return 2;
  }
  std::map<std::string, std::string> resolve = {{"localhost", "127.0.0.1"}};
  for (const auto& r : o.resolve) {
    const auto eq = r.find('=');
    const auto to = eq == std::string::npos ? "" : r.substr(eq + 1);
    if (eq == 0 || eq == std::string::npos || !asio::ip::make_address(to, ec).is_loopback() || ec) {
      std::cerr << "graph-sim: --resolve wants HOST=LOOPBACK-ADDRESS, not '" << r << "'\n";
      return 2;
    }
    resolve[r.substr(0, eq)] = to;
  }
  ::signal(SIGPIPE, SIG_IGN);

  graph_sim::SimOptions options;
  options.validation_timeout = milliseconds(o.validation_timeout_ms);
  options.answer_timeout = milliseconds(o.answer_timeout_ms);
  options.retry_base = milliseconds(o.retry_base_ms);
  options.retry_cap = milliseconds(o.retry_cap_ms);
  options.max_attempts = o.max_attempts;
  options.slow_delay = milliseconds(o.slow_delay_ms);
  options.classifier.slow_after = milliseconds(o.slow_ms);
  options.classifier.drop_after = milliseconds(o.drop_ms);
  options.classifier.window = milliseconds(o.window_ms);
  options.classifier.penalty = milliseconds(o.penalty_ms);
  options.classifier.min_answers = o.min_answers;

  asio::ssl::context tls(asio::ssl::context::tls_client);
  asio::io_context io(1);
  std::unique_ptr<graph_sim::ControlServer> control;
  try {
    SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
    tls.load_verify_file(o.ca);
    tls.set_verify_mode(asio::ssl::verify_peer);
  } catch (const std::exception& e) {
    std::cerr << "graph-sim: cannot load --ca " << o.ca << ": " << e.what() << "\n";
    return 1;
  }
  graph_sim::HttpsClient client(io, tls, resolve, o.connections);
  graph_sim::Simulator sim(io, client, options, o.seed);
  try {
    control = std::make_unique<graph_sim::ControlServer>(
        io, asio::ip::tcp::endpoint(address, o.control_port), sim);
  } catch (const std::exception& e) {
    std::cerr << "graph-sim: cannot listen: " << e.what() << "\n";
    return 1;
  }
  control->start();
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
  const nlohmann::json ready = {
      {"ready", true}, {"control_port", control->port()}, {"pid", ::getpid()}};
  std::cout << ready.dump() << std::endl;
  io.run();
  mp::log::info("graph_sim.stopped", {{"stats", sim.stats()}});
  return 0;
}
