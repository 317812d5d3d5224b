// A region's configuration: the typed values of regions/<name>.json after validation.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace mp::config {

struct Endpoint {
  std::string host;
  std::uint16_t port = 443;
};

struct ListenerConfig {
  std::string public_host;         // the name Exchange and the app use (listener URL)
  std::string bind_address;        // IPv4 or IPv6 literal
  std::uint16_t port = 0;          // 0 = pick a free port (tests only)
  std::filesystem::path tls_cert;  // PEM chain; relative paths resolve against the file's folder
  std::filesystem::path tls_key;   // PEM private key
  // How often both TLS files are checked for a new pair (stat(), following symbolic links);
  // 0 = never, SIGHUP only.
  std::chrono::milliseconds tls_poll_interval{5000};
  // TLS session-ticket keys (derived from registration.secret_file, alike on every instance)
  // change every period; a ticket of the period before is still accepted, then renewed.
  std::chrono::seconds tls_ticket_period{43200};
  // Load balancers whose X-Forwarded-For is believed (CIDR ranges); others' is ignored.
  std::vector<std::string> trusted_proxies;
  // Who may read GET /metrics (it names customers and certificate fingerprints): CIDR ranges of
  // the caller (after trusted_proxies' X-Forwarded-For). Loopback only unless the region names
  // its Prometheus network; everyone else gets 403.
  std::vector<std::string> metrics_allow{"127.0.0.0/8", "::1/128"};
  // trusted_proxies begin each connection with a PROXY protocol header (v1 or v2) naming the
  // client, so per-address limits count clients rather than the balancer.
  bool proxy_protocol = false;
  // Heartbeats (callbacks that bind nothing and move no count) are answered without a durable
  // write: their last-heard times wait in memory and are written in bulk every heard_flush, and
  // once at shutdown. A crash loses at most that much of them (they only tell silent
  // subscriptions). At most heard_pending_max registrations wait (~250 bytes each, ~700 with
  // 512-character subscription ids); beyond that a heartbeat is written like any callback. 0
  // writes every heartbeat before answering.
  std::chrono::seconds heard_flush{30};
  std::size_t heard_pending_max = 200000;
};

struct ApnsConfig {
  Endpoint production{"api.push.apple.com", 443};
  Endpoint sandbox{"api.sandbox.push.apple.com", 443};
  std::optional<std::filesystem::path> ca_file;  // trust anchors for APNs; system store when absent
};

struct DatabaseConfig {
  std::string host = "127.0.0.1";
  std::uint16_t port = 3306;
  // The servers to connect to, in order of preference: the nodes of a Galera cluster, from
  // `hosts` ("host:port" strings); a single server from host/port otherwise. Never empty after
  // parsing; host and port are its first entry. A connection that cannot reach a node, or finds
  // it not ready (not Synced, not in the primary component), tries the next one.
  std::vector<Endpoint> hosts;
  std::optional<std::filesystem::path> socket;  // used instead of TCP when set
  std::string name;
  std::string user;
  std::optional<std::string> password_env;  // name of the environment variable holding it
  std::optional<std::filesystem::path> password_file;
  std::uint32_t pool_size = 4;
  std::uint32_t queue_limit = 10000;  // jobs waiting for a connection before "busy"
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds query_timeout{10000};
  bool migrate_on_start = false;  // dev only; production runs `mailpushctl migrate`
  std::uint32_t batch_max = 200;  // callbacks recorded per transaction at most
  // A callback that would commit alone (no batch in flight) waits this long for others to share
  // its commit; under load batches overlap and none waits. 0: none.
  std::chrono::milliseconds batch_window{5};
};

struct Limits {
  std::uint64_t max_body_bytes = 1024 * 1024;
  std::uint32_t max_header_bytes = 16 * 1024;
  std::uint32_t max_connections = 10000;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds header_timeout{10000};   // a request's first byte to its last header
  std::chrono::milliseconds request_timeout{15000};  // then its body and the answer
  std::chrono::milliseconds idle_timeout{60000};     // keep-alive wait for the next request
  std::chrono::milliseconds shutdown_grace{10000};   // SIGTERM: time for in-flight requests
  std::uint32_t max_xml_depth = 32;                  // SOAP bodies: nesting and element count
  std::uint32_t max_xml_elements = 10000;
  std::uint32_t registration_cache_entries = 4000000;  // secret hash -> registration, ~72 B each
  // Per client address (IPv4, IPv6 /64); 0 turns a limit off. See http::ServerOptions.
  std::uint32_t max_connections_per_address = 256;
  std::uint32_t connection_burst_per_address = 200;
  std::uint32_t connections_per_second_per_address = 50;
  // Unknown listener secrets per caller address (after trusted_proxies): a burst, then a rate;
  // beyond it the caller gets 503 until it has waited. 0 per second: no limit.
  std::uint32_t unknown_secret_burst_per_address = 100;
  std::uint32_t unknown_secrets_per_second_per_address = 20;
  // Listener secrets without the region's capability tag (URLs issued before capabilities, 43
  // characters) are looked up in the database unless this is true. Made-up secrets in the
  // capability's form are refused without a lookup either way. Turn it on once
  // `mailpushctl status` shows no untagged registration left.
  bool refuse_untagged_secrets = false;
  // Callbacks per registration and per customer: a burst, then a rate (0 per second: no limit);
  // beyond it 503 with Retry-After, nothing recorded (relay::CallbackLimits says why).
  std::uint32_t callback_burst_per_registration = 120;
  std::uint32_t callbacks_per_second_per_registration = 4;
  std::uint32_t callback_burst_per_customer = 50000;
  std::uint32_t callbacks_per_second_per_customer = 5000;
};

