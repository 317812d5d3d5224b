// The regional daemon: the region file's files read, the database, the listener (and the
// portal's own listener when it has one), the region's services on them, the background work,
// and the signals that reload and stop it. Each part is a function below; run_daemon calls them
// in order.
#include "app/daemon.hpp"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cmath>
#include <csignal>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "app/daemon_metrics.hpp"
#include "app/daemon_options.hpp"
#include "app/memory.hpp"
#include "app/periodic.hpp"
#include "app/region_runtime.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "credentials/credential_registry.hpp"
#include "dispatch/dispatcher.hpp"
#include "http/ews_endpoint.hpp"
#include "http/https_server.hpp"
#include "http/listener_tls.hpp"
#include "http/registration_endpoint.hpp"
#include "http/server_metrics.hpp"
#include "http/ticket_keys.hpp"
#include "keys/region_secret.hpp"
#include "portal/expiry_monitor.hpp"
#include "portal/portal_endpoint.hpp"
#include "portal/portal_page.hpp"
#include "relay/ews_callback_service.hpp"
#include "relay/registration_cache.hpp"
#include "relay/registration_service.hpp"
#include "store/instances.hpp"
#include "store/mariadb_callback_store.hpp"
#include "store/mariadb_dispatch_store.hpp"
#include "store/mariadb_portal_store.hpp"
#include "store/mariadb_registration_store.hpp"
#include "store/outbox.hpp"
#include "store/registrations.hpp"

namespace mp::app {
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

namespace {

std::string host_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) return "unknown";
  return host;
}

// The files a start needs, read and checked before anything listens; a bad one stops the start
// like any bad config. Built in place: the listener's TLS context points at the ticket keys.
class StartFiles {
 public:
  Status load(const config::RegionConfig& cfg, prometheus::Registry& registry) {
    // The region secret keys the registration API (without one it answers 503 and says what the
    // operators must do) and the listener's TLS session tickets: every instance derives the same
    // ticket keys, so a client resumes on any of them.
    if (cfg.registration.secret_file) {
      auto loaded = keys::RegionSecret::load_file(*cfg.registration.secret_file);
      if (!loaded) {
        return make_error(Errc::invalid_argument,
                          "registration.secret_file: " + loaded.error().message);
      }
      region_secret.emplace(std::move(*loaded));
      ticket_keys.emplace(*region_secret, cfg.listener.tls_ticket_period);
    } else {
      log::warn("registration.not_configured",
                {{"reason",
                  "registration.secret_file is not set: the registration API answers "
                  "503; create one with scripts/make-region-secret.sh"}});
    }
    auto cert = http::ListenerCertificate::load({cfg.listener.tls_cert, cfg.listener.tls_key},
                                                registry, ticket_keys ? &*ticket_keys : nullptr);
    if (!cert) return std::move(cert).error();
    listener_cert = std::move(*cert);
    auto setup = portal_setup(cfg);
    if (!setup) return std::move(setup).error();
    portal.emplace(std::move(*setup));
    return {};
  }

  std::optional<keys::RegionSecret> region_secret;
  std::optional<http::TicketKeys> ticket_keys;
  std::unique_ptr<http::ListenerCertificate> listener_cert;  // reloaded on SIGHUP and file changes
  std::optional<PortalSetup> portal;
};

// Reads the schema state, and brings it up to date first when this instance may migrate.
store::DatabasePool::Job<store::SchemaState> schema_check(bool migrate_on_start) {
  return [migrate_on_start](store::Connection& c) -> Result<store::SchemaState> {
    auto state = store::read_schema_state(c);
    if (state && migrate_on_start && !state->pending.empty() && !state->newer_than_binary() &&
        state->problems.empty()) {
      if (auto migrated = store::migrate(c); !migrated) return std::move(migrated).error();
      state = store::read_schema_state(c);
    }
    return state;
  };
}

void add_healthz(http::Router& router) {
  router.add(
      bhttp::verb::get, "/healthz", "healthz",
      [](const http::Request& req, const http::RequestContext&) -> asio::awaitable<http::Response> {
        co_return http::json_response(req, bhttp::status::ok, R"({"status":"alive"})");
      });
}

