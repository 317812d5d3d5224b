// apns-sim child processes for integration tests.
#include "test_apns_sim.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace mp::test {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

const fs::path& apns_test_certs() {
  static std::once_flag once;
  static fs::path dir;
  std::call_once(once, [] {
    dir = binary_dir() / "test-apns-certs";
    std::string out;
    const int rc = run_command(
        {(source_dir() / "certs/make-apns-test-certs.sh").string(), dir.string()}, &out);
    if (rc != 0) throw std::runtime_error("make-apns-test-certs.sh failed: " + out);
  });
  return dir;
}

ApnsSimProcess::ApnsSimProcess(std::vector<std::string> extra, bool client_cert)
    : dir_(make_temp_dir("apns-sim")) {
  const fs::path& c = apns_test_certs();
  std::vector<std::string> args = {"--cert", (c / "server.crt").string(), "--key",
                                   (c / "server.key").string()};
  if (client_cert) {
    args.insert(args.end(), {"--client-ca", (c / "apple-ca.crt").string()});
  } else {
    args.push_back("--no-client-cert");
  }
  args.insert(args.end(), extra.begin(), extra.end());
  process_.emplace(binary_dir() / "tools/apns_sim/apns-sim", args, dir_ / "apns-sim.log");
  const auto line = process_->wait_for_log("\"ready\":true", 20s);
  if (!line) throw std::runtime_error("apns-sim did not start: " + process_->log());
  const json ready = json::parse(*line);
  h2_port_ = ready.at("h2_port").get<std::uint16_t>();
  control_port_ = ready.at("control_port").get<std::uint16_t>();
}

ApnsSimProcess::~ApnsSimProcess() {
  stop_simulator(process_, dir_);
}

json ApnsSimProcess::control(const std::string& method, const std::string& path,
                             const std::string& body, int* status) const {
  const fs::path out = dir_ / "control.json";
  std::vector<std::string> argv = {"timeout", "20", "curl",       "-sS", "--max-time",  "10", "-X",
                                   method,    "-o", out.string(), "-w",  "%{http_code}"};
  if (!body.empty()) argv.insert(argv.end(), {"--data-binary", body});
  argv.push_back("http://127.0.0.1:" + std::to_string(control_port_) + path);
  std::string output;
  if (run_command(argv, &output) != 0) throw std::runtime_error("control call failed: " + output);
  if (status) *status = std::stoi(output.substr(output.size() - 3));
  return json::parse(read_file(out));
}

std::vector<std::string> ApnsSimProcess::accepted_tokens() const {
  const json a = control("GET", "/accepted?limit=1000000");
  std::vector<std::string> out;
  for (const auto& r : a["records"]) out.push_back(r["token"].get<std::string>());
  return out;
}

bool ApnsSimProcess::wait_for_stat(const std::string& key, const json& value,
                                   std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (stats()[key] != value) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

}  // namespace mp::test
