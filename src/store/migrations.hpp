// Versioned SQL migrations shipped in the binary, and the schema state of a database.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

struct Migration {
  int version = 0;
  std::string name;  // from the file name: 0001_initial_schema.sql -> "initial_schema"
  std::string sql;
  std::string checksum;  // SHA-256 hex of the SQL text
};

// The migrations compiled into this binary, in version order.
const std::vector<Migration>& shipped_migrations();
int latest_schema_version();

// Splits a migration into statements at ';' outside quotes and comments.
std::vector<std::string> split_sql_statements(std::string_view sql);

struct AppliedMigration {
  int version = 0;
  std::string name;
  std::string checksum;
  std::string applied_at;
};

struct SchemaState {
  int current_version = 0;  // highest applied version (0: empty database)
  int known_version = 0;    // highest version this binary ships
  std::vector<AppliedMigration> applied;
  std::vector<int> pending;           // shipped but not applied
  std::vector<std::string> problems;  // e.g. an applied migration whose text changed
  bool newer_than_binary() const { return current_version > known_version; }
  bool up_to_date() const { return pending.empty() && !newer_than_binary() && problems.empty(); }
};

Result<SchemaState> read_schema_state(Connection& conn);

struct MigrateReport {
  int from_version = 0;
  int to_version = 0;
  std::vector<int> applied;
};

// Applies pending migrations in order under a named lock, so two instances starting at once
// do not race. Refuses a database whose schema is newer than this binary, or whose applied
// migrations differ from the shipped text. Each migration's row in schema_migrations is written
// after its statements, so an interrupted migration runs again (its statements are idempotent).
Result<MigrateReport> migrate(Connection& conn, const std::vector<Migration>& migrations);
inline Result<MigrateReport> migrate(Connection& conn) {
  return migrate(conn, shipped_migrations());
}

}  // namespace mp::store
