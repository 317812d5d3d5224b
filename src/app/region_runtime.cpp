// Shared start-up pieces of mailpushd and mailpushctl.
#include "app/region_runtime.hpp"

namespace mp::app {

Result<store::ConnectionOptions> connection_options(const config::DatabaseConfig& db) {
  auto password = config::database_password(db);
  if (!password) return std::move(password).error();
  store::ConnectionOptions o;
  o.host = db.host;
  o.port = db.port;
  // A failover list (database.hosts with more than one server: a Galera cluster's nodes).
  if (db.hosts.size() > 1) {
    for (const auto& h : db.hosts) o.hosts.push_back(store::ServerAddress{h.host, h.port});
  }
  if (db.socket) o.socket = db.socket->string();
  o.user = db.user;
  o.password = std::move(*password);
  o.database = db.name;
  o.connect_timeout = db.connect_timeout;
  o.query_timeout = db.query_timeout;
  return o;
}

store::PoolOptions pool_options(const config::DatabaseConfig& db) {
  store::PoolOptions p;
  p.threads = db.pool_size;
  p.queue_limit = db.queue_limit;
  return p;
}

std::string readiness_problem(const Result<store::SchemaState>& state) {
  if (!state) return state.error().message;
  const auto& s = *state;
  if (s.newer_than_binary()) {
    return "database schema version " + std::to_string(s.current_version) +
           " is newer than this binary's " + std::to_string(s.known_version) +
           ": run the matching mailpush release";
  }
  if (!s.problems.empty()) return s.problems.front();
  if (!s.pending.empty()) {
    std::string list;
    for (int v : s.pending) list += (list.empty() ? "" : ", ") + std::to_string(v);
    return "database schema needs migration (pending: " + list + "): run `mailpushctl migrate`";
  }
  return "";
}

std::optional<ReadinessCache::Answer> ReadinessCache::get(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  const bool refresh_running = refreshing_ && now - refresh_started_ < 10 * max_age_;
  if (answer_ && (now - at_ < max_age_ || refresh_running)) return answer_;
  refreshing_ = true;
  refresh_started_ = now;
  return std::nullopt;
}

bool ReadinessCache::store(Answer answer, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  const bool changed = !answer_ || answer_->problem != answer.problem;
  answer_ = std::move(answer);
  at_ = now;
  refreshing_ = false;
  return changed;
}

}  // namespace mp::app
