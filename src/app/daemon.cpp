// The regional daemon: serves health, readiness and metrics now; later issues add the EWS
// listener, registration API, portal and dispatcher to the same router and pool.
#include "app/daemon.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cmath>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "app/memory.hpp"
#include "app/region_runtime.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "dispatch/dispatcher.hpp"
#include "http/ews_endpoint.hpp"
#include "http/https_server.hpp"
#include "http/listener_tls.hpp"
#include "http/registration_endpoint.hpp"
#include "http/ticket_keys.hpp"
#include "keys/key_ring.hpp"
#include "keys/region_secret.hpp"
#include "portal/credential_registry.hpp"
#include "portal/expiry_monitor.hpp"
#include "portal/portal_endpoint.hpp"
#include "portal/portal_page.hpp"
#include "relay/ews_callback_service.hpp"
#include "relay/registration_cache.hpp"
#include "relay/registration_service.hpp"
#include "store/mariadb_callback_store.hpp"
#include "store/registrations.hpp"

namespace mp::app {
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

namespace {

// The portal's settings from the region file, with its files read and checked: the key ring
// (absent: uploads are refused), the trust anchors and the admin token hashes.
struct PortalSetup {
  portal::PortalOptions options;
  std::optional<keys::KeyRing> ring;
};

Result<std::string> read_text(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) {
    return make_error(Errc::invalid_argument, std::string(what) + ": cannot read " + path.string());
  }
  return text.str();
}

Result<PortalSetup> portal_options(const config::RegionConfig& cfg) {
  PortalSetup setup;
  auto& o = setup.options;
  o.region = cfg.region;
  o.customer_id_prefix = cfg.customer_id_prefix;
  o.other_regions = cfg.portal.other_regions;
  o.max_upload_bytes = cfg.portal.max_upload_bytes;
  o.failed_attempts_per_15_minutes = cfg.portal.failed_attempts_per_15_minutes;
  o.apns.production_host = cfg.apns.production.host;
  o.apns.production_port = cfg.apns.production.port;
  o.apns.sandbox_host = cfg.apns.sandbox.host;
  o.apns.sandbox_port = cfg.apns.sandbox.port;
  o.apns.ca_file = cfg.apns.ca_file;
  if (cfg.portal.kek_file) {
    auto ring = keys::KeyRing::load_file(*cfg.portal.kek_file);
    if (!ring)
      return make_error(Errc::invalid_argument, "portal.kek_file: " + ring.error().message);
    setup.ring.emplace(std::move(*ring));
  }
  if (cfg.portal.trust_anchors) {
    auto pem = read_text(*cfg.portal.trust_anchors, "portal.trust_anchors");
    if (!pem) return std::move(pem).error();
    o.trust_anchors_pem.push_back(std::move(*pem));
  }
  if (cfg.portal.admin_token_file) {
    auto text = read_text(*cfg.portal.admin_token_file, "portal.admin_token_file");
    if (!text) return std::move(text).error();
    auto hashes = portal::PortalEndpoint::load_admin_token_hashes(*text);
    if (!hashes) {
      return make_error(Errc::invalid_argument,
                        cfg.portal.admin_token_file->string() + ": " + hashes.error().message);
    }
    o.admin_token_hashes = std::move(*hashes);
  }
  return setup;
}

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) return "unknown";
  return host;
}

