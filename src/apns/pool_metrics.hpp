// Prometheus metrics of the APNs pools, labelled by customer (the public Customer ID, never a
// device token) and environment.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <string>

namespace mp::apns {

// One pool's handles into the families; cheap to use on the hot path (atomics only), except
// failed(), which looks its label up (failures are rare).
class PoolMetrics {
 public:
  void sent() { sent_->Increment(); }
  void failed(const char* outcome);
  void in_flight(double delta) { in_flight_->Increment(delta); }
  void connection_opened() { connections_open_->Increment(); }
  void connection_closed() { connections_open_->Decrement(); }
  void connection_attempt() { connection_attempts_->Increment(); }
  void connection_failure(const char* kind);
  void retry(const char* kind);
  void breaker_state(int state) { breaker_state_->Set(state); }

 private:
  friend class ApnsMetrics;
  PoolMetrics() = default;
  prometheus::Labels labels_;
  prometheus::Counter* sent_ = nullptr;
  prometheus::Family<prometheus::Counter>* failed_ = nullptr;
  prometheus::Gauge* in_flight_ = nullptr;
  prometheus::Gauge* connections_open_ = nullptr;
  prometheus::Counter* connection_attempts_ = nullptr;
  prometheus::Family<prometheus::Counter>* connection_failures_ = nullptr;
  prometheus::Family<prometheus::Counter>* retries_ = nullptr;
  prometheus::Gauge* breaker_state_ = nullptr;
};

// The metric families, registered once per registry; pools get their labelled handles here.
//   mailpush_apns_sent_total{customer,environment}                 delivered (200)
//   mailpush_apns_failed_total{customer,environment,reason}        final outcome other than 200:
//       unregistered, bad_device_token, topic_mismatch, credential_failed, permanent_payload,
//       retry_exhausted
//   mailpush_apns_in_flight{customer,environment}                  sends not yet finished
//   mailpush_apns_connections_open{customer,environment}
//   mailpush_apns_connection_attempts_total{customer,environment}
//   mailpush_apns_connection_failures_total{customer,environment,kind}  unreachable|credential
//   mailpush_apns_retries_total{customer,environment,kind}   not_processed|backoff|lost_answer
//   mailpush_apns_breaker_state{customer,environment}   0 closed, 1 open, 2 half open
class ApnsMetrics {
 public:
  explicit ApnsMetrics(prometheus::Registry& registry);
  // Two pools with the same labels share handles (gauges move by deltas, so they add up).
  PoolMetrics for_pool(const std::string& customer_id, const std::string& environment);

 private:
  prometheus::Family<prometheus::Counter>& sent_;
  prometheus::Family<prometheus::Counter>& failed_;
  prometheus::Family<prometheus::Gauge>& in_flight_;
  prometheus::Family<prometheus::Gauge>& connections_open_;
  prometheus::Family<prometheus::Counter>& connection_attempts_;
  prometheus::Family<prometheus::Counter>& connection_failures_;
  prometheus::Family<prometheus::Counter>& retries_;
  prometheus::Family<prometheus::Gauge>& breaker_state_;
};

}  // namespace mp::apns
