// RAII wrappers over MariaDB Connector/C: a connection, its prepared statements and their rows.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "common/result.hpp"

struct st_mysql;
struct st_mysql_stmt;

namespace mp::store {

struct ServerAddress {
  std::string host;
  std::uint16_t port = 3306;
  std::string describe() const;  // "host:port", "[v6]:port"
};

struct ConnectionOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 3306;
  // When not empty, the servers in failover order (the nodes of a Galera cluster), and host/port
  // are not used: connect() takes the first one that answers and is ready for use — Synced in
  // the primary component; a donor only when no node is Synced — starting with the one that
  // worked last time.
  std::vector<ServerAddress> hosts;
  std::optional<std::string> socket;  // Unix socket instead of TCP when set
  std::string user;
  std::string password;
  std::string database;
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds query_timeout{10000};
  // Prepared statements a connection keeps (least recently used closed first). The server's
  // max_prepared_stmt_count is shared by every client: connections × this must stay well below.
  std::size_t statement_cache_size = 64;

  // "mailpush@127.0.0.1:3307 (database mailpush_dev)", with every server of a failover list:
  // for messages; never the password.
  std::string describe() const;
  // The servers connect() tries: `hosts`, else host/port (empty with a socket).
  std::vector<ServerAddress> servers() const;
};

// Binary data, bound as a BLOB so no character-set conversion touches it.
struct Blob {
  std::string bytes;
};
struct Null {};

using Value = std::variant<Null, std::int64_t, std::string, Blob>;

// One result row; every column arrives as its text (or bytes for binary columns).
class Row {
 public:
  explicit Row(std::vector<std::optional<std::string>> columns) : columns_(std::move(columns)) {}
  std::size_t size() const noexcept { return columns_.size(); }
  bool is_null(std::size_t i) const { return !columns_.at(i).has_value(); }
  const std::string& text(std::size_t i) const;  // "" for NULL
  std::int64_t i64(std::size_t i) const;         // 0 for NULL; throws on non-numbers (a bug)
  std::optional<std::int64_t> opt_i64(std::size_t i) const;

 private:
  std::vector<std::optional<std::string>> columns_;
};

class Connection;

// What the connections of this process hold and did with prepared statements (all connections
// together), for the metrics: a count that keeps growing, or evictions in steady state, means SQL
// text that varies per call is being prepared.
struct StatementStats {
  std::int64_t open = 0;       // prepared on the server now
  std::uint64_t prepared = 0;  // ever prepared
  std::uint64_t evicted = 0;   // closed to make room in a full cache
};
StatementStats statement_stats() noexcept;

// A prepared statement, owned and cached by its Connection.
class Statement {
 public:
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Executes with these parameters and buffers the whole result (if any) client-side.
  Result<std::vector<Row>> query(std::span<const Value> params);
  // Executes a statement without a result set; returns the affected row count.
  Result<std::uint64_t> execute(std::span<const Value> params);
  std::uint64_t last_insert_id() const;

 private:
  friend class Connection;
  Statement(Connection& owner, st_mysql_stmt* stmt, std::string sql);
  Status bind_and_run(std::span<const Value> params);
  Error fail(std::string_view what);

  Connection& owner_;
  st_mysql_stmt* stmt_;
  std::string sql_;  // the cache's key
};