// Gauges refreshed on each scrape from state that lives elsewhere.
struct ScrapeGauges {
  explicit ScrapeGauges(prometheus::Registry& r)
      : ready(prometheus::BuildGauge()
                  .Name("mailpush_ready")
                  .Help("1 when the last readiness check passed (database reachable and migrated)")
                  .Register(r)
                  .Add({})),
        db_queue(prometheus::BuildGauge()
                     .Name("mailpush_db_jobs_queued")
                     .Help("Database jobs waiting for a connection")
                     .Register(r)
                     .Add({})),
        db_busy(prometheus::BuildGauge()
                    .Name("mailpush_db_jobs_running")
                    .Help("Database jobs running now")
                    .Register(r)
                    .Add({})),
        db_connects(
            prometheus::BuildGauge()
                .Name("mailpush_db_connects")
                .Help("Database connections opened since start (first use and after losses)")
                .Register(r)
                .Add({})),
        db_unavailable(prometheus::BuildGauge()
                           .Name("mailpush_db_connection_failures")
                           .Help("Database jobs since start that found no usable connection")
                           .Register(r)
                           .Add({})),
        db_rejected(prometheus::BuildGauge()
                        .Name("mailpush_db_jobs_rejected")
                        .Help("Database jobs since start refused because the queue was full")
                        .Register(r)
                        .Add({})),
        db_statements(prometheus::BuildGauge()
                          .Name("mailpush_db_prepared_statements")
                          .Help("Prepared statements this process holds on the database server "
                                "(all connections); counts against its max_prepared_stmt_count")
                          .Register(r)
                          .Add({})),
        db_statements_evicted(
            prometheus::BuildGauge()
                .Name("mailpush_db_prepared_statements_evicted")
                .Help("Prepared statements closed since start to make room in a connection's "
                      "full statement cache; growing in steady state means SQL text varies")
                .Register(r)
                .Add({})),
        lookup_queue(prometheus::BuildGauge()
                         .Name("mailpush_db_lookup_jobs_queued")
                         .Help("Lookups of listener secrets waiting for one of their own "
                               "connections (a flood of made-up URLs waits here)")
                         .Register(r)
                         .Add({})),
        lookup_busy(prometheus::BuildGauge()
                        .Name("mailpush_db_lookup_jobs_running")
                        .Help("Lookups of listener secrets running now")
                        .Register(r)
                        .Add({})),
        lookup_rejected(prometheus::BuildGauge()
                            .Name("mailpush_db_lookup_jobs_rejected")
                            .Help("Lookups of listener secrets since start refused because their "
                                  "queue was full (answered 503)")
                            .Register(r)
                            .Add({})) {}

  void refresh_lookups(const store::PoolStats& s) {
    lookup_queue.Set(static_cast<double>(s.queued));
    lookup_busy.Set(static_cast<double>(s.busy));
    lookup_rejected.Set(static_cast<double>(s.rejected));
  }

  void refresh(const store::PoolStats& s) {
    const store::StatementStats statements = store::statement_stats();
    db_statements.Set(static_cast<double>(statements.open));
    db_statements_evicted.Set(static_cast<double>(statements.evicted));
    db_queue.Set(static_cast<double>(s.queued));
    db_busy.Set(static_cast<double>(s.busy));
    db_connects.Set(static_cast<double>(s.connects));
    db_unavailable.Set(static_cast<double>(s.connection_failures));
    db_rejected.Set(static_cast<double>(s.rejected));
  }

  prometheus::Gauge& ready;
  prometheus::Gauge& db_queue;
  prometheus::Gauge& db_busy;
  prometheus::Gauge& db_connects;
  prometheus::Gauge& db_unavailable;
  prometheus::Gauge& db_rejected;
  prometheus::Gauge& db_statements;
  prometheus::Gauge& db_statements_evicted;
  prometheus::Gauge& lookup_queue;
  prometheus::Gauge& lookup_busy;
  prometheus::Gauge& lookup_rejected;
};

constexpr std::string_view kHeartbeatSql =
    "INSERT INTO instances (instance_id, host_name, version, started_at, heartbeat_at) "
    "VALUES (?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)) "
    "ON DUPLICATE KEY UPDATE heartbeat_at = UTC_TIMESTAMP(6), stopped_at = NULL";

// SIGHUP: reread the listener's certificate on `strand` (where the file watcher polls too, so
// reloads never overlap), then wait for the next one.
void reload_on_signal(asio::signal_set& signals,
                      asio::strand<asio::io_context::executor_type> strand,
                      http::ListenerCertificate& certificate) {
  signals.async_wait([&signals, strand, &certificate](boost::system::error_code ec, int) {
    if (ec) return;
    asio::post(strand,
               [&certificate] { certificate.reload(http::ListenerCertificate::Trigger::signal); });
    reload_on_signal(signals, strand, certificate);
  });
}

}  // namespace

