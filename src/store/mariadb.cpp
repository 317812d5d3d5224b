// Connector/C calls behind the RAII types of mariadb.hpp; errors become values with the server's
// reason.
#include "store/mariadb.hpp"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <ctime>
#include <mutex>
#include <stdexcept>

namespace mp::store {
namespace {

void library_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { mysql_library_init(0, nullptr, nullptr); });
}

std::atomic<std::int64_t> g_open_statements{0};
std::atomic<std::uint64_t> g_prepared_statements{0};
std::atomic<std::uint64_t> g_evicted_statements{0};

unsigned int seconds_ceil(std::chrono::milliseconds ms) {
  const auto s = (ms.count() + 999) / 1000;
  return static_cast<unsigned int>(s < 1 ? 1 : s);
}

}  // namespace

StatementStats statement_stats() noexcept {
  return {g_open_statements.load(std::memory_order_relaxed),
          g_prepared_statements.load(std::memory_order_relaxed),
          g_evicted_statements.load(std::memory_order_relaxed)};
}

bool is_connection_lost(unsigned int code) noexcept {
  switch (code) {
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_SERVER_LOST_EXTENDED:
    case CR_COMMANDS_OUT_OF_SYNC:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case 4031:  // ER_CLIENT_INTERACTION_TIMEOUT: the server closed an idle connection
    case ER_UNKNOWN_COM_ERROR:  // 1047: a Galera node not ready for use (non-primary, joining)
      return true;
    default:
      return false;
  }
}

NodeReadiness node_readiness(const std::optional<std::string>& wsrep_ready,
                             const std::optional<std::string>& cluster_status,
                             const std::optional<std::string>& local_state) {
  if (!local_state) return NodeReadiness::ready;  // no Galera provider: a plain server
  if (wsrep_ready != "ON" || cluster_status != "Primary") return NodeReadiness::not_ready;
  if (*local_state == "4") return NodeReadiness::ready;  // Synced
  // 2 Donor/Desynced (serves, but may be slowed or, with some SST methods, blocked), 3 Joined
  // (applying what it missed); 1 Joining never has wsrep_ready ON.
  if (*local_state == "2" || *local_state == "3") return NodeReadiness::fallback;
  return NodeReadiness::not_ready;
}

std::string ServerAddress::describe() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::vector<ServerAddress> ConnectionOptions::servers() const {
  if (socket) return {};
  if (!hosts.empty()) return hosts;
  return {ServerAddress{host, port}};
}

std::string ConnectionOptions::describe() const {
  std::string where;
  if (socket) {
    where = "socket " + *socket;
  } else {
    for (const auto& s : servers()) where += (where.empty() ? "" : ",") + s.describe();
  }
  return user + "@" + where + " (database " + (database.empty() ? "none" : database) + ")";
}

const std::string& Row::text(std::size_t i) const {
  static const std::string empty;
  const auto& c = columns_.at(i);
  return c ? *c : empty;
}

std::optional<std::int64_t> Row::opt_i64(std::size_t i) const {
  const auto& c = columns_.at(i);
  if (!c) return std::nullopt;
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(c->data(), c->data() + c->size(), v);
  if (ec != std::errc() || ptr != c->data() + c->size()) {
    throw std::logic_error("column " + std::to_string(i) + " is not an integer");
  }
  return v;
}

std::int64_t Row::i64(std::size_t i) const {
  return opt_i64(i).value_or(0);
}

// ---- Connection -------------------------------------------------------------------------------

Connection::Connection(ConnectionOptions options) : options_(std::move(options)) {
  library_init_once();
}

Connection::~Connection() {
  close();
}

void Connection::close() noexcept {
  statement_index_.clear();
  statements_.clear();  // statements must go before their connection
  if (handle_) {
    mysql_close(handle_);
    handle_ = nullptr;
  }
  broken_ = false;
}

std::string Connection::server() const {
  if (options_.socket) return "socket " + *options_.socket;
  const auto servers = options_.servers();
  return servers.empty() ? "" : servers[current_ % servers.size()].describe();
}

