// graph-sim child processes for integration tests.
#include "test_graph_sim.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <stdexcept>

namespace mp::test {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

GraphSimProcess::GraphSimProcess(std::vector<std::string> extra)
    : dir_(make_temp_dir("graph-sim")) {
  std::vector<std::string> args = {"--ca", dev_tls().ca_cert.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  process_.emplace(binary_dir() / "tools/graph_sim/graph-sim", args, dir_ / "graph-sim.log");
  const auto line = process_->wait_for_log("\"ready\":true", 20s);
  if (!line) throw std::runtime_error("graph-sim did not start: " + process_->log());
  control_port_ = json::parse(*line).at("control_port").get<std::uint16_t>();
}

GraphSimProcess::~GraphSimProcess() {
  stop_simulator(process_, dir_);
}

json GraphSimProcess::control(const std::string& method, const std::string& path, const json& body,
                              int* status, std::chrono::seconds max_time) const {
  const fs::path out = dir_ / "control.json";
  fs::remove(out);
  std::vector<std::string> argv = {"timeout",    std::to_string(max_time.count() + 10),
                                   "curl",       "-sS",
                                   "--max-time", std::to_string(max_time.count()),
                                   "-X",         method,
                                   "-o",         out.string(),
                                   "-w",         "%{http_code}"};
  if (!body.is_null()) argv.insert(argv.end(), {"--data-binary", body.dump()});
  argv.push_back("http://127.0.0.1:" + std::to_string(control_port_) + path);
  std::string output;
  if (run_command(argv, &output) != 0) throw std::runtime_error("control call failed: " + output);
  if (status) *status = std::stoi(output.substr(output.size() - 3));
  const std::string text = fs::exists(out) ? read_file(out) : "";
  return text.empty() ? json() : json::parse(text);
}

json GraphSimProcess::subscribe(const std::string& notification_url,
                                const std::string& lifecycle_url, const std::string& client_state,
                                int* status) const {
  json request = {{"changeType", "created,deleted"},
                  {"resource", "me/mailFolders('inbox')/messages?$filter=isRead eq false"},
                  {"notificationUrl", notification_url},
                  {"clientState", client_state},
                  {"tenantId", "84bd8158-6d4d-4958-8b9f-9d6445542f95"},
                  {"userId", "622eaaff-0683-4862-9de4-f2ec83c2bd98"}};
  if (!lifecycle_url.empty()) request["lifecycleNotificationUrl"] = lifecycle_url;
  return control("POST", "/v1.0/subscriptions", request, status);
}

json GraphSimProcess::notify(
    const std::string& subscription,
    const std::vector<std::pair<std::string, std::string>>& changes) const {
  json list = json::array();
  for (const auto& [type, id] : changes) list.push_back({{"changeType", type}, {"id", id}});
  return control("POST", "/v1.0/subscriptions/" + subscription + "/notify", {{"changes", list}});
}

json GraphSimProcess::lifecycle(const std::string& subscription, const std::string& event) const {
  return control("POST", "/v1.0/subscriptions/" + subscription + "/lifecycle",
                 {{"lifecycleEvent", event}});
}

}  // namespace mp::test
