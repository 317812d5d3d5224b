// Registration of the APNs pool metric families and the per-pool handles.
#include "apns/pool_metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>

namespace mp::apns {

namespace {
prometheus::Labels with(prometheus::Labels labels, const char* key, const char* value) {
  labels.emplace(key, value);
  return labels;
}
}  // namespace

void PoolMetrics::failed(const char* outcome) {
  failed_->Add(with(labels_, "reason", outcome)).Increment();
}

void PoolMetrics::connection_failure(const char* kind) {
  connection_failures_->Add(with(labels_, "kind", kind)).Increment();
}

void PoolMetrics::retry(const char* kind) {
  retries_->Add(with(labels_, "kind", kind)).Increment();
}

ApnsMetrics::ApnsMetrics(prometheus::Registry& registry)
    : sent_(prometheus::BuildCounter()
                .Name("mailpush_apns_sent_total")
                .Help("Notifications APNs accepted (200)")
                .Register(registry)),
      failed_(prometheus::BuildCounter()
                  .Name("mailpush_apns_failed_total")
                  .Help("Notifications that ended otherwise, by outcome")
                  .Register(registry)),
      in_flight_(prometheus::BuildGauge()
                     .Name("mailpush_apns_in_flight")
                     .Help("Sends started and not finished (including retry waits)")
                     .Register(registry)),
      connections_open_(prometheus::BuildGauge()
                            .Name("mailpush_apns_connections_open")
                            .Help("HTTP/2 connections to APNs that are open or draining")
                            .Register(registry)),
      connection_attempts_(prometheus::BuildCounter()
                               .Name("mailpush_apns_connection_attempts_total")
                               .Help("Connection attempts to APNs (TCP + TLS + HTTP/2)")
                               .Register(registry)),
      connection_failures_(prometheus::BuildCounter()
                               .Name("mailpush_apns_connection_failures_total")
                               .Help("Failed connection attempts: unreachable or credential")
                               .Register(registry)),
      retries_(prometheus::BuildCounter()
                   .Name("mailpush_apns_retries_total")
                   .Help("Resends: not_processed (at once), backoff (429/5xx), lost_answer")
                   .Register(registry)),
      breaker_state_(prometheus::BuildGauge()
                         .Name("mailpush_apns_breaker_state")
                         .Help("Credential breaker: 0 closed, 1 open, 2 half open")
                         .Register(registry)) {}

PoolMetrics ApnsMetrics::for_pool(const std::string& customer_id, const std::string& environment) {
  PoolMetrics m;
  m.labels_ = {{"customer", customer_id}, {"environment", environment}};
  m.sent_ = &sent_.Add(m.labels_);
  m.failed_ = &failed_;
  m.in_flight_ = &in_flight_.Add(m.labels_);
  m.connections_open_ = &connections_open_.Add(m.labels_);
  m.connection_attempts_ = &connection_attempts_.Add(m.labels_);
  m.connection_failures_ = &connection_failures_;
  m.retries_ = &retries_;
  m.breaker_state_ = &breaker_state_.Add(m.labels_);
  return m;
}

}  // namespace mp::apns
