// Test fixtures that stand up real things: databases on the project's MariaDB, private MariaDB
// servers, TLS files, child processes and an HTTPS client.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "store/mariadb.hpp"

namespace mp::test {

std::filesystem::path source_dir();
std::filesystem::path binary_dir();
// A fresh folder under the build tree, removed by the caller (or left for post-mortem on failure).
std::filesystem::path make_temp_dir(const std::string& tag);
// A loopback port reserved for this process until it exits, for servers that cannot bind port
// 0 and report what they got (MariaDB, apns-sim restarted on the same port) and for "nothing
// listens here" addresses. It is below the kernel's ephemeral range, so no bind to port 0 and no
// outgoing connection can take it, and it holds the lock that scripts/lib/ports.sh takes, so no
// other test running at the same time (C++ or shell) is given it.
std::uint16_t free_tcp_port();
std::string read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const std::string& text);

// Connection settings of the suite's shared MariaDB (started by scripts/test.sh), from
// MAILPUSH_TEST_DB_HOST/PORT/USER/PASSWORD_FILE. Fails the test loudly when they are missing.
store::ConnectionOptions shared_server_options();

// A database of its own on the shared server, dropped when the object goes.
class ScratchDatabase {
 public:
  ScratchDatabase();
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;
  const store::ConnectionOptions& options() const { return options_; }
  const std::string& name() const { return options_.database; }

 private:
  store::ConnectionOptions options_;
};

// Test rows until the portal and registration API create them: a customer (returns its row id)
// and a registration with a callback secret of 32 random bytes, URL-safe base64 (returned).
std::int64_t insert_test_customer(store::Connection& conn, const std::string& public_id,
                                  const std::string& caller_cidrs = "");
struct TestRegistration {
  std::int64_t id = 0;
  std::string secret;  // what goes into /ews/v1/notify/{secret}
  std::int64_t mailbox_id = 0;
};
TestRegistration insert_test_registration(store::Connection& conn, std::int64_t customer_id,
                                          const std::string& mailbox_address,
                                          int status_frequency_minutes = 30);

// A MariaDB server of the test's own (scripts/mariadb.sh in a temp folder), for tests that stop
// and restart the server without disturbing the rest of the suite. Like the suite's server it
// allows few prepared statements (all clients together), so a statement leak fails fast.
class PrivateMariadb {
 public:
  static constexpr std::uint32_t kMaxPreparedStatements = 256;
  explicit PrivateMariadb(std::uint32_t max_prepared_statements = kMaxPreparedStatements);
  ~PrivateMariadb();
  PrivateMariadb(const PrivateMariadb&) = delete;  // it owns its data directory
  PrivateMariadb& operator=(const PrivateMariadb&) = delete;
  void start();
  void stop();
  std::uint16_t port() const { return port_; }
  std::filesystem::path datadir() const { return dir_; }
  std::filesystem::path password_file() const { return dir_ / "mailpush.password"; }
  // Options for database `name` (created by start()).
  store::ConnectionOptions options() const;
  static constexpr const char* kDatabase = "mailpush_private";

 private:
  std::filesystem::path dir_;
  std::uint16_t port_;
  std::uint32_t max_prepared_statements_;
};

// The server's Prepared_stmt_count: prepared statements of all its clients together.
std::int64_t server_prepared_statements(store::Connection& conn);

// Development TLS files (certs/make-dev-certs.sh), made once per build tree.
struct TlsFiles {
  std::filesystem::path ca_cert, cert_chain, key;
};
const TlsFiles& dev_tls();

// A child process with its stderr captured to a file.
class ChildProcess {
 public:
  ChildProcess(const std::filesystem::path& program, const std::vector<std::string>& args,
               const std::filesystem::path& log_file);
  ~ChildProcess();  // SIGKILLs a process still running
  int pid() const { return pid_; }
  void signal(int signo);
  // Exit status (or 128+signal), or nullopt if it did not exit within `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string log() const;
  // Waits until a log line contains `needle`; returns that line, or nullopt on timeout/exit.
  std::optional<std::string> wait_for_log(const std::string& needle,
                                          std::chrono::milliseconds timeout);

 private:
  int pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_file_;
};

// Stops a simulator a test started (apns-sim, graph-sim): SIGTERM, and a clean exit (status 0,
// so no sanitizer report in the asan build) expected within 10 s; its folder is removed unless
// the test failed (kept for post-mortem).
void stop_simulator(std::optional<ChildProcess>& process, const std::filesystem::path& dir);

// Runs a command to completion and returns its exit code; output goes to `output` if given.
int run_command(const std::vector<std::string>& argv, std::string* output = nullptr);

struct HttpReply {
  int status = 0;
  std::string body;
  std::string header(const std::string& name) const;
  std::vector<std::pair<std::string, std::string>> headers;
};

// A blocking HTTPS/1.1 client that trusts the dev CA, for talking to the daemon in tests.
HttpReply https_request(std::uint16_t port, const std::string& method, const std::string& target,
                        const std::string& body = "",
                        const std::vector<std::pair<std::string, std::string>>& headers = {});

// A TLS connection that sends whatever bytes a test gives it (for malformed or slow requests).
class RawTlsConnection {
 public:
  // Connects, stays silent for `silence` (a slow client's first byte), sends `preamble` in clear
  // (a load balancer's PROXY header), then handshakes.
  explicit RawTlsConnection(std::uint16_t port, std::chrono::milliseconds silence = {},
                            const std::string& preamble = {});
  ~RawTlsConnection();
  RawTlsConnection(const RawTlsConnection&) = delete;
  RawTlsConnection& operator=(const RawTlsConnection&) = delete;
  void send(const std::string& bytes);
  // Reads until the peer closes or `timeout` passes; returns what arrived.
  std::string read_until_close(std::chrono::milliseconds timeout);
  // Reads one complete HTTP response (status line, headers, Content-Length body).
  HttpReply read_response(std::chrono::milliseconds timeout);
  // True if the peer closed (EOF, TLS close_notify or reset) within `timeout`.
  bool closed_by_peer(std::chrono::milliseconds timeout);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes a region file for tests: regions/dev.json with `patch` merged in (RFC 7386: null
// removes a key), the dev TLS files of the build tree, listener.port 0 and the per-address
// limits off (every test client is 127.0.0.1) unless patched.
std::filesystem::path write_region_file(const std::filesystem::path& dir,
                                        const std::string& patch_json);

// The port a mailpushd child logged in its "daemon.listening" line, or 0.
std::uint16_t listening_port(ChildProcess& daemon, std::chrono::milliseconds timeout);

}  // namespace mp::test
