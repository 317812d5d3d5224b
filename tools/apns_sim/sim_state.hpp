// apns-sim's shared state: fault settings, counters, accepted notifications and the open
// connections; one mutex, since --threads N may run connections on several threads.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "apns_rules.hpp"
#include "faults.hpp"

namespace apns_sim {

struct AcceptedNotification {
  std::uint64_t seq = 0;  // arrival order, from 1, never reused (not even after /reset)
  std::uint64_t connection_id = 0;
  std::int32_t stream_id = 0;
  std::string token, topic, payload, apns_id, client_subject;
  std::vector<std::pair<std::string, std::string>> headers;  // the apns-* ones
  std::int64_t received_ms = 0;
};

// A connection's view of fault changes; called on any thread, must post to its own strand.
class FaultListener {
 public:
  virtual ~FaultListener() = default;
  virtual void on_faults_changed() = 0;
};

// The fault that decides a request APNs would otherwise accept.
struct InjectedFault {
  int status = 0;
  std::string reason;
  std::optional<std::int64_t> timestamp_ms;  // 410 only
};

class SimState {
 public:
  SimState(FaultSettings initial, std::size_t max_recorded, std::uint64_t seed);

  std::shared_ptr<const FaultSettings> faults() const;
  // Applies a POST /faults body; throws std::invalid_argument on a bad one.
  void patch_faults(const nlohmann::json& patch);
  // Counters and records cleared, faults back to the start-up ones.
  void reset();

  // For a valid request: 429/500/503 (next_statuses, then the rates), else 410 for an
  // unregistered token, else nothing (accept).
  std::optional<InjectedFault> decide_fault(const std::string& token);
  std::uint64_t record_accepted(AcceptedNotification n);

  std::uint64_t connection_opened(std::weak_ptr<FaultListener> listener);
  void connection_closed(std::uint64_t id);
  void handshake_failed(const std::string& why);
  void stream_begun();
  void stream_refused();
  void response_sent(int status, const std::string& reason);
  void goaway_sent();
  void abrupt_close();

  nlohmann::json stats_json() const;
  // Records with seq > since, oldest first, at most `limit`.
  nlohmann::json accepted_json(std::uint64_t since, std::size_t limit) const;

 private:
  void notify_connections();

  mutable std::mutex mutex_;
  const FaultSettings initial_;
  std::shared_ptr<const FaultSettings> faults_;
  std::deque<int> next_statuses_;
  std::mt19937_64 rng_;
  const std::size_t max_recorded_;
  std::deque<AcceptedNotification> accepted_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t next_connection_id_ = 1;
  std::map<std::uint64_t, std::weak_ptr<FaultListener>> connections_;

  struct Counters {
    std::uint64_t connections_total = 0, handshakes_failed = 0, streams = 0, streams_refused = 0,
                  accepted = 0, responses = 0, goaways_sent = 0, abrupt_closes = 0;
    std::map<int, std::uint64_t> by_status;
    std::map<std::string, std::uint64_t> by_reason;
    std::map<std::string, std::uint64_t> handshake_failures;
  } counters_;
};

}  // namespace apns_sim
