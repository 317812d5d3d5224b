// Expiry tracking: warnings at 30, 14, 7 and 1 days before a customer's APNs certificate ends
// and on expiry, each sent once per credential across every instance of the region (claimed in
// MariaDB), through the log, the audit log and an optional webhook. An expired credential is
// marked expired, which stops its use; the customer's devices are kept for the renewal.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <boost/asio/awaitable.hpp>
#include <optional>
#include <string>

#include "portal/webhook.hpp"
#include "store/database_pool.hpp"

namespace mp::portal {

// The warning due for a certificate with `seconds_left` of validity: 30, 14, 7 or 1 (days), 0
// once expired, none when more than 30 days are left.
std::optional<int> warning_threshold(std::int64_t seconds_left);

struct ExpiryWarning {
  std::string customer_id;
  std::string topic;
  std::string fingerprint;
  std::string not_after;
  std::int64_t days_left = 0;
  int threshold = 0;  // 0 = expired
};

class ExpiryMonitor {
 public:
  ExpiryMonitor(store::DatabasePool& pool, std::string region, std::optional<WebhookTarget> webhook,
                prometheus::Registry& registry);
  // One pass: claims and announces the warnings now due; returns them.
  boost::asio::awaitable<Result<std::vector<ExpiryWarning>>> check();

 private:
  store::DatabasePool& pool_;
  std::string region_;
  std::optional<WebhookTarget> webhook_;
  prometheus::Family<prometheus::Counter>& warnings_;
  prometheus::Counter& webhook_failures_;
};

}  // namespace mp::portal