MYSQL* Connection::open_server(const ServerAddress* server, Error& error, bool& only_as_fallback) {
  only_as_fallback = false;
  MYSQL* h = mysql_init(nullptr);
  if (!h) {
    error = make_error(Errc::internal, "database: out of memory creating a connection");
    return nullptr;
  }
  const unsigned int connect_s = seconds_ceil(options_.connect_timeout);
  const unsigned int io_s = seconds_ceil(options_.query_timeout);
  mysql_options(h, MYSQL_OPT_CONNECT_TIMEOUT, &connect_s);
  mysql_options(h, MYSQL_OPT_READ_TIMEOUT, &io_s);
  mysql_options(h, MYSQL_OPT_WRITE_TIMEOUT, &io_s);
  mysql_options(h, MYSQL_SET_CHARSET_NAME, "utf8mb4");
  // Timestamps are UTC; strict mode turns silent truncation into errors.
  mysql_options(h, MYSQL_INIT_COMMAND,
                "SET time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,"
                "NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'");
  my_bool no_reconnect = 0;  // a silent reconnect would lose session state; the pool reconnects
  mysql_options(h, MYSQL_OPT_RECONNECT, &no_reconnect);
  if (options_.socket) {
    const unsigned int protocol = MYSQL_PROTOCOL_SOCKET;
    mysql_options(h, MYSQL_OPT_PROTOCOL, &protocol);
  }
  const std::string where = server ? server->describe() : "socket " + options_.socket.value_or("");
  const char* db = options_.database.empty() ? nullptr : options_.database.c_str();
  if (!mysql_real_connect(h, server ? server->host.c_str() : nullptr, options_.user.c_str(),
                          options_.password.c_str(), db, server ? server->port : 0,
                          server ? nullptr : options_.socket->c_str(),
                          CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS)) {
    const unsigned int code = mysql_errno(h);
    std::string reason = mysql_error(h);
    mysql_close(h);
    const Errc errc = (code == ER_ACCESS_DENIED_ERROR || code == ER_DBACCESS_DENIED_ERROR ||
                       code == ER_BAD_DB_ERROR)
                          ? Errc::invalid_argument
                          : Errc::unavailable;
    error = make_error(errc, where + ": " + reason + " (error " + std::to_string(code) + ")");
    return nullptr;
  }
  // A Galera node accepts connections before it can serve them (joining, or cut off from the
  // primary component); SHOW is what such a node still answers.
  auto fail = [&](std::string reason) {
    mysql_close(h);
    error = make_error(Errc::unavailable, where + ": " + std::move(reason));
    return nullptr;
  };
  static constexpr std::string_view kProbe =
      "SHOW GLOBAL STATUS WHERE Variable_name IN "
      "('wsrep_ready', 'wsrep_cluster_status', 'wsrep_local_state', 'wsrep_local_state_comment')";
  if (mysql_real_query(h, kProbe.data(), kProbe.size()) != 0) {
    return fail(std::string("wsrep status: ") + mysql_error(h) + " (error " +
                std::to_string(mysql_errno(h)) + ")");
  }
  MYSQL_RES* res = mysql_store_result(h);
  if (!res) return fail(std::string("wsrep status: ") + mysql_error(h));
  std::optional<std::string> ready, cluster, state, comment;
  while (MYSQL_ROW r = mysql_fetch_row(res)) {
    if (!r[0] || !r[1]) continue;
    const std::string_view name = r[0];
    if (name == "wsrep_ready") ready = r[1];
    if (name == "wsrep_cluster_status") cluster = r[1];
    if (name == "wsrep_local_state") state = r[1];
    if (name == "wsrep_local_state_comment") comment = r[1];
  }
  mysql_free_result(res);
  switch (node_readiness(ready, cluster, state)) {
    case NodeReadiness::ready:
      return h;
    case NodeReadiness::fallback:
      only_as_fallback = true;
      error = make_error(Errc::unavailable, where + ": Galera node is " +
                                                comment.value_or("not Synced") +
                                                " (used only when no node is Synced)");
      return h;
    case NodeReadiness::not_ready:
      break;
  }
  return fail("Galera node not ready for use (wsrep_ready " + ready.value_or("?") + ", " +
              cluster.value_or("?") + ", " + comment.value_or("?") + ")");
}

