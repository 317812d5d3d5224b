// Registration and update of the server's Prometheus metrics.
#include "http/server_metrics.hpp"

#include <prometheus/text_serializer.h>

namespace mp::http {

ServerMetrics::ServerMetrics(prometheus::Registry& registry)
    : requests_(prometheus::BuildCounter()
                    .Name("mailpush_http_requests_total")
                    .Help("HTTP requests answered, by route and status code")
                    .Register(registry)),
      durations_(prometheus::BuildHistogram()
                     .Name("mailpush_http_request_duration_seconds")
                     .Help("Time from a request's headers to its reply being written, by route")
                     .Register(registry)),
      refused_(prometheus::BuildCounter()
                   .Name("mailpush_http_requests_refused_total")
                   .Help("Requests refused before routing, by reason")
                   .Register(registry)),
      connections_total_(prometheus::BuildCounter()
                             .Name("mailpush_http_connections_total")
                             .Help("TCP connections accepted")
                             .Register(registry)
                             .Add({})),
      connections_active_(prometheus::BuildGauge()
                              .Name("mailpush_http_connections_active")
                              .Help("Connections open now")
                              .Register(registry)
                              .Add({})),
      connections_rejected_(prometheus::BuildCounter()
                                .Name("mailpush_http_connections_rejected_total")
                                .Help("Connections closed at once, by reason: max_connections (and "
                                      "none idle to close instead), per_address (its open "
                                      "connections), address_rate (its new connections per second)")
                                .Register(registry)),
      rejected_max_(connections_rejected_.Add({{"reason", "max_connections"}})),
      rejected_per_address_(connections_rejected_.Add({{"reason", "per_address"}})),
      rejected_rate_(connections_rejected_.Add({{"reason", "address_rate"}})),
      connections_evicted_(prometheus::BuildCounter()
                               .Name("mailpush_http_connections_evicted_total")
                               .Help("Idle connections closed to admit new ones at max_connections")
                               .Register(registry)
                               .Add({})),
      handshake_failures_(prometheus::BuildCounter()
                              .Name("mailpush_http_tls_handshake_failures_total")
                              .Help("TLS handshakes that failed or timed out")
                              .Register(registry)
                              .Add({})) {}

void ServerMetrics::connection_rejected(std::string_view reason) {
  if (reason == "per_address") {
    rejected_per_address_.Increment();
  } else if (reason == "address_rate") {
    rejected_rate_.Increment();
  } else {
    rejected_max_.Increment();
  }
}

void ServerMetrics::request_done(std::string_view route, unsigned status, double seconds) {
  static const prometheus::Histogram::BucketBoundaries buckets{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  prometheus::Histogram* duration = nullptr;
  prometheus::Counter* requests = nullptr;
  {
    std::lock_guard lock(series_mutex_);
    auto it = series_.find(route);
    if (it == series_.end()) {
      it = series_.emplace(std::string(route), RouteSeries{}).first;
      it->second.duration = &durations_.Add({{"route", it->first}}, buckets);
    }
    auto& counter = it->second.by_status[status];
    if (!counter)
      counter = &requests_.Add({{"route", it->first}, {"code", std::to_string(status)}});
    duration = it->second.duration;
    requests = counter;
  }
  requests->Increment();
  duration->Observe(seconds);
}

void ServerMetrics::request_refused(std::string_view reason) {
  refused_.Add({{"reason", std::string(reason)}}).Increment();
}

std::string serialize_metrics(const prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace mp::http
