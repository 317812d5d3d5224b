// SimState: the simulator's counters, records and faults behind one mutex.
#include "sim_state.hpp"

namespace apns_sim {

using nlohmann::json;

SimState::SimState(FaultSettings initial, std::size_t max_recorded, std::uint64_t seed)
    : initial_(std::move(initial)),
      faults_(std::make_shared<const FaultSettings>(initial_)),
      next_statuses_(initial_.next_statuses.begin(), initial_.next_statuses.end()),
      rng_(seed),
      max_recorded_(max_recorded) {}

std::shared_ptr<const FaultSettings> SimState::faults() const {
  const std::lock_guard lock(mutex_);
  return faults_;
}

void SimState::patch_faults(const json& patch) {
  {
    const std::lock_guard lock(mutex_);
    FaultSettings next = *faults_;
    next.next_statuses.assign(next_statuses_.begin(), next_statuses_.end());
    apply_fault_patch(next, patch);  // throws before anything changes
    next_statuses_.assign(next.next_statuses.begin(), next.next_statuses.end());
    faults_ = std::make_shared<const FaultSettings>(std::move(next));
  }
  notify_connections();
}

void SimState::reset() {
  {
    const std::lock_guard lock(mutex_);
    faults_ = std::make_shared<const FaultSettings>(initial_);
    next_statuses_.assign(initial_.next_statuses.begin(), initial_.next_statuses.end());
    accepted_.clear();
    counters_ = Counters{};
  }
  notify_connections();
}

void SimState::notify_connections() {
  std::vector<std::shared_ptr<FaultListener>> live;
  {
    const std::lock_guard lock(mutex_);
    for (const auto& [id, weak] : connections_) {
      if (auto l = weak.lock()) live.push_back(std::move(l));
    }
  }
  for (const auto& l : live) l->on_faults_changed();
}

std::optional<InjectedFault> SimState::decide_fault(const std::string& token) {
  const std::lock_guard lock(mutex_);
  auto error_for = [](int status) {
    switch (status) {
      case 429:
        return InjectedFault{429, "TooManyRequests", std::nullopt};
      case 500:
        return InjectedFault{500, "InternalServerError", std::nullopt};
      default:
        return InjectedFault{503, "ServiceUnavailable", std::nullopt};
    }
  };
  if (!next_statuses_.empty()) {
    const int status = next_statuses_.front();
    next_statuses_.pop_front();
    return error_for(status);
  }
  const FaultSettings& f = *faults_;
  if (f.rate_429 + f.rate_500 + f.rate_503 > 0) {
    const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
    if (u < f.rate_429) return error_for(429);
    if (u < f.rate_429 + f.rate_500) return error_for(500);
    if (u < f.rate_429 + f.rate_500 + f.rate_503) return error_for(503);
  }
  if (const auto it = f.unregistered.find(token); it != f.unregistered.end()) {
    return InjectedFault{410, "Unregistered", it->second};
  }
  if (f.bad_device_tokens.count(token)) return InjectedFault{400, "BadDeviceToken", std::nullopt};
  return std::nullopt;
}

std::uint64_t SimState::record_accepted(AcceptedNotification n) {
  const std::lock_guard lock(mutex_);
  n.seq = next_seq_++;
  ++counters_.accepted;
  if (max_recorded_ == 0) return n.seq;
  if (accepted_.size() >= max_recorded_) accepted_.pop_front();
  accepted_.push_back(std::move(n));
  return accepted_.back().seq;
}

std::uint64_t SimState::connection_opened(std::weak_ptr<FaultListener> listener) {
  const std::lock_guard lock(mutex_);
  const std::uint64_t id = next_connection_id_++;
  ++counters_.connections_total;
  connections_.emplace(id, std::move(listener));
  return id;
}

void SimState::connection_closed(std::uint64_t id) {
  const std::lock_guard lock(mutex_);
  connections_.erase(id);
}

void SimState::handshake_failed(const std::string& why) {
  const std::lock_guard lock(mutex_);
  ++counters_.handshakes_failed;
  ++counters_.handshake_failures[why];
}

void SimState::stream_begun() {
  const std::lock_guard lock(mutex_);
  ++counters_.streams;
}

void SimState::stream_refused() {
  const std::lock_guard lock(mutex_);
  ++counters_.streams_refused;
}

void SimState::response_sent(int status, const std::string& reason) {
  const std::lock_guard lock(mutex_);
  ++counters_.responses;
  ++counters_.by_status[status];
  if (!reason.empty()) ++counters_.by_reason[reason];
}

void SimState::goaway_sent() {
  const std::lock_guard lock(mutex_);
  ++counters_.goaways_sent;
}

void SimState::abrupt_close() {
  const std::lock_guard lock(mutex_);
  ++counters_.abrupt_closes;
}

json SimState::stats_json() const {
  const std::lock_guard lock(mutex_);
  json by_status = json::object();
  for (const auto& [status, n] : counters_.by_status) by_status[std::to_string(status)] = n;
  return {
      {"connections_open", connections_.size()},
      {"connections_total", counters_.connections_total},
      {"handshakes_failed", counters_.handshakes_failed},
      {"handshake_failures", counters_.handshake_failures},
      {"streams", counters_.streams},
      {"streams_refused", counters_.streams_refused},
      {"responses", counters_.responses},
      {"accepted", counters_.accepted},
      {"by_status", by_status},
      {"by_reason", counters_.by_reason},
      {"goaways_sent", counters_.goaways_sent},
      {"abrupt_closes", counters_.abrupt_closes},
      {"recorded", accepted_.size()},
      {"next_seq", next_seq_},
  };
}

json SimState::accepted_json(std::uint64_t since, std::size_t limit) const {
  const std::lock_guard lock(mutex_);
  json records = json::array();
  // Records are in seq order: skip the older ones by position.
  std::size_t start = 0;
  if (!accepted_.empty() && since >= accepted_.front().seq) {
    start = static_cast<std::size_t>(since - accepted_.front().seq + 1);
  }
  std::uint64_t last = since;
  for (std::size_t i = start; i < accepted_.size() && records.size() < limit; ++i) {
    const auto& n = accepted_[i];
    json headers = json::object();
    for (const auto& [k, v] : n.headers) headers[k] = v;
    records.push_back({{"seq", n.seq},
                       {"connection", n.connection_id},
                       {"stream", n.stream_id},
                       {"token", n.token},
                       {"topic", n.topic},
                       {"payload", n.payload},
                       {"apns_id", n.apns_id},
                       {"headers", headers},
                       {"client_subject", n.client_subject},
                       {"received_ms", n.received_ms}});
    last = n.seq;
  }
  return {{"records", records}, {"last_seq", last}};
}

}  // namespace apns_sim
