// Prometheus metrics of the HTTPS server: requests by route and status, latency, connections.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace mp::http {

class ServerMetrics {
 public:
  explicit ServerMetrics(prometheus::Registry& registry);

  void request_done(std::string_view route, unsigned status, double seconds);
  // Requests refused before routing: body_limit, header_limit, bad_request, timeout, ...
  void request_refused(std::string_view reason);
  void connection_opened() {
    connections_total_.Increment();
    connections_active_.Increment();
  }
  void connection_closed() { connections_active_.Decrement(); }
  // Closed at once: max_connections (none idle to close instead), per_address, address_rate.
  void connection_rejected(std::string_view reason);
  // Idle connections closed to admit new ones at max_connections.
  void connection_evicted() { connections_evicted_.Increment(); }
  void handshake_failed() { handshake_failures_.Increment(); }

 private:
  // A route's series, resolved once: Family::Add hashes a label map (and builds a histogram
  // it then throws away) on every call.
  struct RouteSeries {
    prometheus::Histogram* duration = nullptr;
    std::map<unsigned, prometheus::Counter*> by_status;
  };
  std::mutex series_mutex_;
  std::map<std::string, RouteSeries, std::less<>> series_;

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& durations_;
  prometheus::Family<prometheus::Counter>& refused_;
  prometheus::Counter& connections_total_;
  prometheus::Gauge& connections_active_;
  prometheus::Family<prometheus::Counter>& connections_rejected_;
  prometheus::Counter& rejected_max_;
  prometheus::Counter& rejected_per_address_;
  prometheus::Counter& rejected_rate_;
  prometheus::Counter& connections_evicted_;
  prometheus::Counter& handshake_failures_;
};

// The registry's contents in Prometheus text exposition format.
std::string serialize_metrics(const prometheus::Registry& registry);

}  // namespace mp::http