Status Connection::connect() {
  close();
  library_init_once();
  if (options_.socket) {
    Error error;
    bool fallback = false;
    MYSQL* h = open_server(nullptr, error, fallback);
    if (!h) {
      return make_error(error.code,
                        "database " + options_.describe() + " unreachable: " + error.message);
    }
    handle_ = h;
    broken_ = false;
    return {};
  }
  // Failover: every server once, starting with the one that worked last (so that a pool's
  // connections stay on one node and only move when it fails); a Synced node wins, a donor is
  // kept in reserve.
  const auto servers = options_.servers();
  const std::size_t n = servers.size();
  MYSQL* reserve = nullptr;
  std::size_t reserve_index = 0;
  std::string reasons;
  Errc errc = Errc::unavailable;
  const std::size_t start = shared_choice_ ? shared_choice_->load() : current_;
  const auto chose = [this](std::size_t i) {
    current_ = i;
    if (shared_choice_) shared_choice_->store(i);
  };
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = (start + k) % n;
    Error error;
    bool fallback = false;
    MYSQL* h = open_server(&servers[i], error, fallback);
    if (h && !fallback) {
      if (reserve) mysql_close(reserve);
      handle_ = h;
      chose(i);
      broken_ = false;
      return {};
    }
    if (h && !reserve) {
      reserve = h;
      reserve_index = i;
    } else if (h) {
      mysql_close(h);
    }
    if (error.code == Errc::invalid_argument) errc = Errc::invalid_argument;
    reasons += (reasons.empty() ? "" : "; ") + error.message;
  }
  if (reserve) {
    handle_ = reserve;
    chose(reserve_index);
    broken_ = false;
    return {};
  }
  // With one server the message reads as before: "database u@h:p (database d) unreachable: …".
  if (n == 1) {
    const std::string prefix = servers[0].describe() + ": ";
    if (reasons.starts_with(prefix)) reasons.erase(0, prefix.size());
  }
  return make_error(errc, "database " + options_.describe() + " unreachable: " + reasons);
}

Status Connection::ping() {
  if (!handle_) return make_error(Errc::unavailable, "database: not connected");
  if (mysql_ping(handle_) != 0) return last_error("ping");
  return {};
}

std::string Connection::server_version() const {
  return handle_ ? mysql_get_server_info(handle_) : "";
}

Error Connection::error_from(unsigned int code, std::string_view message, std::string_view what) {
  Errc errc = Errc::internal;
  if (is_connection_lost(code)) {
    broken_ = true;
    errc = Errc::unavailable;
  } else if (code == ER_LOCK_DEADLOCK || code == ER_LOCK_WAIT_TIMEOUT) {
    errc = Errc::busy;  // includes Galera certification conflicts: retry the transaction
  } else if (code == ER_DUP_ENTRY) {
    errc = Errc::conflict;
  }
  return make_error(errc, "database " + std::string(what) + ": " + std::string(message) +
                              " (error " + std::to_string(code) + ")");
}

Error Connection::last_error(std::string_view what) {
  return error_from(mysql_errno(handle_), mysql_error(handle_), what);
}

Status Connection::execute(std::string_view sql) {
  auto n = execute_text(sql);
  if (!n) return std::move(n).error();
  return {};
}

Result<std::uint64_t> Connection::execute_text(std::string_view sql) {
  if (!handle_) return make_error(Errc::unavailable, "database: not connected");
  if (mysql_real_query(handle_, sql.data(), sql.size()) != 0) return last_error("statement");
  const std::uint64_t affected = mysql_affected_rows(handle_);
  // Drain any result so the connection stays usable.
  do {
    if (MYSQL_RES* res = mysql_store_result(handle_)) mysql_free_result(res);
  } while (mysql_next_result(handle_) == 0);
  if (mysql_errno(handle_) != 0) return last_error("statement");
  return affected;
}

Result<std::vector<std::uint64_t>> Connection::execute_batch(std::string_view sql) {
  if (!handle_) return make_error(Errc::unavailable, "database: not connected");
  if (mysql_real_query(handle_, sql.data(), sql.size()) != 0) return last_error("batch");
  std::vector<std::uint64_t> affected;
  for (;;) {
    if (MYSQL_RES* res = mysql_store_result(handle_)) mysql_free_result(res);
    affected.push_back(mysql_affected_rows(handle_));
    const int next = mysql_next_result(handle_);
    if (next == -1) break;                     // no more results
    if (next > 0) return last_error("batch");  // the next statement failed
  }
  return affected;
}

std::string Connection::quote(std::string_view text) const {
  std::string out(text.size() * 2 + 2, '\0');
  out[0] = '\'';
  const unsigned long n =
      mysql_real_escape_string(handle_, out.data() + 1, text.data(), text.size());
  out.resize(n + 1);
  out += '\'';
  return out;
}