// The certificate portal (flows 1, 2, 6 of DESIGN.md) and credential upkeep.
struct PortalConfig {
  // Key-encryption keys (`kek <id> <base64> [active]` lines, mode 0600): wraps the data keys of
  // the private keys stored in MariaDB. Without it the portal refuses uploads and no credential
  // can be opened.
  std::optional<std::filesystem::path> kek_file;
  // SHA-384 (hex) of the region's admin tokens, one per line: they create customers without an
  // invite and disable or delete any customer. The tokens themselves are never on disk here.
  std::optional<std::filesystem::path> admin_token_file;
  // PEM certificates of the CAs that issue push certificates (Apple's; the test CA in dev).
  std::optional<std::filesystem::path> trust_anchors;
  std::uint32_t max_upload_bytes = 64 * 1024;
  std::uint32_t failed_attempts_per_15_minutes = 10;  // per caller address, then 429
  std::chrono::seconds credential_refresh{30};        // how often an instance rereads credentials
  std::chrono::seconds expiry_check_interval{3600};
  std::optional<std::string> expiry_webhook_url;     // JSON POSTs about expiring credentials
  std::map<std::string, std::string> other_regions;  // region name -> its portal host
  // When set, the portal (page and API) is served on its own address and port, with the
  // listener's certificate, and not on the listener; unset, both share the listener.
  struct Listen {
    std::string bind_address;
    std::uint16_t port = 0;  // 0 = pick a free port (tests only)
  };
  std::optional<Listen> listen;
};

// The registration API (flow 3 of DESIGN.md): what the app calls to get its listener URL.
struct RegistrationConfig {
  // The region secret (mode 0600; `scripts/make-region-secret.sh`): keys the HMAC that stores
  // mailbox addresses and the tag that lets the listener tell capabilities this region issued
  // from made-up ones. Without it the API answers 503.
  std::optional<std::filesystem::path> secret_file;
  std::uint32_t status_frequency_minutes = 30;  // what the app asks Exchange for (1 to 1440)
  std::uint32_t per_customer_per_minute = 600;  // registration calls per customer, then 429
  // Active registrations a device token may hold (one per mailbox the app shows), then 403.
  std::uint32_t max_per_device = 16;
  // Active registrations a customer may hold, then 403 (the administrator asks the operators).
  std::uint32_t max_per_customer = 1000000;
  // Hours after its first heartbeat was due (2 x StatusFrequency) that a registration Exchange
  // never called ends, freeing its place in the quotas; 0: never.
  std::uint32_t unconfirmed_expiry_hours = 24;
  // Refused credentials (a wrong registration key, an unknown capability) per caller address
  // a minute, then 429 for that address until it has waited.
  std::uint32_t refusals_per_address_per_minute = 60;
  // Customer ID prefix of another region -> that region's registration host, so a Customer ID
  // of another region is answered with where to go.
  std::map<std::string, std::string> other_regions;
};

// The dispatcher (flow 5): outbox rows to APNs.
struct DispatchConfig {
  std::uint32_t batch = 500;            // outbox rows read per round at most
  std::chrono::seconds ttl{3600};       // a badge older than this is dead-lettered
  std::uint32_t max_attempts = 12;      // sends that ended retryable, then dead
  std::chrono::seconds lease{30};       // an instance silent this long loses its rows
  std::chrono::milliseconds poll{200};  // read the outbox at least this often
  // Woken by a commit at a low rate, wait this long for more (0: never; see DispatcherOptions).
  std::chrono::milliseconds gather{0};
  std::uint32_t apns_connections = 2;      // HTTP/2 connections per credential at most
  std::chrono::seconds pause_probe{300};   // a paused customer is retried this often
  std::optional<std::string> instance_id;  // default: host name and listener port
};

struct RegionConfig {
  std::filesystem::path source;    // the file it was loaded from
  std::string region;              // e.g. "us-east-1"
  std::string customer_id_prefix;  // e.g. "use1"
  std::string registration_host;   // public host name of the registration API
  std::string portal_host;         // public host name of the certificate portal
  ListenerConfig listener;
  ApnsConfig apns;
  DatabaseConfig database;
  Limits limits;
  PortalConfig portal;
  RegistrationConfig registration;
  DispatchConfig dispatch;
  std::uint32_t threads = 0;  // network threads; 0 = number of cores
  std::string log_level = "info";
};

struct LoadOptions {
  // Check that files named by the config (TLS certificate and key, password file) exist and are
  // readable. Off for tools that only read the database settings on a machine without the files.
  bool check_files = true;
  // "--set database.port=3310" style overrides, applied to the JSON before validation.
  std::vector<std::string> overrides;
};

// Reads and validates a region file. Every error names the file, the field and what is wrong,
// e.g. "regions/dev.json: database.port: must be an integer from 1 to 65535, got \"abc\"";
// several problems are reported together, one per line.
Result<RegionConfig> load_region(const std::filesystem::path& file,
                                 const LoadOptions& options = {});

// Same, from JSON text (for tests); `source` is the name used in messages.
Result<RegionConfig> parse_region(std::string_view json_text, const std::filesystem::path& source,
                                  const LoadOptions& options = {});

// The database password from password_env or password_file; an error says which source failed.
Result<std::string> database_password(const DatabaseConfig& db);

}  // namespace mp::config
