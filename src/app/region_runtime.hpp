// What both binaries build from a region file: database options, schema readiness, exit codes.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "common/result.hpp"
#include "config/region_config.hpp"
#include "store/database_pool.hpp"
#include "store/migrations.hpp"

namespace mp::app {

// Exit codes shared by mailpushd and mailpushctl, so scripts can tell failures apart.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,
  kExitUsage = 2,
  kExitDatabaseUnavailable = 3,
  kExitSchemaConflict = 4,    // schema newer than the binary, or applied migrations changed
  kExitMigrationPending = 5,  // status: migrations not applied yet
  kExitNotFound = 6,          // mailpushctl: the customer, device or mailbox named does not exist
  kExitProblemsFound = 7,     // mailpushctl doctor / certs test: a check failed
  kExitConfig = 78,           // EX_CONFIG: the region file is wrong
};

// Connection settings from the region's database block, password included (from env or file).
Result<store::ConnectionOptions> connection_options(const config::DatabaseConfig& db);

store::PoolOptions pool_options(const config::DatabaseConfig& db);

// Why the database is not ready to serve, or an empty string when it is.
std::string readiness_problem(const Result<store::SchemaState>& state);

// The last readiness answer, so that probes (anyone who reaches the listener can send them) ask
// the database at most once per `max_age`, and a change is logged once rather than per probe.
class ReadinessCache {
 public:
  using Clock = std::chrono::steady_clock;
  struct Answer {
    std::string problem;  // "" when ready
    std::int64_t schema_version = 0;
  };
  explicit ReadinessCache(std::chrono::milliseconds max_age) : max_age_(max_age) {}
  // The cached answer while it is fresh, or while another probe refreshes it; nullopt: the caller
  // asks the database and calls store().
  std::optional<Answer> get(Clock::time_point now);
  // Keeps the answer; true when its problem differs from the previous one (log it).
  bool store(Answer answer, Clock::time_point now);

 private:
  std::chrono::milliseconds max_age_;
  std::mutex mutex_;
  std::optional<Answer> answer_;
  Clock::time_point at_{};
  bool refreshing_ = false;  // since refresh_started_ (a refresh that never stored is retried)
  Clock::time_point refresh_started_{};
};

}  // namespace mp::app
