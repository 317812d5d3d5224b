// graph-sim (tools/graph_sim) as a child process for integration tests: it trusts the test
// listener's CA, starts (waits for its ready line), takes control calls through curl and stops
// cleanly. The subscription calls take Graph's request shape (see tools/graph_sim/control_api.hpp).
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

class GraphSimProcess {
 public:
  // `extra` goes after --ca (e.g. shorter timeouts and retry delays).
  explicit GraphSimProcess(std::vector<std::string> extra = {});
  // SIGTERM; a clean exit is expected.
  ~GraphSimProcess();
  GraphSimProcess(const GraphSimProcess&) = delete;
  GraphSimProcess& operator=(const GraphSimProcess&) = delete;

  std::uint16_t control_port() const { return control_port_; }
  std::string log() const { return process_->log(); }

  // A control call; `status` gets the HTTP status when given. Deliveries answer when they end
  // (retries included), so the call may take up to `max_time`.
  nlohmann::json control(const std::string& method, const std::string& path,
                         const nlohmann::json& body = nullptr, int* status = nullptr,
                         std::chrono::seconds max_time = std::chrono::seconds(60)) const;
  // POST /v1.0/subscriptions as the app would; the reply (its "id" when `status` is 201).
  nlohmann::json subscribe(const std::string& notification_url, const std::string& lifecycle_url,
                           const std::string& client_state, int* status = nullptr) const;
  // One batch of changes ({changeType, id} pairs); the delivery's outcome.
  nlohmann::json notify(const std::string& subscription,
                        const std::vector<std::pair<std::string, std::string>>& changes) const;
  nlohmann::json lifecycle(const std::string& subscription, const std::string& event) const;
  nlohmann::json stats() const { return control("GET", "/stats"); }

 private:
  std::filesystem::path dir_;
  std::optional<ChildProcess> process_;
  std::uint16_t control_port_ = 0;
};

}  // namespace mp::test
