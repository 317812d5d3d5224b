// The listener's TLS: the server context every new connection starts with, and the certificate
// pair behind it reloaded from its files without a restart (SIGHUP, or the files changing). A
// connection keeps the context it began with, so an old pair lives until its last connection ends.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <sys/types.h>

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "certs/server_certificate.hpp"
#include "common/result.hpp"
#include "common/secret_bytes.hpp"

namespace mp::http {

// The region file's listener.tls_cert (PEM chain, leaf first) and listener.tls_key (PEM key).
struct ServerTlsFiles {
  std::filesystem::path cert_chain;
  std::filesystem::path private_key;
};

// Both files as read; the key's bytes are wiped when this goes.
struct ServerTlsPem {
  std::string cert_chain;
  SecretBytes private_key;
};

// Reads both files (at most certs::kMaxServerPemBytes each); errors name the setting and the path.
Result<ServerTlsPem> read_server_tls_files(const ServerTlsFiles& files);

class TicketKeys;

// TLS 1.2 or newer with the pair in `pem`; `files` only names the files in errors. TLS 1.2 is
// limited to ECDHE key exchange with AEAD ciphers, in the server's order. With `tickets`,
// session tickets use the region's keys (resumption across instances); otherwise OpenSSL's own
// per-process keys.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls_context(
    const ServerTlsPem& pem, const ServerTlsFiles& files, const TicketKeys* tickets = nullptr);
// Both of the above.
Result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls_context(
    const std::filesystem::path& cert_chain, const std::filesystem::path& private_key);

// The context new connections get. The accept path copies a shared_ptr under a short lock.
class ListenerTls {
 public:
  explicit ListenerTls(std::shared_ptr<boost::asio::ssl::context> context);
  std::shared_ptr<boost::asio::ssl::context> current() const;
  void replace(std::shared_ptr<boost::asio::ssl::context> context);

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> current_;
};

// What tells that a file's contents may have changed without reading it. stat() follows
// symbolic links, so certbot's and Kubernetes' swaps of a link show as another inode.
struct FileStamp {
  int error = 0;  // errno of stat(), 0 when it succeeded
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
FileStamp stamp_file(const std::filesystem::path& path);

// Loads the listener's pair, serves it through tls(), and replaces it when the files hold a new
// valid pair. reload() and poll() are called from one strand (the daemon's watcher).
class ListenerCertificate {
 public:
  // Unreadable, damaged or mismatched files are an error (the daemon exits 78). An expired or
  // not-yet-valid pair is served with an error line: the daemon still answers health checks,
  // metrics and the portal, and a renewed pair is picked up without a restart.
  static Result<std::unique_ptr<ListenerCertificate>> load(ServerTlsFiles files,
                                                           prometheus::Registry& registry,
                                                           const TicketKeys* tickets = nullptr);

  ListenerTls& tls() noexcept { return tls_; }
  certs::ServerCertificate serving() const;  // the pair new connections get

  enum class Trigger { signal, files_changed };
  // Reads both files and serves them when they are a valid pair; otherwise keeps the pair served
  // and logs why (a refusal already logged for the same files is not repeated, unless the
  // trigger is a signal). True when the pair served changed.
  bool reload(Trigger trigger);
  // Reloads when either file's stamp changed since the last look, or when the files were
  // refused last time (a half-written or not-yet-valid pair is retried on every poll).
  bool poll();
  // poll() every `interval` until `stopping` is set.
  boost::asio::awaitable<void> watch(std::chrono::milliseconds interval,
                                     const std::atomic<bool>& stopping);

 private:
  struct Stamps {
    FileStamp cert, key;
    bool operator==(const Stamps&) const = default;
  };
  struct Metrics {
    explicit Metrics(prometheus::Registry& registry);
    prometheus::Gauge& not_after;
    prometheus::Family<prometheus::Counter>& reloads;
    prometheus::Counter& reloads_ok;
    prometheus::Counter& reloads_refused;
    prometheus::Gauge& files_refused;
  };
  ListenerCertificate(ServerTlsFiles files, prometheus::Registry& registry,
                      std::shared_ptr<boost::asio::ssl::context> context,
                      certs::ServerCertificate facts, Stamps stamps, const TicketKeys* tickets);
  Stamps stamps() const;
  void refuse(Trigger trigger, const Stamps& seen, std::string_view reason,
              const std::string& message);
  void serve(std::shared_ptr<boost::asio::ssl::context> context, certs::ServerCertificate facts,
             Trigger trigger);

  const ServerTlsFiles files_;
  const TicketKeys* tickets_;
  Metrics metrics_;
  ListenerTls tls_;
  mutable std::mutex facts_mutex_;
  certs::ServerCertificate facts_;
  // Only touched by reload()/poll(), on the watcher's strand.
  Stamps last_seen_;
  std::optional<std::string> refused_;  // the reason of the last refusal (for last_seen_)
};

}  // namespace mp::http
