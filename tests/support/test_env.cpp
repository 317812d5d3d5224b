// Implementation of the test fixtures in test_env.hpp.
#include "test_env.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/crypto.hpp"
#include "store/registrations.hpp"

extern char** environ;

namespace mp::test {
namespace fs = std::filesystem;

fs::path source_dir() {
  return MAILPUSH_SOURCE_DIR;
}
fs::path binary_dir() {
  return MAILPUSH_BINARY_DIR;
}

fs::path make_temp_dir(const std::string& tag) {
  const fs::path dir = binary_dir() / "test-tmp" / (tag + "-" + hex_encode(random_bytes(4)));
  fs::create_directories(dir);
  return dir;
}

namespace {

// Kept open (and so locked) until the process exits; see free_tcp_port in test_env.hpp.
std::mutex port_locks_mutex;
std::vector<int> port_locks;

bool loopback_port_bindable(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int on = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);  // as the servers bind
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::uint16_t free_tcp_port() {
  // The same directory and range as scripts/lib/ports.sh.
  constexpr int kFirst = 20000;
  constexpr int kLast = 32767;
  const char* env = std::getenv("MAILPUSH_PORT_LOCKS");
  const fs::path dir =
      env != nullptr && *env != '\0' ? fs::path(env) : fs::path("/tmp/mailpush-ports");
  std::error_code ec;
  fs::create_directories(dir, ec);
  fs::permissions(dir, fs::perms::all | fs::perms::sticky_bit, ec);
  std::mt19937 pick(std::random_device{}());
  std::uniform_int_distribution<int> ports(kFirst, kLast);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const auto port = static_cast<std::uint16_t>(ports(pick));
    const std::string lock = (dir / std::to_string(port)).string();
    const int fd = ::open(lock.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 || !loopback_port_bindable(port)) {
      ::close(fd);
      continue;
    }
    const std::lock_guard<std::mutex> hold(port_locks_mutex);
    port_locks.push_back(fd);
    return port;
  }
  throw std::runtime_error("no free loopback port in 20000-32767 after 200 attempts (locks in " +
                           dir.string() + ")");
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + p.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot write " + p.string());
  out << text;
}

namespace {
std::string env_or_throw(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) {
    throw std::runtime_error(std::string(name) +
                             " is not set: run the suite through scripts/test.sh, which starts the "
                             "test MariaDB server and exports its settings");
  }
  return v;
}

std::string trim_newline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}
}  // namespace

store::ConnectionOptions shared_server_options() {
  store::ConnectionOptions o;
  o.host = env_or_throw("MAILPUSH_TEST_DB_HOST");
  o.port = static_cast<std::uint16_t>(std::stoi(env_or_throw("MAILPUSH_TEST_DB_PORT")));
  o.user = env_or_throw("MAILPUSH_TEST_DB_USER");
  o.password = trim_newline(read_file(env_or_throw("MAILPUSH_TEST_DB_PASSWORD_FILE")));
  o.connect_timeout = std::chrono::seconds(5);
  o.query_timeout = std::chrono::seconds(30);
  return o;
}

ScratchDatabase::ScratchDatabase() : options_(shared_server_options()) {
  options_.database = "mailpush_t_" + hex_encode(random_bytes(6));
  store::Connection admin([&] {
    auto o = options_;
    o.database.clear();
    return o;
  }());
  if (auto st = admin.connect(); !st) throw std::runtime_error(st.error().message);
  if (auto st = admin.execute("CREATE DATABASE " + options_.database +
                              " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci");
      !st) {
    throw std::runtime_error(st.error().message);
  }
}

ScratchDatabase::~ScratchDatabase() {
  auto o = options_;
  o.database.clear();
  store::Connection admin(o);
  if (admin.connect()) (void)admin.execute("DROP DATABASE IF EXISTS " + options_.database);
}

std::int64_t insert_test_customer(store::Connection& conn, const std::string& public_id,
                                  const std::string& caller_cidrs) {
  auto blob = [](const Bytes& b) {
    return store::Value{store::Blob{std::string(b.begin(), b.end())}};
  };
  auto n = conn.execute(
      "INSERT INTO customers (customer_id, registration_key_hash, admin_key_hash, caller_cidrs) "
      "VALUES (?, ?, ?, ?)",
      {store::Value{public_id}, blob(sha384(hex_encode(random_bytes(16)))),
       blob(sha384(hex_encode(random_bytes(16)))),
       caller_cidrs.empty() ? store::Value{store::Null{}} : store::Value{caller_cidrs}});
  if (!n) throw std::runtime_error(n.error().message);
  auto id = conn.query("SELECT id FROM customers WHERE customer_id = ?", {store::Value{public_id}});
  if (!id || id->empty()) throw std::runtime_error("test customer not found after insert");
  return (*id)[0].i64(0);
}