// One client connection. Not thread-safe: a connection belongs to one database thread.
class Connection {
 public:
  explicit Connection(ConnectionOptions options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Status connect();
  void close() noexcept;
  bool connected() const noexcept { return handle_ != nullptr; }
  // True after an error that means the connection is gone (server restarted, network cut).
  bool broken() const noexcept { return broken_; }
  Status ping();
  std::string server_version() const;

  // Text protocol, nothing prepared: DDL, statements without parameters, and SQL whose text is
  // built from values per call (literals escaped with quote(); integers with std::to_string).
  Status execute(std::string_view sql);
  Result<std::uint64_t> execute_text(std::string_view sql);  // the affected (matched) rows
  Result<std::vector<Row>> query(std::string_view sql);

  // Prepared statements, cached per connection by their SQL text, at most
  // options().statement_cache_size of them: the least recently used one is closed to make room.
  // Only for text from a fixed set of shapes (values go in parameters; variable-length id lists
  // in the padded shapes of sql_util.hpp): a text that varies per call would be prepared anew
  // every time. A returned Statement* stays valid until statement_cache_size other statements
  // have been prepared on this connection, or it is closed.
  Result<Statement*> prepare(std::string_view sql);
  Result<std::vector<Row>> query(std::string_view sql, std::span<const Value> params);
  Result<std::vector<Row>> query(std::string_view sql, std::initializer_list<Value> params) {
    return query(sql, std::span<const Value>(params.begin(), params.size()));
  }
  Result<std::uint64_t> execute(std::string_view sql, std::span<const Value> params);
  Result<std::uint64_t> execute(std::string_view sql, std::initializer_list<Value> params) {
    return execute(sql, std::span<const Value>(params.begin(), params.size()));
  }

  // Several statements in one round trip (text protocol): the affected rows of each (matched
  // rows for UPDATE, as the connection sets CLIENT_FOUND_ROWS). Stops at the first statement
  // that fails and returns its error; what ran before it stays as it is (roll back if needed).
  Result<std::vector<std::uint64_t>> execute_batch(std::string_view sql);
  // `text` as a quoted SQL string literal, escaped for this connection (connected only).
  std::string quote(std::string_view text) const;

  Status begin() { return execute("START TRANSACTION"); }
  Status commit() { return execute("COMMIT"); }
  Status rollback() { return execute("ROLLBACK"); }

  const ConnectionOptions& options() const noexcept { return options_; }
  // The server this connection is (or was last) connected to: "127.0.0.1:3321", or the socket.
  std::string server() const;
  std::size_t cached_statements() const noexcept { return statements_.size(); }
  // Connections of one pool share which server worked last: a connection that reconnects starts
  // there, not at the one it last used itself (which may be the node the others left).
  void share_server_choice(std::shared_ptr<std::atomic<std::size_t>> choice) noexcept {
    shared_choice_ = std::move(choice);
  }

 private:
  friend class Statement;
  // Turns the client library's last error into an Error and notes a lost connection.
  Error error_from(unsigned int code, std::string_view message, std::string_view what);
  Error last_error(std::string_view what);

  // Opens one server of the list; null and `error` set when it cannot be used.
  st_mysql* open_server(const ServerAddress* server, Error& error, bool& only_as_fallback);
  // Closes the least recently used statements until at most `keep` remain.
  void evict_statements(std::size_t keep) noexcept;
  Result<st_mysql_stmt*> prepare_on_server(std::string_view sql);

  ConnectionOptions options_;
  st_mysql* handle_ = nullptr;
  bool broken_ = false;
  std::size_t current_ = 0;  // index in options_.servers() of the server last connected to
  std::shared_ptr<std::atomic<std::size_t>> shared_choice_;  // the pool's, when it has one
  // Most recently used first; the index points into it by the statements' own SQL text.
  std::list<std::unique_ptr<Statement>> statements_;
  std::unordered_map<std::string_view, std::list<std::unique_ptr<Statement>>::iterator>
      statement_index_;
};

// Whether a MariaDB client/server error number means "the connection is gone" — or, on a
// Galera node, that the node cannot serve (ER_UNKNOWN_COM_ERROR 1047, "WSREP has not yet prepared
// node for application use": not in the primary component, or still joining): either way the
// connection is dropped and the next job connects again, to another node when there is one.
bool is_connection_lost(unsigned int mysql_errno) noexcept;

// How a Galera node's wsrep status reads for a client: `SHOW GLOBAL STATUS` values of
// wsrep_ready, wsrep_cluster_status and wsrep_local_state (the last absent on a server without
// Galera). Pure, for tests.
enum class NodeReadiness {
  ready,     // not a Galera node, or Synced in the primary component
  fallback,  // in the primary component and ready, but a donor or still catching up
  not_ready  // not in the primary component, not ready, joining
};
NodeReadiness node_readiness(const std::optional<std::string>& wsrep_ready,
                             const std::optional<std::string>& cluster_status,
                             const std::optional<std::string>& local_state);

// "YYYY-MM-DD HH:MM:SS" in UTC (whole seconds): a DATETIME value for a parameter.
std::string sql_datetime(std::chrono::system_clock::time_point t);

}  // namespace mp::store
