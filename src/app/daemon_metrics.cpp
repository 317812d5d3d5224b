// Implementation of daemon_metrics.hpp.
#include "app/daemon_metrics.hpp"

#include "common/version.hpp"
#include "store/mariadb.hpp"

namespace mp::app {

ScrapeGauges::ScrapeGauges(prometheus::Registry& r)
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
      db_connects(prometheus::BuildGauge()
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

void ScrapeGauges::refresh_lookups(const store::PoolStats& s) {
  lookup_queue.Set(static_cast<double>(s.queued));
  lookup_busy.Set(static_cast<double>(s.busy));
  lookup_rejected.Set(static_cast<double>(s.rejected));
}

void ScrapeGauges::refresh(const store::PoolStats& s) {
  const store::StatementStats statements = store::statement_stats();
  db_statements.Set(static_cast<double>(statements.open));
  db_statements_evicted.Set(static_cast<double>(statements.evicted));
  db_queue.Set(static_cast<double>(s.queued));
  db_busy.Set(static_cast<double>(s.busy));
  db_connects.Set(static_cast<double>(s.connects));
  db_unavailable.Set(static_cast<double>(s.connection_failures));
  db_rejected.Set(static_cast<double>(s.rejected));
}

DaemonMetrics::DaemonMetrics(prometheus::Registry& r, const std::string& region)
    : scrape(r),
      batch_writes(prometheus::BuildHistogram()
                       .Name("mailpush_db_batch_writes")
                       .Help("Callbacks recorded per group-commit transaction")
                       .Register(r)
                       .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128,
                                                                        256, 512})),
      batch_seconds(
          prometheus::BuildHistogram()
              .Name("mailpush_db_batch_seconds")
              .Help("Time of one group-commit transaction, from its start to its commit")
              .Register(r)
              .Add({}, prometheus::Histogram::BucketBoundaries{0.0002, 0.0005, 0.001, 0.002, 0.005,
                                                               0.01, 0.02, 0.05, 0.1, 0.5, 1, 5})),
      batch_failures(prometheus::BuildCounter()
                         .Name("mailpush_db_batch_failures_total")
                         .Help("Group-commit transactions that failed (their callbacks got 503)")
                         .Register(r)
                         .Add({})),
      silent_subscriptions(
          prometheus::BuildGauge()
              .Name("mailpush_subscriptions_silent")
              .Help("Active registrations not heard from for over 2 x StatusFrequency")
              .Register(r)
              .Add({})),
      unconfirmed_expired(prometheus::BuildCounter()
                              .Name("mailpush_registrations_unconfirmed_expired_total")
                              .Help("Registrations ended because Exchange never called them "
                                    "(registration.unconfirmed_expiry_hours after their first "
                                    "heartbeat was due)")
                              .Register(r)
                              .Add({})),
      cache_entries(prometheus::BuildGauge()
                        .Name("mailpush_registration_cache_entries")
                        .Help("Registrations (and remembered unknown secrets) in the listener's "
                              "cache; its bound is limits.registration_cache_entries")
                        .Register(r)
                        .Add({})),
      cache_preload_seconds(prometheus::BuildGauge()
                                .Name("mailpush_registration_cache_preload_seconds")
                                .Help("How long the registration cache's preload at start took; "
                                      "absent until it is done")
                                .Register(r)) {
  prometheus::BuildGauge()
      .Name("mailpush_build_info")
      .Help("Version and commit of the running binary")
      .Register(r)
      .Add({{"version", version()}, {"commit", git_commit()}, {"region", region}})
      .Set(1);
}

}  // namespace mp::app
