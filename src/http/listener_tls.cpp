// The listener's server TLS context, its files, and their reload without a restart.
#include "http/listener_tls.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <variant>

#include "common/log.hpp"
#include "http/ticket_keys.hpp"

namespace mp::http {

namespace asio = boost::asio;
using Clock = std::chrono::system_clock;

namespace {

std::string openssl_reason() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

// Reads a whole file of at most `limit` bytes straight into wiped memory (the key never passes
// through a std::string).
Result<SecretBytes> read_file_bytes(const std::filesystem::path& path, std::string_view setting) {
  const auto fail = [&](const std::string& why) {
    return make_error(Errc::invalid_argument,
                      std::string(setting) + ": cannot read " + path.string() + ": " + why);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");
  if (static_cast<std::uint64_t>(st.st_size) > certs::kMaxServerPemBytes) {
    return fail("larger than " + std::to_string(certs::kMaxServerPemBytes) + " bytes");
  }
  SecretBytes bytes(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::strerror(errno));
    if (n == 0) break;  // shrank while being read: the parser refuses what is missing
    got += static_cast<std::size_t>(n);
  }
  if (got < bytes.size()) return SecretBytes::copy_of(bytes.bytes().first(got));
  return bytes;
}

double unix_seconds(Clock::time_point t) {
  return static_cast<double>(
      std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count());
}

const char* trigger_name(ListenerCertificate::Trigger trigger) {
  return trigger == ListenerCertificate::Trigger::signal ? "SIGHUP" : "files_changed";
}

// Which file a refusal is about, as "setting path", for the message.
std::string where(certs::ServerPairProblem problem, const ServerTlsFiles& files) {
  const std::string cert = "listener.tls_cert " + files.cert_chain.string();
  const std::string key = "listener.tls_key " + files.private_key.string();
  if (problem == certs::ServerPairProblem::key_mismatch) return key + " and " + cert;
  return certs::is_key_problem(problem) ? key : cert;
}

}  // namespace

Result<ServerTlsPem> read_server_tls_files(const ServerTlsFiles& files) {
  auto cert = read_file_bytes(files.cert_chain, "listener.tls_cert");
  if (!cert) return std::move(cert).error();
  auto key = read_file_bytes(files.private_key, "listener.tls_key");
  if (!key) return std::move(key).error();
  return ServerTlsPem{std::string(cert->view()), std::move(*key)};
}

Result<std::shared_ptr<asio::ssl::context>> make_server_tls_context(const ServerTlsPem& pem,
                                                                    const ServerTlsFiles& files,
                                                                    const TicketKeys* tickets) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                   asio::ssl::context::single_dh_use);
  // TLS 1.2: forward secrecy (ECDHE) and AEAD only, the server's order (AES-GCM first: Exchange
  // on Windows has it in hardware). TLS 1.3's suites are all of that kind already.
  static constexpr const char* kTls12Ciphers =
      "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
      "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
      "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
  if (SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    return make_error(Errc::internal,
                      "this OpenSSL has none of the TLS 1.2 ciphers: " + openssl_reason());
  }
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (tickets != nullptr) tickets->install(native);
  boost::system::error_code ec;
  ctx->use_certificate_chain(asio::buffer(pem.cert_chain), ec);
  if (ec) {
    ERR_clear_error();
    return make_error(Errc::invalid_argument, "listener.tls_cert: cannot load " +
                                                  files.cert_chain.string() + ": " + ec.message());
  }
  ctx->use_private_key(asio::buffer(pem.private_key.data(), pem.private_key.size()),
                       asio::ssl::context::pem, ec);
  if (ec) {
    ERR_clear_error();
    return make_error(Errc::invalid_argument, "listener.tls_key: cannot load " +
                                                  files.private_key.string() + ": " + ec.message());
  }
  // Resumption spares Exchange servers that reconnect often a full handshake: a server-side
  // session cache for TLS 1.2 and (OpenSSL's default) session tickets for TLS 1.3. Both belong
  // to the context, so a reloaded pair costs each client one full handshake.
  static constexpr unsigned char kSessionContext[] = "mailpush-listener";
  SSL_CTX_set_session_id_context(native, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(native, 100000);
  SSL_CTX_set_timeout(native, 3600);
  if (SSL_CTX_check_private_key(native) != 1) {
    return make_error(Errc::invalid_argument,
                      "listener.tls_key: the private key does not match the certificate in " +
                          files.cert_chain.string() + ": " + openssl_reason());
  }
  return ctx;
}

