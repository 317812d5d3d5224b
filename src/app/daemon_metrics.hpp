// The daemon's own metrics: gauges read on each scrape from state that lives elsewhere (the
// database pools, the statement cache, readiness) and the families the background work and the
// group commit update. The components register their own metrics themselves.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>

#include "store/database_pool.hpp"

namespace mp::app {

// Gauges refreshed on each scrape from state that lives elsewhere.
struct ScrapeGauges {
  explicit ScrapeGauges(prometheus::Registry& r);
  void refresh_lookups(const store::PoolStats& s);
  void refresh(const store::PoolStats& s);

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

// What the daemon's own loops and the group commit observe.
struct DaemonMetrics {
  DaemonMetrics(prometheus::Registry& r, const std::string& region);

  ScrapeGauges scrape;
  prometheus::Histogram& batch_writes;
  prometheus::Histogram& batch_seconds;
  prometheus::Counter& batch_failures;
  prometheus::Gauge& silent_subscriptions;
  prometheus::Counter& unconfirmed_expired;
  prometheus::Gauge& cache_entries;
  prometheus::Family<prometheus::Gauge>& cache_preload_seconds;  // absent until the preload ends
};

}  // namespace mp::app