TestRegistration insert_test_registration(store::Connection& conn, std::int64_t customer_id,
                                          const std::string& mailbox_address,
                                          int status_frequency_minutes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  TestRegistration t;
  for (auto b : random_bytes(43)) t.secret.push_back(alphabet[b % 64]);
  store::NewRegistration r;
  r.customer_id = customer_id;
  r.mailbox_hmac = hmac_sha256(as_bytes("test-key"), mailbox_address);
  r.token_hex = hex_encode(random_bytes(32));
  r.environment = "production";
  r.secret_hash = sha384(t.secret);
  r.status_frequency_minutes = status_frequency_minutes;
  auto id = store::insert_registration(conn, r);
  if (!id) throw std::runtime_error(id.error().message);
  t.id = *id;
  auto mailbox =
      conn.query("SELECT mailbox_id FROM registrations WHERE id = ?", {store::Value{t.id}});
  if (!mailbox || mailbox->empty()) throw std::runtime_error("test registration not found");
  t.mailbox_id = (*mailbox)[0].i64(0);
  return t;
}

// ---- PrivateMariadb -----------------------------------------------------------------------------

PrivateMariadb::PrivateMariadb(std::uint32_t max_prepared_statements)
    : dir_(make_temp_dir("mariadb")),
      port_(free_tcp_port()),
      max_prepared_statements_(max_prepared_statements) {}