Result<std::shared_ptr<asio::ssl::context>> make_server_tls_context(
    const std::filesystem::path& cert_chain, const std::filesystem::path& private_key) {
  const ServerTlsFiles files{cert_chain, private_key};
  auto pem = read_server_tls_files(files);
  if (!pem) return std::move(pem).error();
  return make_server_tls_context(*pem, files);
}

ListenerTls::ListenerTls(std::shared_ptr<asio::ssl::context> context)
    : current_(std::move(context)) {}

std::shared_ptr<asio::ssl::context> ListenerTls::current() const {
  std::lock_guard lock(mutex_);
  return current_;
}

void ListenerTls::replace(std::shared_ptr<asio::ssl::context> context) {
  std::lock_guard lock(mutex_);
  current_.swap(context);
  // The old context is released after the lock, by the last connection that holds it.
}

FileStamp stamp_file(const std::filesystem::path& path) {
  struct stat st {};
  FileStamp out;
  if (::stat(path.c_str(), &st) != 0) {
    out.error = errno;
    return out;
  }
  out.device = st.st_dev;
  out.inode = st.st_ino;
  out.size = st.st_size;
  out.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  out.ctime_ns = static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec;
  return out;
}

ListenerCertificate::Metrics::Metrics(prometheus::Registry& registry)
    : not_after(prometheus::BuildGauge()
                    .Name("mailpush_listener_certificate_not_after_seconds")
                    .Help("Expiry (Unix time) of the certificate the listener serves to new "
                          "connections")
                    .Register(registry)
                    .Add({})),
      reloads(prometheus::BuildCounter()
                  .Name("mailpush_listener_certificate_reloads_total")
                  .Help("Reloads of the listener's certificate files, by result (refused: the "
                        "served pair was kept)")
                  .Register(registry)),
      reloads_ok(reloads.Add({{"result", "ok"}})),
      reloads_refused(reloads.Add({{"result", "refused"}})),
      files_refused(prometheus::BuildGauge()
                        .Name("mailpush_listener_certificate_files_refused")
                        .Help("1 while the listener's certificate files hold a pair that was "
                              "refused (the previous pair is still served)")
                        .Register(registry)
                        .Add({})) {}

ListenerCertificate::ListenerCertificate(ServerTlsFiles files, prometheus::Registry& registry,
                                         std::shared_ptr<asio::ssl::context> context,
                                         certs::ServerCertificate facts, Stamps stamps,
                                         const TicketKeys* tickets)
    : files_(std::move(files)),
      tickets_(tickets),
      metrics_(registry),
      tls_(std::move(context)),
      facts_(std::move(facts)),
      last_seen_(stamps) {
  metrics_.not_after.Set(unix_seconds(facts_.not_after));
  metrics_.files_refused.Set(0);
}

ListenerCertificate::Stamps ListenerCertificate::stamps() const {
  return {stamp_file(files_.cert_chain), stamp_file(files_.private_key)};
}

Result<std::unique_ptr<ListenerCertificate>> ListenerCertificate::load(
    ServerTlsFiles files, prometheus::Registry& registry, const TicketKeys* tickets) {
  const Stamps seen{stamp_file(files.cert_chain), stamp_file(files.private_key)};
  auto pem = read_server_tls_files(files);
  if (!pem) return std::move(pem).error();
  auto inspected = certs::inspect_server_pair(pem->cert_chain, pem->private_key.view());
  if (const auto* refused = std::get_if<certs::ServerPairRefused>(&inspected)) {
    return make_error(Errc::invalid_argument,
                      where(refused->problem, files) + ": " + refused->message);
  }
  auto context = make_server_tls_context(*pem, files, tickets);
  if (!context) return std::move(context).error();
  auto facts = std::get<certs::ServerCertificate>(std::move(inspected));
  if (auto invalid = certs::check_validity(facts, Clock::now())) {
    // Served anyway: health, metrics and the portal keep working, and the renewed pair is
    // picked up without a restart. The alert and `mailpushctl doctor` say the same.
    log::error("listener.certificate_not_valid_now",
               {{"reason", certs::server_pair_problem_name(invalid->problem)},
                {"error", where(invalid->problem, files) + ": " + invalid->message},
                {"effect",
                 "Exchange servers and apps refuse this listener until a valid pair "
                 "is installed (SIGHUP or the next poll picks it up)"}});
  }
  log::info("listener.certificate_loaded", {{"subject", facts.subject},
                                            {"serial", facts.serial_hex},
                                            {"not_after", facts.not_after_utc + " UTC"},
                                            {"cert_file", files.cert_chain.string()}});
  return std::unique_ptr<ListenerCertificate>(new ListenerCertificate(
      std::move(files), registry, std::move(*context), std::move(facts), seen, tickets));
}

