// The Graph listener's use case (DESIGN.md flow 7; issue 20): the validation handshake and the
// change and lifecycle notifications of a Graph registration, found by its capability (the
// secret in its URL). The relay holds no Microsoft credential: the app creates and renews the
// subscription with its own token; what proves a notification is the URL's secret and the
// clientState the app chose, which only the app and Graph know.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/registry.h>

#include <array>
#include <boost/asio/awaitable.hpp>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/cidr.hpp"
#include "common/log.hpp"
#include "common/token_bucket.hpp"
#include "graph/notification.hpp"
#include "relay/graph_rules.hpp"
#include "store/graph_store.hpp"

namespace mp::relay {

enum class GraphOutcome {
  accepted,      // recorded (or every item dropped): 202, or 200 with the token
  unknown,       // no active Graph registration has this secret: 404
  rate_limited,  // the caller's address is over its unknown-secret limit: 429
  unavailable,   // the database cannot record now: 503 (Graph retries)
};
const char* graph_outcome_name(GraphOutcome outcome) noexcept;
inline constexpr std::size_t kGraphOutcomes =
    static_cast<std::size_t>(GraphOutcome::unavailable) + 1;

struct GraphResult {
  GraphOutcome outcome = GraphOutcome::unavailable;
  GraphTally tally;
  std::string customer_id;  // public, for logs
  bool marked = false;      // a pending badge was marked
};

struct GraphLimits {
  // Unknown secrets per caller address (a burst, then a rate), as for the EWS listener.
  double unknown_burst = 100;
  double unknown_per_second = 20;
  std::size_t tracked_addresses = 100000;
  // Requests per registration (a burst, then a rate; 0: no limit), as the EWS listener's
  // callbacks: whoever holds a URL can post to it, but not faster than this.
  double registration_burst = 120;
  double registration_per_second = 4;
};

class GraphService {
 public:
  GraphService(store::GraphStore& store, prometheus::Registry& registry, GraphLimits limits = {});
  // Secrets that fail it are unknown without a lookup (the region's capability tag check).
  void set_secret_filter(std::function<bool(std::string_view)> filter) {
    filter_ = std::move(filter);
  }

  // Graph's validation request: accepted when an active Graph registration has the secret. No
  // write before the answer: a registration never heard is noted for flush_validated.
  boost::asio::awaitable<GraphResult> validate(std::string_view secret, const IpAddress& caller);
  // Writes, in one statement a chunk, that Graph validated the noted registrations (their
  // last-heard time), so that a confirmed subscription is not ended as unconfirmed while its
  // mailbox gets no mail. On failure they stay noted for the next flush. Run every
  // listener.heard_flush_s and at shutdown.
  boost::asio::awaitable<void> flush_validated();
  std::size_t validated_pending() const;
  // A notification body's items, recorded in one transaction before the answer.
  boost::asio::awaitable<GraphResult> notify(std::string_view secret,
                                             const graph::Notifications& notifications,
                                             const IpAddress& caller);
  // The app reports the unread count it sees (its capability is the URL's secret): the count
  // becomes the baseline and the badge follows. `unknown` for an EWS registration too.
  boost::asio::awaitable<GraphResult> resync(std::string_view capability, std::uint32_t count,
                                             const IpAddress& caller);

 private:
  // The outcome that ends the request before the database, if any: the caller's address over
  // its unknown-URL limit, a secret of the wrong form, or the registration over its own limit.
  std::optional<GraphOutcome> precheck(std::string_view secret, const Bytes& hash,
                                       const IpAddress& caller);
  void count_unknown(const IpAddress& caller);
  void count(const GraphResult& result);
  void note_validated(std::int64_t registration_id);
  // One transaction on the registration's row with `decide`; the outcome and what it did.
  using RowDecision = std::function<GraphDecision(const store::GraphRegistration&)>;
  boost::asio::awaitable<GraphResult> record(std::string_view secret, const IpAddress& caller,
                                             const RowDecision& decide);

  store::GraphStore& store_;
  std::function<bool(std::string_view)> filter_;
  TokenBucketLimiter unknown_by_address_;
  std::optional<TokenBucketLimiter> per_registration_;  // by secret hash
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& items_;
  // The series of both families, found once (a lookup by labels per request costs a map of
  // strings): by request kind (validation, notification, resync) and outcome; by item result.
  enum RequestKind { kValidation, kNotification, kResync, kRequestKinds };
  std::array<std::array<prometheus::Counter*, kGraphOutcomes>, kRequestKinds> request_counters_{};
  std::array<prometheus::Counter*, 9> item_counters_{};
  void count_request(RequestKind kind, GraphOutcome outcome);
  log::Throttle failed_log_;
  // Validated, never-heard registrations waiting for flush_validated; at most kMaxValidated (a
  // flood of validations of real URLs cannot grow it further: the rest wait for a next one).
  static constexpr std::size_t kMaxValidated = 100'000;
  mutable std::mutex validated_mutex_;
  std::set<std::int64_t> validated_;
};

}  // namespace mp::relay
