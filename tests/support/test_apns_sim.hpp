// apns-sim as a child process for integration tests: the test certificates it needs, start-up
// (waits for its ready line), the JSON control API through curl, and a clean stop.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "test_env.hpp"

namespace mp::test {

// The APNs test certificates (certs/make-apns-test-certs.sh), made once per build tree; the
// script is idempotent and locks, so concurrent test binaries share one folder.
const std::filesystem::path& apns_test_certs();

class ApnsSimProcess {
 public:
  // `extra` goes after the certificate options; `client_cert` false starts --no-client-cert.
  explicit ApnsSimProcess(std::vector<std::string> extra = {}, bool client_cert = true);
  // SIGTERM; a clean exit (status 0, so no sanitizer report in the asan build) is expected.
  ~ApnsSimProcess();
  ApnsSimProcess(const ApnsSimProcess&) = delete;
  ApnsSimProcess& operator=(const ApnsSimProcess&) = delete;

  std::uint16_t h2_port() const { return h2_port_; }
  std::uint16_t control_port() const { return control_port_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::string log() const { return process_->log(); }

  // The control API; `status` gets the HTTP status when given.
  nlohmann::json control(const std::string& method, const std::string& path,
                         const std::string& body = "", int* status = nullptr) const;
  nlohmann::json stats() const { return control("GET", "/stats"); }
  // Every accepted token, in arrival order.
  std::vector<std::string> accepted_tokens() const;
  // Polls /stats until `key` equals `value`.
  bool wait_for_stat(const std::string& key, const nlohmann::json& value,
                     std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  std::filesystem::path dir_;
  std::optional<ChildProcess> process_;
  std::uint16_t h2_port_ = 0, control_port_ = 0;
};

}  // namespace mp::test