// What /readyz and /metrics read.
struct ProbeSources {
  store::DatabasePool& pool;
  const store::DatabasePool& lookup_pool;
  store::DatabasePool::Job<store::SchemaState> check_schema;
  ScrapeGauges& gauges;
  prometheus::Registry& registry;
  std::vector<Cidr> trusted_proxies;
  std::vector<Cidr> metrics_allow;  // who may read metrics and why the region is not ready
};

// /healthz, /readyz and /metrics. Load balancers probe /readyz, and so can anyone who reaches
// the port: the database is asked at most once a second (the cache outlives the routes).
void add_probe_routes(http::Router& router, const ProbeSources& s, ReadinessCache& readiness) {
  add_healthz(router);
  router.add(
      bhttp::verb::get, "/readyz", "readyz",
      [&s, &readiness](const http::Request& req,
                       const http::RequestContext& ctx) -> asio::awaitable<http::Response> {
        auto answer = readiness.get(ReadinessCache::Clock::now());
        if (!answer) {
          auto state = co_await s.pool.async_run(s.check_schema, asio::use_awaitable);
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
        const bool ready = answer->problem.empty();
        s.gauges.ready.Set(ready ? 1 : 0);
        const bool insider =
            any_contains(s.metrics_allow, http::request_caller(req, ctx, s.trusted_proxies));
        nlohmann::json body{{"status", ready ? "ready" : "not_ready"}};
        if (insider && ready) body["schema_version"] = answer->schema_version;
        if (insider && !ready) body["reason"] = answer->problem;
        co_return http::json_response(
            req, ready ? bhttp::status::ok : bhttp::status::service_unavailable, body.dump());
      });
  router.add(
      bhttp::verb::get, "/metrics", "metrics",
      [&s](const http::Request& req,
           const http::RequestContext& ctx) -> asio::awaitable<http::Response> {
        if (!any_contains(s.metrics_allow, http::request_caller(req, ctx, s.trusted_proxies))) {
          co_return http::json_response(
              req, bhttp::status::forbidden,
              R"({"error":"metrics are served only to listener.metrics_allow"})");
        }
        s.gauges.refresh(s.pool.stats());
        s.gauges.refresh_lookups(s.lookup_pool.stats());
        co_return http::make_response(req, bhttp::status::ok, "text/plain; version=0.0.4",
                                      http::serialize_metrics(s.registry));
      });
}

// The listener and, when portal.listen names an address, the portal's own server. Bound here;
// they accept once start() runs, after every route is added.
struct Servers {
  Servers(asio::io_context& ioc, const config::RegionConfig& cfg, const http::ListenerTls& tls,
          const std::vector<Cidr>& trusted_proxies, http::ServerMetrics& metrics)
      : portal_routes(cfg.portal.listen ? portal_router : router),
        listener(ioc, tls, server_options(cfg, trusted_proxies), router, metrics) {
    if (cfg.portal.listen) {
      portal.emplace(
          ioc, tls, portal_server_options(server_options(cfg, trusted_proxies), *cfg.portal.listen),
          portal_router, metrics);
      add_healthz(portal_router);
    }
  }

  Status listen() {
    if (auto st = listener.listen(); !st) return st;
    if (portal) {
      if (auto st = portal->listen(); !st) {
        return make_error(st.error().code, "portal: " + st.error().message);
      }
    }
    return {};
  }

  void start(const config::RegionConfig& cfg) {
    listener.start();
    log::info("daemon.listening",
              {{"address", cfg.listener.bind_address}, {"port", listener.local_port()}});
    if (portal) {
      portal->start();
      log::info("daemon.portal_listening",
                {{"address", cfg.portal.listen->bind_address}, {"port", portal->local_port()}});
    }
  }

  // Both drain; `drained` runs once, when the last has finished.
  void shutdown(std::chrono::milliseconds grace, std::function<void()> drained) {
    const auto left = std::make_shared<std::atomic<int>>(portal ? 2 : 1);
    auto one_done = [left, drained = std::move(drained)](std::size_t forced) {
      if (forced > 0) log::warn("daemon.forced_close", {{"connections", forced}});
      if (left->fetch_sub(1) == 1) drained();
    };
    listener.shutdown(grace, one_done);
    if (portal) portal->shutdown(grace, one_done);
  }

  http::Router router;         // the listener's routes
  http::Router portal_router;  // the portal's, when it listens on its own
  http::Router& portal_routes;
  http::HttpsServer listener;
  std::optional<http::HttpsServer> portal;
};

// The region's services on the servers' routes, built in dependency order (members are
// constructed in declaration order and destroyed in reverse). The dispatcher exists before the
// callback store, which wakes it after each commit that queued notifications.
struct RegionServices {
  RegionServices(asio::io_context& ioc, const config::RegionConfig& cfg, StartFiles& files,
                 store::DatabasePool& pool, store::DatabasePool& lookup_pool,
                 const std::string& instance_id, const std::vector<Cidr>& trusted_proxies,
                 DaemonMetrics& metrics, prometheus::Registry& registry)
      : portal_ring(files.portal->ring ? &*files.portal->ring : nullptr),
        credentials(pool, portal_ring, apns_trust(cfg), registry),
        dispatch_store(pool),
        apns_sender(ioc, apns_sender_options(cfg), registry),
        dispatcher(
            ioc, dispatch_store, apns_sender,
            [this](const std::string& customer) { return credentials.find(customer); },
            dispatcher_options(cfg, instance_id), registry),
        callback_store(pool, cfg.database.batch_max,
                       std::max<std::size_t>(1, cfg.database.pool_size / 2)),
        registration_cache(cfg.limits.registration_cache_entries),
        callback_service(callback_store, registration_cache, registry, unknown_secret_limit(cfg)),
        ews_endpoint(callback_service, ews_endpoint_options(cfg, trusted_proxies), registry),
        graph_store(pool, instance_id, cfg.database.batch_max,
                    std::max<std::size_t>(1, cfg.database.pool_size / 2)),
        graph_service(graph_store, registry, graph_limits(cfg)),
        graph_endpoint(graph_service, graph_endpoint_options(trusted_proxies), registry),
        portal_page(files.portal->options),
        portal_store(pool),
        portal_endpoint(files.portal->options, portal_store, portal_ring, registry),
        registration_store(pool),
        registration_service(registration_options(cfg), registration_store,
                             files.region_secret ? &*files.region_secret : nullptr,
                             &registration_cache),
        registration_endpoint(registration_service, registry, trusted_proxies),
        expiry(pool, cfg.region, expiry_webhook(cfg), registry) {
    callback_store.set_batch_observer(
        [&metrics, this](std::size_t writes, double seconds, bool ok) {
          metrics.batch_writes.Observe(static_cast<double>(writes));
          metrics.batch_seconds.Observe(seconds);
          if (!ok) metrics.batch_failures.Increment();
          if (ok) dispatcher.wake();
        });
    callback_store.set_lookup_pool(&lookup_pool);
    graph_store.set_marked_observer([this] { dispatcher.wake(); });
    callback_store.set_outbox({instance_id});
    callback_store.set_batch_window(cfg.database.batch_window);
    callback_service.set_callback_limits(callback_limits(cfg));
    callback_service.defer_heartbeats(cfg.listener.heard_pending_max);
    if (files.region_secret) {
      // A secret in the capability's form must carry this region's tag; untagged ones (URLs
      // from before capabilities) are looked up unless the operators have turned that off.
      callback_service.set_secret_filter(
          [secret = &*files.region_secret,
           refuse_untagged = cfg.limits.refuse_untagged_secrets](std::string_view s) {
            if (s.size() == keys::kCapabilityChars) return secret->issued(s);
            return !refuse_untagged;
          });
      // Graph registrations were all issued with capabilities: nothing untagged is looked up.
      graph_service.set_secret_filter([secret = &*files.region_secret](std::string_view s) {
        return s.size() == keys::kCapabilityChars && secret->issued(s);
      });
    }
  }

  void add_routes(Servers& servers) {
    ews_endpoint.add_routes(servers.router);
    graph_endpoint.add_routes(servers.router);
    registration_endpoint.add_routes(servers.router);
    portal_page.add_routes(servers.portal_routes);
    portal_endpoint.add_routes(servers.portal_routes);
  }

  static h2::TlsClientOptions apns_trust(const config::RegionConfig& cfg) {
    h2::TlsClientOptions o;
    o.ca_file = cfg.apns.ca_file;
    return o;
  }
  // The config validated the URL.
  static std::optional<portal::WebhookTarget> expiry_webhook(const config::RegionConfig& cfg) {
    if (!cfg.portal.expiry_webhook_url) return std::nullopt;
    auto target = portal::parse_webhook_url(*cfg.portal.expiry_webhook_url);
    if (!target) return std::nullopt;
    return std::move(*target);
  }

  const keys::KeyRing* portal_ring;
  // Reread every credential_refresh_s, so a renewal reaches every instance within a minute.
  credentials::CredentialRegistry credentials;
  store::MariadbDispatchStore dispatch_store;   // the outbox
  dispatch::ApnsBadgeSender apns_sender;        // APNs pools per customer and environment
  dispatch::Dispatcher dispatcher;              // started after the first credential refresh
  store::MariadbCallbackStore callback_store;   // callbacks recorded in group commits
  relay::RegistrationCache registration_cache;  // registrations by secret hash
  relay::EwsCallbackService callback_service;
  http::EwsEndpoint ews_endpoint;
  store::MariadbGraphStore graph_store;  // Graph registrations' notifications
  relay::GraphService graph_service;
  http::GraphEndpoint graph_endpoint;
  portal::PortalPage portal_page;
  store::MariadbPortalStore portal_store;  // customers, credentials, invites, audit rows
  portal::PortalEndpoint portal_endpoint;
  store::MariadbRegistrationStore registration_store;
  relay::RegistrationService registration_service;
  http::RegistrationEndpoint registration_endpoint;
  portal::ExpiryMonitor expiry;  // warnings at 30/14/7/1 days and on expiry, each claimed once
};

// The registration cache, filled from the database in the background: callbacks are answered
// meanwhile, reading what is not cached yet.
asio::awaitable<void> preload_registration_cache(RegionServices& services, DaemonMetrics& metrics,
                                                 const std::atomic<bool>& stopping) {
  const auto started = std::chrono::steady_clock::now();
  auto cached = co_await services.callback_service.preload_cache(stopping);
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
  if (!cached) {
    log::warn("ews.registration_cache_preload_failed",
              {{"error", cached.error().message},
               {"effect", "registrations are read on their first callback instead"}});
    co_return;
  }
  const auto& cache = services.registration_cache;
  metrics.cache_entries.Set(static_cast<double>(cache.size()));
  metrics.cache_preload_seconds.Add({}).Set(took.count());
  log::info("ews.registration_cache_preloaded", {{"registrations", *cached},
                                                 {"cache_entries", cache.size()},
                                                 {"cache_capacity", cache.capacity()},
                                                 {"seconds", std::round(took.count() * 10) / 10}});
  if (cache.size() >= cache.capacity()) {
    log::warn("ews.registration_cache_full",
              {{"capacity", cache.capacity()},
               {"effect", "callbacks of registrations beyond it read the database"},
               {"fix", "raise limits.registration_cache_entries (~72 bytes each)"}});
  }
}

// Registrations Exchange never called end after registration.unconfirmed_expiry_hours, at most
// 1,000 a minute per instance, so that registrations anyone with the app's key can create do not
// hold a customer's quota for ever; then the apps to wake are marked (store::mark_due_wakes) and
// silent subscriptions are counted for the metric (each reads an index range).
asio::awaitable<void> registration_upkeep(store::DatabasePool& pool, std::chrono::hours grace,
                                          DaemonMetrics& metrics, RegionServices& services,
                                          const std::string& instance_id) {
  const relay::RegistrationCache& cache = services.registration_cache;
  if (grace.count() > 0) {
    const store::DatabasePool::Job<std::uint64_t> expire = [grace](store::Connection& c) {
      return store::expire_unconfirmed_registrations(c, grace, 1000);
    };
    auto ended = co_await pool.async_run(expire, asio::use_awaitable);
    if (!ended) {
      log::warn("registration.expire_unconfirmed_failed", {{"error", ended.error().message}});
    } else if (*ended > 0) {
      metrics.unconfirmed_expired.Increment(static_cast<double>(*ended));
      log::info("registration.unconfirmed_expired",
                {{"registrations", *ended},
                 {"grace_h", grace.count()},
                 {"why", "Exchange never called them: no app subscribed with their URL"}});
    }
  }
  // Apps to wake with a background push: Graph subscriptions near their expiry, EWS
  // subscriptions gone silent, wakes whose send failed (each marked pending for this instance).
  const store::DatabasePool::Job<std::uint64_t> wakes = [instance_id](store::Connection& c) {
    return store::mark_due_wakes(c, instance_id, 1000);
  };
  auto woken = co_await pool.async_run(wakes, asio::use_awaitable);
  if (!woken) {
    log::warn("dispatch.mark_wakes_failed", {{"error", woken.error().message}});
  } else if (*woken > 0) {
    log::info("dispatch.wakes_marked", {{"registrations", *woken}});
    services.dispatcher.wake();
  }
  const store::DatabasePool::Job<std::int64_t> count = store::count_silent_subscriptions;
  auto silent = co_await pool.async_run(count, asio::use_awaitable);
  if (silent) metrics.silent_subscriptions.Set(static_cast<double>(*silent));
  metrics.cache_entries.Set(static_cast<double>(cache.size()));
}

// The background work, one strand for the database upkeep (its steps never overlap).
void start_background_work(asio::io_context& ioc, const config::RegionConfig& cfg,
                           RegionServices& services, const std::string& instance_id,
                           store::DatabasePool& pool,
                           const store::DatabasePool::Job<std::uint64_t>& beat,
                           DaemonMetrics& metrics, const std::atomic<bool>& stopping) {
  asio::co_spawn(asio::make_strand(ioc), preload_registration_cache(services, metrics, stopping),
                 asio::detached);
  const Strand upkeep = asio::make_strand(ioc);
  const std::chrono::hours grace(cfg.registration.unconfirmed_expiry_hours);
  repeat_on(upkeep, stopping, std::chrono::seconds(60),
            [&pool, grace, &metrics, &services, instance_id] {
              return registration_upkeep(pool, grace, metrics, services, instance_id);
            });
  repeat_on(upkeep, stopping, cfg.portal.credential_refresh,
            [&services]() -> asio::awaitable<void> {
              auto loaded = co_await services.credentials.refresh();
              if (!loaded) {
                log::warn("credential.refresh_failed", {{"error", loaded.error().message}});
              }
              // A dispatcher without the credentials would pause every customer it meets.
              services.dispatcher.start();
            });
  repeat_on(upkeep, stopping, cfg.portal.expiry_check_interval,
            [&services]() -> asio::awaitable<void> {
              auto sent = co_await services.expiry.check();
              if (!sent) {
                log::warn("credential.expiry_check_failed", {{"error", sent.error().message}});
              }
            });
  // Heartbeats' last-heard times, written in bulk on a strand of their own (a slow upkeep step
  // must not hold them back); once more at shutdown (stop_on_signal).
  repeat_on(asio::make_strand(ioc), stopping, cfg.listener.heard_flush,
            [&services] { return services.callback_service.flush_heard(); });
  // Likewise the Graph registrations whose URL Graph validated (never written in the answer).
  repeat_on(asio::make_strand(ioc), stopping, cfg.listener.heard_flush,
            [&services] { return services.graph_service.flush_validated(); });
  // The instance heartbeat, well inside the lease so that no other instance takes this one's
  // outbox rows over.
  const auto beat_interval = std::min<std::chrono::milliseconds>(
      std::chrono::seconds(10), std::chrono::milliseconds(cfg.dispatch.lease) / 3);
  repeat_on(upkeep, stopping, beat_interval, [&pool, &beat]() -> asio::awaitable<void> {
    auto done = co_await pool.async_run(beat, asio::use_awaitable);
    if (!done) log::debug("daemon.heartbeat_failed", {{"error", done.error().message}});
  });
}

// What the listener keeps in memory to write in bulk: the heartbeats' last-heard times and the
// Graph validations.
asio::awaitable<void> flush_in_memory(RegionServices& services) {
  co_await services.callback_service.flush_heard();
  co_await services.graph_service.flush_validated();
}

// SIGHUP: reread the listener's certificate on `strand` (where the file watcher polls too, so
// reloads never overlap), then wait for the next one.
void reload_on_signal(asio::signal_set& signals, Strand strand,
                      http::ListenerCertificate& certificate) {
  signals.async_wait([&signals, strand, &certificate](boost::system::error_code ec, int) {
    if (ec) return;
    asio::post(strand,
               [&certificate] { certificate.reload(http::ListenerCertificate::Trigger::signal); });
    reload_on_signal(signals, strand, certificate);
  });
}

// SIGTERM or SIGINT: stop accepting, let requests in flight finish within the grace, write the
// heartbeats' last-heard times and Graph validations still in memory, then let the dispatcher
// finish its round in flight and close its APNs connections (rows it has not read stay queued for
// this instance's next start or another's take-over), then stop. A second signal stops at once.
void stop_on_signal(asio::signal_set& signals, asio::signal_set& reload_signals,
                    asio::io_context& ioc, Servers& servers, RegionServices& services,
                    std::chrono::milliseconds grace, std::atomic<bool>& stopping) {
  signals.async_wait([&, grace](boost::system::error_code ec, int signo) {
    if (ec) return;
    boost::system::error_code ignored;
    reload_signals.cancel(ignored);
    log::info("daemon.stopping", {{"signal", signo == SIGTERM ? "SIGTERM" : "SIGINT"},
                                  {"grace_ms", grace.count()},
                                  {"connections", servers.listener.active_connections()}});
    stopping.store(true);
    // Once no callback is left: the last heartbeats' times, then the dispatcher, then the loop.
    servers.shutdown(grace, [&ioc, &services] {
      asio::co_spawn(ioc, flush_in_memory(services), [&ioc, &services](const std::exception_ptr&) {
        services.dispatcher.stop([&ioc] { ioc.stop(); });
      });
    });
    signals.async_wait([&ioc](boost::system::error_code ec2, int) {
      if (ec2) return;
      log::warn("daemon.stop_now", {});
      ioc.stop();
    });
  });
}

void run_threads(asio::io_context& ioc, unsigned configured) {
  const unsigned threads =
      configured ? configured : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < threads; ++i) workers.emplace_back([&ioc] { ioc.run(); });
  ioc.run();
  for (auto& t : workers) t.join();
}

}  // namespace