Result<std::vector<Row>> Connection::query(std::string_view sql) {
  if (!handle_) return make_error(Errc::unavailable, "database: not connected");
  if (mysql_real_query(handle_, sql.data(), sql.size()) != 0) return last_error("query");
  std::unique_ptr<MYSQL_RES, decltype(&mysql_free_result)> res(mysql_store_result(handle_),
                                                               &mysql_free_result);
  std::vector<Row> rows;
  if (!res) {
    if (mysql_errno(handle_) != 0) return last_error("query");
    return rows;
  }
  const unsigned int n = mysql_num_fields(res.get());
  while (MYSQL_ROW r = mysql_fetch_row(res.get())) {
    const unsigned long* lengths = mysql_fetch_lengths(res.get());
    std::vector<std::optional<std::string>> cols;
    cols.reserve(n);
    for (unsigned int i = 0; i < n; ++i) {
      if (r[i])
        cols.emplace_back(std::string(r[i], lengths[i]));
      else
        cols.emplace_back(std::nullopt);
    }
    rows.emplace_back(std::move(cols));
  }
  return rows;
}

void Connection::evict_statements(std::size_t keep) noexcept {
  while (statements_.size() > keep) {
    statement_index_.erase(statements_.back()->sql_);
    statements_.pop_back();
    g_evicted_statements.fetch_add(1, std::memory_order_relaxed);
  }
}

Result<MYSQL_STMT*> Connection::prepare_on_server(std::string_view sql) {
  MYSQL_STMT* stmt = mysql_stmt_init(handle_);
  if (!stmt) return make_error(Errc::internal, "database: out of memory preparing a statement");
  if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) {
    Error e = error_from(mysql_stmt_errno(stmt), mysql_stmt_error(stmt), "prepare");
    const bool server_full = mysql_stmt_errno(stmt) == ER_MAX_PREPARED_STMT_COUNT_REACHED;
    mysql_stmt_close(stmt);
    if (server_full) e.code = Errc::busy;
    return e;
  }
  my_bool update_max_length = 1;  // lets query() size result buffers exactly
  mysql_stmt_attr_set(stmt, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max_length);
  return stmt;
}

Result<Statement*> Connection::prepare(std::string_view sql) {
  if (!handle_) return make_error(Errc::unavailable, "database: not connected");
  if (auto it = statement_index_.find(sql); it != statement_index_.end()) {
    statements_.splice(statements_.begin(), statements_, it->second);  // most recently used
    return statements_.front().get();
  }
  const std::size_t capacity = std::max<std::size_t>(1, options_.statement_cache_size);
  evict_statements(capacity - 1);
  auto stmt = prepare_on_server(sql);
  if (!stmt && stmt.error().code == Errc::busy && !statements_.empty()) {
    // The server's max_prepared_stmt_count is reached (by every client together): give back
    // half of ours and try once more, rather than stop working until someone else closes theirs.
    evict_statements(statements_.size() / 2);
    stmt = prepare_on_server(sql);
  }
  if (!stmt) return std::move(stmt).error();
  statements_.push_front(std::unique_ptr<Statement>(new Statement(*this, *stmt, std::string(sql))));
  statement_index_.emplace(statements_.front()->sql_, statements_.begin());
  return statements_.front().get();
}

Result<std::vector<Row>> Connection::query(std::string_view sql, std::span<const Value> params) {
  auto stmt = prepare(sql);
  if (!stmt) return std::move(stmt).error();
  return (*stmt)->query(params);
}

Result<std::uint64_t> Connection::execute(std::string_view sql, std::span<const Value> params) {
  auto stmt = prepare(sql);
  if (!stmt) return std::move(stmt).error();
  return (*stmt)->execute(params);
}

// ---- Statement --------------------------------------------------------------------------------

Statement::Statement(Connection& owner, MYSQL_STMT* stmt, std::string sql)
    : owner_(owner), stmt_(stmt), sql_(std::move(sql)) {
  g_open_statements.fetch_add(1, std::memory_order_relaxed);
  g_prepared_statements.fetch_add(1, std::memory_order_relaxed);
}

Statement::~Statement() {
  mysql_stmt_close(stmt_);
  g_open_statements.fetch_sub(1, std::memory_order_relaxed);
}

Error Statement::fail(std::string_view what) {
  return owner_.error_from(mysql_stmt_errno(stmt_), mysql_stmt_error(stmt_), what);
}