int run_daemon(const config::RegionConfig& cfg) {
  // SIGHUP rereads the listener's certificate once the watcher is set up (below); until then it
  // must not end the process (its default), and the pair loaded at start is read after this.
  std::signal(SIGHUP, SIG_IGN);
  log::Level level = log::Level::info;
  log::parse_level(cfg.log_level, level);
  log::set_level(level);
  // The instance id owns this process's outbox rows; it is stable across restarts (host name and
  // listener port unless the config names it), so a restarted instance sends its own rows at
  // once. Known after the listener is bound.
  std::string instance_id;
  log::set_static_field("region", cfg.region);
  log::info("daemon.starting",
            {{"version", version()}, {"commit", git_commit()}, {"config", cfg.source.string()}});

  auto conn_options = connection_options(cfg.database);
  if (!conn_options) {
    log::error("daemon.config_invalid", {{"error", conn_options.error().message}});
    return kExitConfig;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  // The region secret keys the registration API (served on the listener; without one it
  // answers 503 and says what the operators must do) and the listener's TLS session tickets.
  // A bad file stops the start like any bad config.
  std::optional<keys::RegionSecret> region_secret;
  if (cfg.registration.secret_file) {
    auto loaded = keys::RegionSecret::load_file(*cfg.registration.secret_file);
    if (!loaded) {
      log::error("daemon.config_invalid",
                 {{"error", "registration.secret_file: " + loaded.error().message}});
      return kExitConfig;
    }
    region_secret.emplace(std::move(*loaded));
  } else {
    log::warn("registration.not_configured",
              {{"reason",
                "registration.secret_file is not set: the registration API answers "
                "503; create one with scripts/make-region-secret.sh"}});
  }
  // Every instance derives the same ticket keys: a client resumes on any of them.
  std::optional<http::TicketKeys> ticket_keys;
  if (region_secret) ticket_keys.emplace(*region_secret, cfg.listener.tls_ticket_period);
  // The listener's certificate: reloaded on SIGHUP and when its files change (below).
  auto listener_cert =
      http::ListenerCertificate::load({cfg.listener.tls_cert, cfg.listener.tls_key}, *registry,
                                      ticket_keys ? &*ticket_keys : nullptr);
  if (!listener_cert) {
    log::error("daemon.config_invalid", {{"error", listener_cert.error().message}});
    return kExitConfig;
  }
  http::ListenerTls& listener_tls = (*listener_cert)->tls();

  auto portal_setup = portal_options(cfg);
  if (!portal_setup) {
    log::error("daemon.config_invalid", {{"error", portal_setup.error().message}});
    return kExitConfig;
  }

  store::DatabasePool pool(*conn_options, pool_options(cfg.database));
  const bool migrate_on_start = cfg.database.migrate_on_start;
  // Brings the schema up to date when this instance may migrate; otherwise only reads it.
  auto check_schema = [migrate_on_start](store::Connection& c) -> Result<store::SchemaState> {
    auto state = store::read_schema_state(c);
    if (state && migrate_on_start && !state->pending.empty() && !state->newer_than_binary() &&
        state->problems.empty()) {
      if (auto migrated = store::migrate(c); !migrated) return std::move(migrated).error();
      state = store::read_schema_state(c);
    }
    return state;
  };
  {
    const std::string problem = readiness_problem(pool.run<store::SchemaState>(check_schema));
    if (problem.empty()) {
      log::info("daemon.database_ready", {{"database", conn_options->describe()}});
    } else {
      // Keep running: /readyz reports it, and the check retries on every probe.
      log::error("daemon.database_not_ready",
                 {{"database", conn_options->describe()}, {"reason", problem}});
    }
  }

  prometheus::BuildGauge()
      .Name("mailpush_build_info")
      .Help("Version and commit of the running binary")
      .Register(*registry)
      .Add({{"version", version()}, {"commit", git_commit()}, {"region", cfg.region}})
      .Set(1);
  http::ServerMetrics server_metrics(*registry);
  ScrapeGauges gauges(*registry);
  // The pool of secret lookups (below), for the gauges once it exists.
  const store::DatabasePool* lookup_pool_for_metrics = nullptr;

  http::Router router;
  router.add(
      bhttp::verb::get, "/healthz", "healthz",
      [](const http::Request& req, const http::RequestContext&) -> asio::awaitable<http::Response> {
        co_return http::json_response(req, bhttp::status::ok, R"({"status":"alive"})");
      });
  // The config validated these ranges; parse_cidr cannot fail on them.
  const auto cidrs = [](const std::vector<std::string>& texts) {
    std::vector<Cidr> out;
    for (const auto& text : texts) {
      if (auto cidr = parse_cidr(text)) out.push_back(*cidr);
    }
    return out;
  };
  const std::vector<Cidr> trusted_proxies = cidrs(cfg.listener.trusted_proxies);
  const std::vector<Cidr> metrics_allow = cidrs(cfg.listener.metrics_allow);
  // Load balancers probe it; so can anyone who reaches the port: the database is asked at most
  // once a second, and only metrics_allow callers learn why it is not ready.
  ReadinessCache readiness(std::chrono::seconds(1));
  router.add(
      bhttp::verb::get, "/readyz", "readyz",
      [&pool, &gauges, &check_schema, &readiness, trusted_proxies, metrics_allow](
          const http::Request& req,
          const http::RequestContext& ctx) -> asio::awaitable<http::Response> {
        auto answer = readiness.get(ReadinessCache::Clock::now());
        if (!answer) {
          const store::DatabasePool::Job<store::SchemaState> job = check_schema;
          auto state = co_await pool.async_run(job, asio::use_awaitable);
          answer =
              ReadinessCache::Answer{readiness_problem(state), state ? state->current_version : 0};
          if (readiness.store(*answer, ReadinessCache::Clock::now())) {
            if (answer->problem.empty()) {
              log::info("daemon.ready", {{"schema_version", answer->schema_version}});
            } else {
              log::warn("daemon.not_ready", {{"reason", answer->problem}});
            }
          }
        }
        gauges.ready.Set(answer->problem.empty() ? 1 : 0);
        const bool insider =
            any_contains(metrics_allow, http::request_caller(req, ctx, trusted_proxies));
        nlohmann::json body{{"status", answer->problem.empty() ? "ready" : "not_ready"}};
        if (insider && answer->problem.empty()) body["schema_version"] = answer->schema_version;
        if (insider && !answer->problem.empty()) body["reason"] = answer->problem;
        co_return http::json_response(
            req, answer->problem.empty() ? bhttp::status::ok : bhttp::status::service_unavailable,
            body.dump());
      });
  router.add(bhttp::verb::get, "/metrics", "metrics",
             [&registry, &pool, &gauges, &lookup_pool_for_metrics, trusted_proxies, metrics_allow](
                 const http::Request& req,
                 const http::RequestContext& ctx) -> asio::awaitable<http::Response> {
               if (!any_contains(metrics_allow, http::request_caller(req, ctx, trusted_proxies))) {
                 co_return http::json_response(
                     req, bhttp::status::forbidden,
                     R"({"error":"metrics are served only to listener.metrics_allow"})");
               }
               gauges.refresh(pool.stats());
               if (lookup_pool_for_metrics != nullptr) {
                 gauges.refresh_lookups(lookup_pool_for_metrics->stats());
               }
               co_return http::make_response(req, bhttp::status::ok, "text/plain; version=0.0.4",
                                             http::serialize_metrics(*registry));
             });

  // The EWS listener: registrations cached by secret hash, callbacks recorded in group commits.
  store::MariadbCallbackStore callback_store(pool, cfg.database.batch_max,
                                             std::max<std::size_t>(1, cfg.database.pool_size / 2));
  auto& batch_writes =
      prometheus::BuildHistogram()
          .Name("mailpush_db_batch_writes")
          .Help("Callbacks recorded per group-commit transaction")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128, 256, 512});
  auto& batch_seconds =
      prometheus::BuildHistogram()
          .Name("mailpush_db_batch_seconds")
          .Help("Time of one group-commit transaction, from its start to its commit")
          .Register(*registry)
          .Add({}, prometheus::Histogram::BucketBoundaries{0.0002, 0.0005, 0.001, 0.002, 0.005,
                                                           0.01, 0.02, 0.05, 0.1, 0.5, 1, 5});
  auto& batch_failures =
      prometheus::BuildCounter()
          .Name("mailpush_db_batch_failures_total")
          .Help("Group-commit transactions that failed (their callbacks got 503)")
          .Register(*registry)
          .Add({});
  // New outbox rows wake the dispatcher (set once it exists, before the listener starts).
  std::atomic<dispatch::Dispatcher*> wake_target{nullptr};
  callback_store.set_batch_observer([&batch_writes, &batch_seconds, &batch_failures, &wake_target](
                                        std::size_t writes, double seconds, bool ok) {
    batch_writes.Observe(static_cast<double>(writes));
    batch_seconds.Observe(seconds);
    if (!ok) batch_failures.Increment();
    if (auto* d = wake_target.load(); ok && d) d->wake();
  });
  // Lookups of secrets get their own connections: a flood of made-up listener URLs waits in
  // this queue (and is refused when it is full), never in front of real callbacks' writes.
  store::PoolOptions lookup_options = pool_options(cfg.database);
  lookup_options.threads = std::max<std::size_t>(1, cfg.database.pool_size / 4);
  lookup_options.queue_limit = 256;
  store::DatabasePool lookup_pool(*conn_options, lookup_options);
  callback_store.set_lookup_pool(&lookup_pool);
  lookup_pool_for_metrics = &lookup_pool;
  relay::RegistrationCache registration_cache(cfg.limits.registration_cache_entries);
  relay::EwsCallbackService callback_service(
      callback_store, registration_cache, *registry,
      {cfg.limits.unknown_secret_burst_per_address,
       static_cast<double>(cfg.limits.unknown_secrets_per_second_per_address)});
  callback_service.set_callback_limits(
      {cfg.limits.callback_burst_per_registration,
       static_cast<double>(cfg.limits.callbacks_per_second_per_registration),
       cfg.limits.callback_burst_per_customer,
       static_cast<double>(cfg.limits.callbacks_per_second_per_customer)});
  if (region_secret) {
    // A secret in the capability's form must carry this region's tag; untagged ones (URLs from
    // before capabilities) are looked up unless the operators have turned that off.
    callback_service.set_secret_filter(
        [secret = &*region_secret,
         refuse_untagged = cfg.limits.refuse_untagged_secrets](std::string_view s) {
          if (s.size() == keys::kCapabilityChars) return secret->issued(s);
          return !refuse_untagged;
        });
  }
  http::EwsEndpointOptions ews_options;
  ews_options.limits = {cfg.limits.max_body_bytes, cfg.limits.max_xml_depth,
                        cfg.limits.max_xml_elements};
  ews_options.trusted_proxies = trusted_proxies;
  http::EwsEndpoint ews_endpoint(callback_service, std::move(ews_options), *registry);
  ews_endpoint.add_routes(router);
  // The portal shares the listener unless portal.listen gives it an address of its own.
  http::Router portal_router;
  http::Router& portal_routes = cfg.portal.listen ? portal_router : router;
  if (cfg.portal.listen) {
    portal_router.add(bhttp::verb::get, "/healthz", "healthz",
                      [](const http::Request& req,
                         const http::RequestContext&) -> asio::awaitable<http::Response> {
                        co_return http::json_response(req, bhttp::status::ok,
                                                      R"({"status":"alive"})");
                      });
  }
  const keys::KeyRing* portal_ring = portal_setup->ring ? &*portal_setup->ring : nullptr;
  portal::PortalPage portal_page(portal_setup->options);  // copies before the move below
  portal_page.add_routes(portal_routes);
  portal::PortalEndpoint portal_endpoint(std::move(portal_setup->options), pool, portal_ring,
                                         *registry);
  portal_endpoint.add_routes(portal_routes);
  // ---- registration API (DESIGN.md flow 3, docs/registration-api.md) --------------------------
  relay::RegistrationOptions registration_options;
  registration_options.region = cfg.region;
  registration_options.customer_id_prefix = cfg.customer_id_prefix;
  registration_options.listener_host = cfg.listener.public_host;
  registration_options.listener_port = cfg.listener.port;  // 0 (tests): the request's port
  registration_options.status_frequency_minutes = cfg.registration.status_frequency_minutes;
  registration_options.per_customer_per_minute = cfg.registration.per_customer_per_minute;
  registration_options.max_per_device = cfg.registration.max_per_device;
  registration_options.max_per_customer = cfg.registration.max_per_customer;
  registration_options.refusals_per_address_per_minute =
      cfg.registration.refusals_per_address_per_minute;
  registration_options.other_regions = cfg.registration.other_regions;
  relay::RegistrationService registration_service(std::move(registration_options), pool,
                                                  region_secret ? &*region_secret : nullptr,
                                                  &registration_cache);
  http::RegistrationEndpoint registration_endpoint(registration_service, *registry,
                                                   trusted_proxies);
  registration_endpoint.add_routes(router);
  // ---- end of the registration API ---------------------------------------------------------
  auto& silent_gauge = prometheus::BuildGauge()
                           .Name("mailpush_subscriptions_silent")
                           .Help("Active registrations not heard from for over 2 x StatusFrequency")
                           .Register(*registry)
                           .Add({});
  auto& unconfirmed_counter =
      prometheus::BuildCounter()
          .Name("mailpush_registrations_unconfirmed_expired_total")
          .Help(
              "Registrations ended because Exchange never called them (registration."
              "unconfirmed_expiry_hours after their first heartbeat was due)")
          .Register(*registry)
          .Add({});
  auto& cache_gauge = prometheus::BuildGauge()
                          .Name("mailpush_registration_cache_entries")
                          .Help(
                              "Registrations (and remembered unknown secrets) in the listener's "
                              "cache; its bound is limits.registration_cache_entries")
                          .Register(*registry)
                          .Add({});
  auto& preload_family = prometheus::BuildGauge()
                             .Name("mailpush_registration_cache_preload_seconds")
                             .Help(
                                 "How long the registration cache's preload at start took; "
                                 "absent until it is done")
                             .Register(*registry);

  asio::io_context ioc;
  http::ServerOptions server_options;
  server_options.bind_address = cfg.listener.bind_address;
  server_options.port = cfg.listener.port;
  server_options.max_body_bytes = cfg.limits.max_body_bytes;
  server_options.max_header_bytes = cfg.limits.max_header_bytes;
  server_options.max_connections = cfg.limits.max_connections;
  server_options.handshake_timeout = cfg.limits.handshake_timeout;
  server_options.header_timeout = cfg.limits.header_timeout;
  server_options.request_timeout = cfg.limits.request_timeout;
  server_options.idle_timeout = cfg.limits.idle_timeout;
  server_options.max_connections_per_address = cfg.limits.max_connections_per_address;
  server_options.connection_burst_per_address = cfg.limits.connection_burst_per_address;
  server_options.connections_per_second_per_address = cfg.limits.connections_per_second_per_address;
  server_options.trusted_proxies = trusted_proxies;
  server_options.proxy_protocol = cfg.listener.proxy_protocol;
  http::HttpsServer server(ioc, listener_tls, server_options, router, server_metrics);
  if (auto st = server.listen(); !st) {
    log::error("daemon.listen_failed", {{"error", st.error().message}});
    return kExitFailure;
  }
  std::optional<http::HttpsServer> portal_server;
  if (cfg.portal.listen) {
    http::ServerOptions portal_options = server_options;
    portal_options.bind_address = cfg.portal.listen->bind_address;
    portal_options.port = cfg.portal.listen->port;
    portal_server.emplace(ioc, listener_tls, portal_options, portal_router, server_metrics);
    if (auto st = portal_server->listen(); !st) {
      log::error("daemon.listen_failed", {{"error", st.error().message}, {"server", "portal"}});
      return kExitFailure;
    }
  }
  instance_id = cfg.dispatch.instance_id.value_or(host_name().substr(0, 40) + "-" +
                                                  std::to_string(server.local_port()));
  log::set_static_field("instance", instance_id);
  const std::string host = host_name();
  const store::DatabasePool::Job<std::uint64_t> beat_job = [&](store::Connection& c) {
    return c.execute(kHeartbeatSql, {store::Value{instance_id}, store::Value{host},
                                     store::Value{std::string(version())}});
  };
  // The first heartbeat before the first callback: other instances must see this one alive
  // before it owns outbox rows.
  if (auto beat = pool.run<std::uint64_t>(beat_job); !beat)
    log::warn("daemon.heartbeat_failed", {{"error", beat.error().message}});
  callback_store.set_outbox({instance_id, cfg.dispatch.ttl});

  // Credentials: reread every few seconds, so a renewal reaches every instance within a minute.
  h2::TlsClientOptions apns_trust;
  apns_trust.ca_file = cfg.apns.ca_file;
  portal::CredentialRegistry credentials(pool, portal_ring, std::move(apns_trust), *registry);
  dispatch::Dispatcher dispatcher(
      ioc, pool, [&credentials](const std::string& customer) { return credentials.find(customer); },
      dispatch::dispatcher_options(cfg, instance_id), *registry);
  wake_target.store(&dispatcher);  // started after the first credential refresh, below

  server.start();
  log::info("daemon.listening",
            {{"address", cfg.listener.bind_address}, {"port", server.local_port()}});
  if (portal_server) {
    portal_server->start();
    log::info("daemon.portal_listening", {{"address", cfg.portal.listen->bind_address},
                                          {"port", portal_server->local_port()}});
  }

  // Heartbeat: tells operators (and later the dispatcher's lease take-over) this instance lives.
  std::atomic<bool> stopping{false};
  auto heartbeat_strand = asio::make_strand(ioc);
  // The registration cache, filled from the database in the background: callbacks are answered
  // meanwhile, reading what is not cached yet.
  asio::co_spawn(
      asio::make_strand(ioc),
      [&]() -> asio::awaitable<void> {
        const auto started = std::chrono::steady_clock::now();
        auto cached = co_await callback_service.preload_cache(stopping);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
        if (!cached) {
          log::warn("ews.registration_cache_preload_failed",
                    {{"error", cached.error().message},
                     {"effect", "registrations are read on their first callback instead"}});
          co_return;
        }
        cache_gauge.Set(static_cast<double>(registration_cache.size()));
        preload_family.Add({}).Set(took.count());
        log::info("ews.registration_cache_preloaded",
                  {{"registrations", *cached},
                   {"cache_entries", registration_cache.size()},
                   {"cache_capacity", registration_cache.capacity()},
                   {"seconds", std::round(took.count() * 10) / 10}});
        if (registration_cache.size() >= registration_cache.capacity()) {
          log::warn("ews.registration_cache_full",
                    {{"capacity", registration_cache.capacity()},
                     {"effect", "callbacks of registrations beyond it read the database"},
                     {"fix", "raise limits.registration_cache_entries (~72 bytes each)"}});
        }
      },
      asio::detached);
  // Silent subscriptions: counted every minute for the metric (an index range, migration 0006).
  // Registrations Exchange never called end after registration.unconfirmed_expiry_hours (the
  // same index), at most 1,000 a minute per instance, so that registrations anyone with the app's
  // key can create do not hold a customer's quota for ever.
  const std::chrono::hours unconfirmed_grace(cfg.registration.unconfirmed_expiry_hours);
  asio::co_spawn(
      heartbeat_strand,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(heartbeat_strand);
        while (!stopping.load()) {
          if (unconfirmed_grace.count() > 0) {
            const store::DatabasePool::Job<std::uint64_t> expire =
                [unconfirmed_grace](store::Connection& c) {
                  return store::expire_unconfirmed_registrations(c, unconfirmed_grace, 1000);
                };
            auto ended = co_await pool.async_run(expire, asio::use_awaitable);
            if (!ended) {
              log::warn("registration.expire_unconfirmed_failed",
                        {{"error", ended.error().message}});
            } else if (*ended > 0) {
              unconfirmed_counter.Increment(static_cast<double>(*ended));
              log::info("registration.unconfirmed_expired",
                        {{"registrations", *ended},
                         {"grace_h", unconfirmed_grace.count()},
                         {"why", "Exchange never called them: no app subscribed with their URL"}});
            }
          }
          const store::DatabasePool::Job<std::int64_t> job = store::count_silent_subscriptions;
          auto silent = co_await pool.async_run(job, asio::use_awaitable);
          if (silent) silent_gauge.Set(static_cast<double>(*silent));
          cache_gauge.Set(static_cast<double>(registration_cache.size()));
          timer.expires_after(std::chrono::seconds(60));
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
      },
      asio::detached);
  asio::co_spawn(
      heartbeat_strand,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(heartbeat_strand);
        while (!stopping.load()) {
          auto loaded = co_await credentials.refresh();
          if (!loaded) log::warn("credential.refresh_failed", {{"error", loaded.error().message}});
          // A dispatcher without the credentials would pause every customer it meets.
          dispatcher.start();
          timer.expires_after(cfg.portal.credential_refresh);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
      },
      asio::detached);
  // Expiry: warnings at 30/14/7/1 days and on expiry, each claimed once across the region.
  std::optional<portal::WebhookTarget> webhook;
  if (cfg.portal.expiry_webhook_url) {
    auto target = portal::parse_webhook_url(*cfg.portal.expiry_webhook_url);
    if (target) webhook = std::move(*target);
  }
  portal::ExpiryMonitor expiry(pool, cfg.region, std::move(webhook), *registry);
  asio::co_spawn(
      heartbeat_strand,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(heartbeat_strand);
        while (!stopping.load()) {
          auto sent = co_await expiry.check();
          if (!sent) log::warn("credential.expiry_check_failed", {{"error", sent.error().message}});
          timer.expires_after(cfg.portal.expiry_check_interval);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
      },
      asio::detached);
  asio::co_spawn(
      heartbeat_strand,
      [&]() -> asio::awaitable<void> {
        asio::steady_timer timer(heartbeat_strand);
        // Well inside the lease, so that no other instance takes this one's rows over.
        const auto interval = std::min<std::chrono::milliseconds>(
            std::chrono::seconds(10), std::chrono::milliseconds(cfg.dispatch.lease) / 3);
        while (!stopping.load()) {
          auto beat = co_await pool.async_run(beat_job, asio::use_awaitable);
          if (!beat) log::debug("daemon.heartbeat_failed", {{"error", beat.error().message}});
          timer.expires_after(interval);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
        }
      },
      asio::detached);

  // The listener's certificate files: polled, and reread at once on SIGHUP, on one strand.
  auto cert_strand = asio::make_strand(ioc);
  if (cfg.listener.tls_poll_interval.count() > 0) {
    asio::co_spawn(cert_strand, (*listener_cert)->watch(cfg.listener.tls_poll_interval, stopping),
                   asio::detached);
  }
  asio::signal_set reload_signals(ioc, SIGHUP);
  reload_on_signal(reload_signals, cert_strand, **listener_cert);
  trim_freed_memory(ioc, stopping);  // RSS back to the system after bursts of connections

  asio::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code ec, int signo) {
    if (ec) return;
    boost::system::error_code ignored;
    reload_signals.cancel(ignored);
    log::info("daemon.stopping", {{"signal", signo == SIGTERM ? "SIGTERM" : "SIGINT"},
                                  {"grace_ms", cfg.limits.shutdown_grace.count()},
                                  {"connections", server.active_connections()}});
    stopping.store(true);
    // Both servers drain; the last one to finish stops the io_context.
    const auto servers = std::make_shared<std::atomic<int>>(portal_server ? 2 : 1);
    // Then the dispatcher finishes its round in flight and closes its APNs connections; rows it
    // has not read stay queued for this instance's next start (or another's take-over).
    auto drained = [&ioc, &dispatcher, servers](std::size_t forced) {
      if (forced > 0) log::warn("daemon.forced_close", {{"connections", forced}});
      if (servers->fetch_sub(1) == 1) dispatcher.stop([&ioc] { ioc.stop(); });
    };
    server.shutdown(cfg.limits.shutdown_grace, drained);
    if (portal_server) portal_server->shutdown(cfg.limits.shutdown_grace, drained);
    // A second signal means "now".
    signals.async_wait([&](boost::system::error_code ec2, int) {
      if (ec2) return;
      log::warn("daemon.stop_now", {});
      ioc.stop();
    });
  });

  const unsigned threads =
      cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : workers) t.join();

  auto stopped = pool.run<std::uint64_t>([&](store::Connection& c) {
    return c.execute("UPDATE instances SET stopped_at = UTC_TIMESTAMP(6) WHERE instance_id = ?",
                     {store::Value{instance_id}});
  });
  if (!stopped) log::debug("daemon.stop_record_failed", {{"error", stopped.error().message}});
  lookup_pool.stop();
  pool.stop();
  log::info("daemon.stopped", {});
  return kExitOk;
}

}  // namespace mp::app