// One function of about 100 lines on purpose: everything it builds lives on this frame until
// run_threads returns and is torn down in reverse order; each step below is one call or object.
int run_daemon(const config::RegionConfig& cfg) {
  // SIGHUP rereads the listener's certificate once the watcher is set up (below); until then it
  // must not end the process (its default), and the pair loaded at start is read after this.
  std::signal(SIGHUP, SIG_IGN);
  // SIGTERM or SIGINT during the start (the port is already listening) waits, blocked, for the
  // stop handler, which then stops the daemon as usual; by default it would kill it mid-start.
  // Threads started meanwhile keep them blocked, so they reach the main thread only.
  sigset_t stop_set;
  sigemptyset(&stop_set);
  sigaddset(&stop_set, SIGTERM);
  sigaddset(&stop_set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_set, nullptr);
  log::Level level = log::Level::info;
  log::parse_level(cfg.log_level, level);
  log::set_level(level);
  log::set_static_field("region", cfg.region);
  log::info("daemon.starting",
            {{"version", version()}, {"commit", git_commit()}, {"config", cfg.source.string()}});

  // Configuration and files.
  auto conn_options = connection_options(cfg.database);
  if (!conn_options) {
    log::error("daemon.config_invalid", {{"error", conn_options.error().message}});
    return kExitConfig;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  StartFiles files;
  if (auto loaded = files.load(cfg, *registry); !loaded) {
    log::error("daemon.config_invalid", {{"error", loaded.error().message}});
    return kExitConfig;
  }
  const std::vector<Cidr> trusted_proxies = parse_cidrs(cfg.listener.trusted_proxies);

  // The database: one pool for the work, one for lookups of listener secrets.
  store::DatabasePool pool(*conn_options, pool_options(cfg.database));
  store::DatabasePool lookup_pool(*conn_options, lookup_pool_options(cfg));
  const auto check_schema = schema_check(cfg.database.migrate_on_start);
  if (const std::string problem = readiness_problem(pool.run<store::SchemaState>(check_schema));
      problem.empty()) {
    log::info("daemon.database_ready", {{"database", conn_options->describe()}});
  } else {
    // Keep running: /readyz reports it, and the check retries on every probe.
    log::error("daemon.database_not_ready",
               {{"database", conn_options->describe()}, {"reason", problem}});
  }

  // The servers, bound: the listener's port names this instance.
  DaemonMetrics metrics(*registry, cfg.region);
  http::ServerMetrics server_metrics(*registry);
  asio::io_context ioc;
  Servers servers(ioc, cfg, files.listener_cert->tls(), trusted_proxies, server_metrics);
  if (auto st = servers.listen(); !st) {
    log::error("daemon.listen_failed", {{"error", st.error().message}});
    return kExitFailure;
  }
  // The instance id owns this process's outbox rows; it is stable across restarts (host name and
  // listener port unless the config names it), so a restarted instance sends its own rows at once.
  const store::InstanceIdentity instance{
      cfg.dispatch.instance_id.value_or(host_name().substr(0, 40) + "-" +
                                        std::to_string(servers.listener.local_port())),
      host_name(), std::string(version())};
  log::set_static_field("instance", instance.instance_id);
  const store::DatabasePool::Job<std::uint64_t> beat = [&instance](store::Connection& c) {
    return store::record_instance_heartbeat(c, instance);
  };
  // The first heartbeat before the first callback: other instances must see this one alive
  // before it owns outbox rows.
  if (auto done = pool.run<std::uint64_t>(beat); !done) {
    log::warn("daemon.heartbeat_failed", {{"error", done.error().message}});
  }

  // The region's services on the servers' routes.
  RegionServices services(ioc, cfg, files, pool, lookup_pool, instance.instance_id, trusted_proxies,
                          metrics, *registry);
  ReadinessCache readiness(std::chrono::seconds(1));
  const ProbeSources probes{pool,
                            lookup_pool,
                            check_schema,
                            metrics.scrape,
                            *registry,
                            trusted_proxies,
                            parse_cidrs(cfg.listener.metrics_allow)};
  add_probe_routes(servers.router, probes, readiness);
  services.add_routes(servers);
  servers.start(cfg);

  // Background work and signals.
  std::atomic<bool> stopping{false};
  start_background_work(ioc, cfg, services, instance.instance_id, pool, beat, metrics, stopping);
  const Strand cert_strand = asio::make_strand(ioc);  // the certificate's poll and SIGHUP
  if (cfg.listener.tls_poll_interval.count() > 0) {
    asio::co_spawn(cert_strand,
                   files.listener_cert->watch(cfg.listener.tls_poll_interval, stopping),
                   asio::detached);
  }
  asio::signal_set reload_signals(ioc, SIGHUP);
  reload_on_signal(reload_signals, cert_strand, *files.listener_cert);
  trim_freed_memory(ioc, stopping);  // RSS back to the system after bursts of connections
  asio::signal_set stop_signals(ioc, SIGTERM, SIGINT);
  stop_on_signal(stop_signals, reload_signals, ioc, servers, services, cfg.limits.shutdown_grace,
                 stopping);
  pthread_sigmask(SIG_UNBLOCK, &stop_set, nullptr);

  run_threads(ioc, cfg.threads);

  const store::DatabasePool::Job<std::uint64_t> stopped = [&instance](store::Connection& c) {
    return store::record_instance_stopped(c, instance.instance_id);
  };
  if (auto done = pool.run<std::uint64_t>(stopped); !done) {
    log::debug("daemon.stop_record_failed", {{"error", done.error().message}});
  }
  lookup_pool.stop();
  pool.stop();
  log::info("daemon.stopped", {});
  return kExitOk;
}

}  // namespace mp::app