certs::ServerCertificate ListenerCertificate::serving() const {
  std::lock_guard lock(facts_mutex_);
  return facts_;
}

bool ListenerCertificate::reload(Trigger trigger) {
  const Stamps seen = stamps();  // before reading: a write after this is seen on the next poll
  auto pem = read_server_tls_files(files_);
  if (!pem) {
    refuse(trigger, seen, "unreadable", pem.error().message);
    return false;
  }
  auto inspected = certs::inspect_server_pair(pem->cert_chain, pem->private_key.view());
  const auto* refused = std::get_if<certs::ServerPairRefused>(&inspected);
  std::optional<certs::ServerPairRefused> invalid;
  if (!refused)
    invalid = certs::check_validity(std::get<certs::ServerCertificate>(inspected), Clock::now());
  if (refused || invalid) {
    const auto& r = refused ? *refused : *invalid;
    refuse(trigger, seen, certs::server_pair_problem_name(r.problem),
           where(r.problem, files_) + ": " + r.message);
    return false;
  }
  auto& facts = std::get<certs::ServerCertificate>(inspected);
  if (facts.fingerprint_sha256_hex == serving().fingerprint_sha256_hex) {
    // Touched or rewritten with the same pair: keep the context and its session cache.
    last_seen_ = seen;
    refused_.reset();
    metrics_.files_refused.Set(0);
    if (trigger == Trigger::signal) {
      log::info("listener.certificate_unchanged",
                {{"trigger", trigger_name(trigger)}, {"serial", facts.serial_hex}});
    }
    return false;
  }
  auto context = make_server_tls_context(*pem, files_, tickets_);
  if (!context) {
    refuse(trigger, seen, "openssl", context.error().message);
    return false;
  }
  last_seen_ = seen;
  serve(std::move(*context), std::move(facts), trigger);
  return true;
}

void ListenerCertificate::serve(std::shared_ptr<asio::ssl::context> context,
                                certs::ServerCertificate facts, Trigger trigger) {
  const certs::ServerCertificate previous = serving();
  tls_.replace(std::move(context));
  metrics_.not_after.Set(unix_seconds(facts.not_after));
  metrics_.reloads_ok.Increment();
  metrics_.files_refused.Set(0);
  refused_.reset();
  log::info("listener.certificate_reloaded",
            {{"trigger", trigger_name(trigger)},
             {"subject", facts.subject},
             {"serial", facts.serial_hex},
             {"not_after", facts.not_after_utc + " UTC"},
             {"previous_serial", previous.serial_hex},
             {"effect", "new connections get this certificate; open ones finish on the old"}});
  std::lock_guard lock(facts_mutex_);
  facts_ = std::move(facts);
}

void ListenerCertificate::refuse(Trigger trigger, const Stamps& seen, std::string_view reason,
                                 const std::string& message) {
  const bool repeat = refused_ && *refused_ == reason && seen == last_seen_;
  last_seen_ = seen;
  refused_ = std::string(reason);
  metrics_.files_refused.Set(1);
  if (repeat && trigger != Trigger::signal) return;  // retried on every poll; said once
  metrics_.reloads_refused.Increment();
  const certs::ServerCertificate served = serving();
  log::error("listener.certificate_refused",
             {{"trigger", trigger_name(trigger)},
              {"reason", reason},
              {"error", message},
              {"serving_serial", served.serial_hex},
              {"serving_not_after", served.not_after_utc + " UTC"},
              {"effect",
               "the served certificate is kept; fix the files, then SIGHUP or wait for the next "
               "poll"}});
}

bool ListenerCertificate::poll() {
  if (stamps() == last_seen_ && !refused_) return false;
  return reload(Trigger::files_changed);
}

asio::awaitable<void> ListenerCertificate::watch(std::chrono::milliseconds interval,
                                                 const std::atomic<bool>& stopping) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!stopping.load()) {
    timer.expires_after(interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (!stopping.load()) poll();
  }
}

}  // namespace mp::http