PrivateMariadb::~PrivateMariadb() {
  stop();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

namespace {
// An initialised data directory, made once per build tree (mariadb.sh init, which locks it, so
// parallel tests wait for the first): each private server starts from a copy of it instead of
// running mariadb-install-db, about 3 of the 5 seconds a start took.
const fs::path& mariadb_template() {
  static std::once_flag once;
  static fs::path dir;
  std::call_once(once, [] {
    const fs::path t = binary_dir() / "test-mariadb-template";
    std::string out;
    const int rc = run_command(
        {(source_dir() / "scripts/mariadb.sh").string(), "init", "--datadir", t.string()}, &out);
    if (rc != 0)
      throw std::runtime_error("scripts/mariadb.sh init failed (" + std::to_string(rc) +
                               "): " + out);
    dir = t;
  });
  return dir;
}
}  // namespace

void PrivateMariadb::start() {
  std::string out;
  const int rc = run_command(
      {(source_dir() / "scripts/mariadb.sh").string(), "start", "--datadir", dir_.string(),
       "--port", std::to_string(port_), "--database", kDatabase, "--max-prepared-stmt-count",
       std::to_string(max_prepared_statements_), "--template", mariadb_template().string()},
      &out);
  if (rc != 0)
    throw std::runtime_error("scripts/mariadb.sh start failed (" + std::to_string(rc) +
                             "): " + out);
}

void PrivateMariadb::stop() {
  std::string out;
  run_command({(source_dir() / "scripts/mariadb.sh").string(), "stop", "--datadir", dir_.string(),
               "--port", std::to_string(port_)},
              &out);
}

std::int64_t server_prepared_statements(store::Connection& conn) {
  auto rows = conn.query("SHOW GLOBAL STATUS LIKE 'Prepared_stmt_count'");
  if (!rows || rows->empty())
    throw std::runtime_error("cannot read Prepared_stmt_count: " +
                             (rows ? std::string("no row") : rows.error().message));
  return std::stoll((*rows)[0].text(1));
}

store::ConnectionOptions PrivateMariadb::options() const {
  store::ConnectionOptions o;
  o.host = "127.0.0.1";
  o.port = port_;
  o.user = "mailpush";
  o.password = trim_newline(read_file(password_file()));
  o.database = kDatabase;
  o.connect_timeout = std::chrono::seconds(3);
  o.query_timeout = std::chrono::seconds(10);
  return o;
}

// ---- TLS
// ------------------------------------------------------------------------------------------

const TlsFiles& dev_tls() {
  static std::once_flag once;
  static TlsFiles files;
  std::call_once(once, [] {
    const fs::path dir = binary_dir() / "test-tls";
    std::string out;
    const int rc =
        run_command({(source_dir() / "certs/make-dev-certs.sh").string(), dir.string()}, &out);
    if (rc != 0) throw std::runtime_error("certs/make-dev-certs.sh failed: " + out);
    files = {dir / "ca.crt", dir / "listener.crt", dir / "listener.key"};
  });
  return files;
}

// ---- processes ----------------------------------------------------------------------------------

namespace {
pid_t spawn(const std::vector<std::string>& argv, const fs::path& output) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

int run_command(const std::vector<std::string>& argv, std::string* output) {
  const fs::path out = binary_dir() / "test-tmp" / ("cmd-" + hex_encode(random_bytes(6)) + ".log");
  fs::create_directories(out.parent_path());
  const pid_t pid = spawn(argv, out);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (output) *output = read_file(out);
  std::error_code ec;
  fs::remove(out, ec);
  return decode_status(status);
}

ChildProcess::ChildProcess(const fs::path& program, const std::vector<std::string>& args,
                           const fs::path& log_file)
    : log_file_(log_file) {
  std::vector<std::string> argv{program.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = spawn(argv, log_file);
}

ChildProcess::~ChildProcess() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

void stop_simulator(std::optional<ChildProcess>& process, const fs::path& dir) {
  if (process && process->running()) {
    process->signal(SIGTERM);
    EXPECT_EQ(process->wait(std::chrono::seconds(10)), std::optional<int>(0)) << process->log();
  }
  process.reset();
  std::error_code ec;
  if (!::testing::Test::HasFailure()) fs::remove_all(dir, ec);
}

void ChildProcess::signal(int signo) {
  ::kill(pid_, signo);
}

bool ChildProcess::running() {
  if (status_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(status);
    return false;
  }
  return r == 0;
}

std::optional<int> ChildProcess::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status_;
}

std::string ChildProcess::log() const {
  try {
    return read_file(log_file_);
  } catch (const std::exception&) {
    return "";
  }
}

std::optional<std::string> ChildProcess::wait_for_log(const std::string& needle,
                                                      std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::istringstream lines(log());
    for (std::string line; std::getline(lines, line);) {
      if (line.find(needle) != std::string::npos) return line;
    }
    if (!running() || std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// ---- HTTPS client
// ---------------------------------------------------------------------------------

std::string HttpReply::header(const std::string& name) const {
  for (const auto& [k, v] : headers) {
    if (boost::beast::iequals(k, name)) return v;
  }
  return "";
}

HttpReply https_request(std::uint16_t port, const std::string& method, const std::string& target,
                        const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  std::string text = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n";
  for (const auto& [k, v] : headers) text += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT") {
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  text += "Connection: close\r\n\r\n" + body;
  RawTlsConnection conn(port);
  conn.send(text);
  return conn.read_response(std::chrono::seconds(20));
}

// ---- raw TLS ----------------------------------------------------------------------------------

struct RawTlsConnection::Impl {
  boost::asio::io_context ioc;
  boost::asio::ssl::context ctx{boost::asio::ssl::context::tls_client};
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> stream;
  std::string pending;  // bytes read but not yet consumed
};

namespace {
// Asio's blocking reads ignore SO_RCVTIMEO, so reads run non-blocking and wait in poll().
// Returns the bytes read; `ec` is would_block when the time ran out with nothing read.
template <class Stream>
std::size_t read_with_timeout(Stream& stream, char* buf, std::size_t size,
                              std::chrono::milliseconds timeout, boost::system::error_code& ec) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto& socket = stream.next_layer();
  socket.non_blocking(true);
  std::size_t n = 0;
  for (;;) {
    n = stream.read_some(boost::asio::buffer(buf, size), ec);
    if (ec != boost::asio::error::would_block) break;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{socket.native_handle(), POLLIN, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  boost::system::error_code ignored;
  socket.non_blocking(false, ignored);
  return n;
}
}  // namespace

RawTlsConnection::RawTlsConnection(std::uint16_t port, std::chrono::milliseconds silence,
                                   const std::string& preamble)
    : impl_(std::make_unique<Impl>()) {
  namespace asio = boost::asio;
  impl_->ctx.load_verify_file(dev_tls().ca_cert.string());
  impl_->ctx.set_verify_mode(asio::ssl::verify_peer);
  impl_->stream =
      std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(impl_->ioc, impl_->ctx);
  SSL_set_tlsext_host_name(impl_->stream->native_handle(), "localhost");
  impl_->stream->next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  if (silence.count() > 0) std::this_thread::sleep_for(silence);
  if (!preamble.empty()) asio::write(impl_->stream->next_layer(), asio::buffer(preamble));
  impl_->stream->handshake(asio::ssl::stream_base::client);
}

RawTlsConnection::~RawTlsConnection() = default;

void RawTlsConnection::send(const std::string& bytes) {
  boost::asio::write(*impl_->stream, boost::asio::buffer(bytes));
}

std::string RawTlsConnection::read_until_close(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string out = std::move(impl_->pending);
  impl_->pending.clear();
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    boost::system::error_code ec;
    out.append(buf, read_with_timeout(*impl_->stream, buf, sizeof buf,
                                      std::chrono::milliseconds(100), ec));
    if (ec && ec != boost::asio::error::would_block) break;
  }
  return out;
}

bool RawTlsConnection::closed_by_peer(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    boost::system::error_code ec;
    impl_->pending.append(buf, read_with_timeout(*impl_->stream, buf, sizeof buf,
                                                 std::chrono::milliseconds(100), ec));
    if (ec && ec != boost::asio::error::would_block) return true;
  }
  return false;
}

HttpReply RawTlsConnection::read_response(std::chrono::milliseconds timeout) {
  namespace bhttp = boost::beast::http;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.eager(true);
  std::string& data = impl_->pending;
  char buf[4096];
  for (;;) {
    if (!data.empty()) {
      boost::system::error_code ec;
      const std::size_t used = parser.put(boost::asio::buffer(data), ec);
      data.erase(0, used);
      if (ec && ec != bhttp::error::need_more)
        throw std::runtime_error("bad HTTP response: " + ec.message());
      if (parser.is_done()) {
        // An interim 100 Continue is returned like any response; the caller reads again.
        HttpReply reply;
        reply.status = parser.get().result_int();
        reply.body = parser.get().body();
        for (const auto& f : parser.get()) {
          reply.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
        }
        return reply;
      }
      if (!ec && used > 0) continue;
    }
    if (std::chrono::steady_clock::now() > deadline)
      throw std::runtime_error("no complete HTTP response in time");
    boost::system::error_code ec;
    data.append(buf, read_with_timeout(*impl_->stream, buf, sizeof buf,
                                       std::chrono::milliseconds(100), ec));
    if (ec && ec != boost::asio::error::would_block) {
      if (!data.empty()) continue;
      throw std::runtime_error("connection closed before a complete response: " + ec.message());
    }
  }
}

// ---- region files and daemons
// --------------------------------------------------------------------

fs::path write_region_file(const fs::path& dir, const std::string& patch_json) {
  auto region = nlohmann::json::parse(read_file(source_dir() / "regions/dev.json"));
  region["listener"]["port"] = 0;
  region["listener"]["tls_cert"] = dev_tls().cert_chain.string();
  region["listener"]["tls_key"] = dev_tls().key.string();
  // dev.json's portal files live in var/dev (made by run-dev.sh): tests that need a portal
  // give their own.
  region.erase("portal");
  // Likewise the region secret (var/dev/region-secret): tests make their own
  // (test_registrations.hpp).
  if (region.contains("registration")) region["registration"].erase("secret_file");
  // And the CA of dev's apns-sim (var/dev/apns-certs): tests that send to apns-sim name theirs.
  region["apns"].erase("ca_file");
  // Every test client is 127.0.0.1, and many open a connection per request: the per-address
  // limits are off unless a test patches them in (the tests of those limits do).
  region["limits"]["max_connections_per_address"] = 0;
  region["limits"]["connections_per_second_per_address"] = 0;
  region["limits"]["unknown_secrets_per_second_per_address"] = 0;
  // Load tests send one registration's callbacks as fast as they go: the callback rates are off
  // too (their own tests turn them on).
  region["limits"]["callbacks_per_second_per_registration"] = 0;
  region["limits"]["callbacks_per_second_per_customer"] = 0;
  region.merge_patch(nlohmann::json::parse(patch_json));
  const fs::path file = dir / "region.json";
  write_file(file, region.dump(2));
  return file;
}

std::uint16_t listening_port(ChildProcess& daemon, std::chrono::milliseconds timeout) {
  const auto line = daemon.wait_for_log("\"daemon.listening\"", timeout);
  if (!line) return 0;
  return nlohmann::json::parse(*line).at("port").get<std::uint16_t>();
}

}  // namespace mp::test
