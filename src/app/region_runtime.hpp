// What both binaries build from a region file: database options, schema readiness, exit codes.
#pragma once

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

}  // namespace mp::app