Status Statement::bind_and_run(std::span<const Value> params) {
  const unsigned long expected = mysql_stmt_param_count(stmt_);
  if (expected != params.size()) {
    return make_error(Errc::internal, "database: statement expects " + std::to_string(expected) +
                                          " parameters, got " + std::to_string(params.size()));
  }
  std::vector<MYSQL_BIND> binds(params.size());
  std::vector<unsigned long> lengths(params.size());
  std::vector<my_bool> nulls(params.size(), 0);
  for (std::size_t i = 0; i < params.size(); ++i) {
    MYSQL_BIND& b = binds[i];
    std::memset(&b, 0, sizeof b);
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, Null>) {
            nulls[i] = 1;
            b.buffer_type = MYSQL_TYPE_NULL;
            b.is_null = &nulls[i];
          } else if constexpr (std::is_same_v<V, std::int64_t>) {
            b.buffer_type = MYSQL_TYPE_LONGLONG;
            b.buffer = const_cast<std::int64_t*>(&v);
          } else if constexpr (std::is_same_v<V, std::string>) {
            b.buffer_type = MYSQL_TYPE_STRING;
            b.buffer = const_cast<char*>(v.data());
            lengths[i] = v.size();
            b.buffer_length = v.size();
            b.length = &lengths[i];
          } else {
            b.buffer_type = MYSQL_TYPE_BLOB;
            b.buffer = const_cast<char*>(v.bytes.data());
            lengths[i] = v.bytes.size();
            b.buffer_length = v.bytes.size();
            b.length = &lengths[i];
          }
        },
        params[i]);
  }
  if (!binds.empty() && mysql_stmt_bind_param(stmt_, binds.data()) != 0) return fail("bind");
  if (mysql_stmt_execute(stmt_) != 0) return fail("execute");
  return {};
}

Result<std::uint64_t> Statement::execute(std::span<const Value> params) {
  if (auto st = bind_and_run(params); !st) return std::move(st).error();
  // A statement that produced rows anyway: drain them so the connection stays in sync.
  if (mysql_stmt_field_count(stmt_) > 0) {
    mysql_stmt_store_result(stmt_);
    mysql_stmt_free_result(stmt_);
  }
  return static_cast<std::uint64_t>(mysql_stmt_affected_rows(stmt_));
}

std::uint64_t Statement::last_insert_id() const {
  return mysql_stmt_insert_id(stmt_);
}

Result<std::vector<Row>> Statement::query(std::span<const Value> params) {
  if (auto st = bind_and_run(params); !st) return std::move(st).error();
  std::vector<Row> rows;
  const unsigned int n = mysql_stmt_field_count(stmt_);
  if (n == 0) return rows;
  if (mysql_stmt_store_result(stmt_) != 0) return fail("store result");
  struct Freer {
    MYSQL_STMT* s;
    ~Freer() { mysql_stmt_free_result(s); }
  } freer{stmt_};
  std::unique_ptr<MYSQL_RES, decltype(&mysql_free_result)> meta(mysql_stmt_result_metadata(stmt_),
                                                                &mysql_free_result);
  if (!meta) return fail("result metadata");
  const MYSQL_FIELD* fields = mysql_fetch_fields(meta.get());

  std::vector<MYSQL_BIND> binds(n);
  std::vector<std::string> buffers(n);
  std::vector<unsigned long> lengths(n);
  std::vector<my_bool> nulls(n), errors(n);
  for (unsigned int i = 0; i < n; ++i) {
    buffers[i].resize(fields[i].max_length + 1);
    MYSQL_BIND& b = binds[i];
    std::memset(&b, 0, sizeof b);
    // Every column as text/bytes: integers and dates are converted by the client library.
    b.buffer_type = MYSQL_TYPE_STRING;
    b.buffer = buffers[i].data();
    b.buffer_length = buffers[i].size();
    b.length = &lengths[i];
    b.is_null = &nulls[i];
    b.error = &errors[i];
  }
  if (mysql_stmt_bind_result(stmt_, binds.data()) != 0) return fail("bind result");
  rows.reserve(mysql_stmt_num_rows(stmt_));
  for (;;) {
    const int rc = mysql_stmt_fetch(stmt_);
    if (rc == MYSQL_NO_DATA) break;
    if (rc == 1) return fail("fetch");
    std::vector<std::optional<std::string>> cols(n);
    for (unsigned int i = 0; i < n; ++i) {
      if (nulls[i]) continue;
      if (lengths[i] > buffers[i].size()) {
        // max_length is not kept for every type; fetch the rest of a long column.
        std::string big(lengths[i], '\0');
        MYSQL_BIND one{};
        one.buffer_type = MYSQL_TYPE_STRING;
        one.buffer = big.data();
        one.buffer_length = big.size();
        if (mysql_stmt_fetch_column(stmt_, &one, i, 0) != 0) return fail("fetch column");
        cols[i] = std::move(big);
      } else {
        cols[i] = std::string(buffers[i].data(), lengths[i]);
      }
    }
    rows.emplace_back(std::move(cols));
  }
  return rows;
}

std::string sql_datetime(std::chrono::system_clock::time_point t) {
  const std::time_t s = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace mp::store
