// The Graph use case: limits before the database, one read for a validation, one transaction
// for a notification, counted results.
#include "relay/graph_service.hpp"

#include "common/crypto.hpp"
#include "common/log.hpp"

namespace mp::relay {
namespace asio = boost::asio;

const char* graph_outcome_name(GraphOutcome outcome) noexcept {
  switch (outcome) {
    case GraphOutcome::accepted:
      return "accepted";
    case GraphOutcome::unknown:
      return "unknown";
    case GraphOutcome::rate_limited:
      return "rate_limited";
    case GraphOutcome::unavailable:
      break;
  }
  return "unavailable";
}

GraphService::GraphService(store::GraphStore& store, prometheus::Registry& registry,
                           GraphLimits limits)
    : store_(store),
      unknown_by_address_(limits.unknown_burst, limits.unknown_per_second,
                          limits.tracked_addresses),
      requests_(prometheus::BuildCounter()
                    .Name("mailpush_graph_requests_total")
                    .Help("Graph validation and notification requests, by kind and result")
                    .Register(registry)),
      items_(prometheus::BuildCounter()
                 .Name("mailpush_graph_items_total")
                 .Help("Graph notification items by what they did (created, deleted, unchanged, "
                       "wrong_client_state, wrong_tenant, other, and lifecycle events)")
                 .Register(registry)) {
  if (limits.registration_per_second > 0) {
    per_registration_.emplace(limits.registration_burst, limits.registration_per_second, 200000);
  }
}

std::optional<GraphOutcome> GraphService::precheck(std::string_view secret, const Bytes& hash,
                                                   const IpAddress& caller) {
  const auto now = TokenBucketLimiter::Clock::now();
  if (unknown_by_address_.blocked(address_limit_key(caller), now)) {
    return GraphOutcome::rate_limited;
  }
  if (secret.empty() || secret.size() > 128 || (filter_ && !filter_(secret))) {
    count_unknown(caller);
    return GraphOutcome::unknown;
  }
  if (per_registration_ && per_registration_->take(std::string(hash.begin(), hash.end()), now)) {
    return GraphOutcome::rate_limited;
  }
  return std::nullopt;
}

void GraphService::count_unknown(const IpAddress& caller) {
  (void)unknown_by_address_.take(address_limit_key(caller), TokenBucketLimiter::Clock::now());
}

asio::awaitable<GraphResult> GraphService::validate(std::string_view secret,
                                                    const IpAddress& caller) {
  GraphResult result;
  const Bytes hash = sha384(secret);
  if (auto early = precheck(secret, hash, caller)) {
    result.outcome = *early;
  } else {
    auto found = co_await store_.find(hash);
    if (!found) {
      failed_log_.write(log::Level::warn, "graph.lookup_failed",
                        {{"error", found.error().message},
                         {"effect", "answered 503 with Retry-After; Graph validates again"}});
      result.outcome = GraphOutcome::unavailable;
    } else if (!*found) {
      count_unknown(caller);
      result.outcome = GraphOutcome::unknown;
    } else {
      result.outcome = GraphOutcome::accepted;
      result.customer_id = (*found)->customer_public_id;
      if (!(*found)->heard) note_validated((*found)->id);
    }
  }
  requests_.Add({{"kind", "validation"}, {"result", graph_outcome_name(result.outcome)}})
      .Increment();
  co_return result;
}

void GraphService::note_validated(std::int64_t registration_id) {
  std::lock_guard lock(validated_mutex_);
  if (validated_.size() < kMaxValidated) validated_.insert(registration_id);
}

std::size_t GraphService::validated_pending() const {
  std::lock_guard lock(validated_mutex_);
  return validated_.size();
}

asio::awaitable<void> GraphService::flush_validated() {
  std::vector<std::int64_t> ids;
  {
    std::lock_guard lock(validated_mutex_);
    ids.assign(validated_.begin(), validated_.end());
    validated_.clear();
  }
  if (ids.empty()) co_return;
  auto confirmed = co_await store_.confirm(ids);
  if (!confirmed) {
    {
      std::lock_guard lock(validated_mutex_);
      for (const auto id : ids) {
        if (validated_.size() >= kMaxValidated) break;
        validated_.insert(id);
      }
    }
    failed_log_.write(log::Level::warn, "graph.confirm_failed",
                      {{"registrations", ids.size()},
                       {"error", confirmed.error().message},
                       {"effect", "kept in memory and written with the next flush"}});
    co_return;
  }
  if (*confirmed > 0) {
    log::info("graph.confirmed", {{"registrations", *confirmed},
                                  {"why", "Graph validated their URLs: a subscription exists"}});
  }
}

// Arguments are named values, never temporaries inside co_await: GCC 12 destroys a temporary
// inside a co_await expression twice.
asio::awaitable<GraphResult> GraphService::record(std::string_view secret, const IpAddress& caller,
                                                  const RowDecision& decide) {
  GraphResult result;
  const Bytes hash = sha384(secret);
  if (auto early = precheck(secret, hash, caller)) {
    result.outcome = *early;
    co_return result;
  }
  // The decision runs on the database thread, on the row as locked (again if the transaction
  // is re-run); the tally comes back through the shared record.
  const auto tally = std::make_shared<GraphTally>();
  const store::GraphDecide on_row = [decide, tally](const store::GraphRegistration& row) {
    GraphDecision d = decide(row);
    *tally = d.tally;
    return d.update;
  };
  auto recorded = co_await store_.record(hash, on_row);
  if (!recorded) {
    // Throttled: under overload every late notification fails the same way.
    failed_log_.write(log::Level::warn, "graph.record_failed",
                      {{"error", recorded.error().message},
                       {"effect", "answered 503 with Retry-After; Graph sends it again"}});
    result.outcome = GraphOutcome::unavailable;
  } else if (!*recorded) {
    count_unknown(caller);
    result.outcome = GraphOutcome::unknown;
  } else {
    result.outcome = GraphOutcome::accepted;
    result.customer_id = (*recorded)->before.customer_public_id;
    result.marked = (*recorded)->marked;
    result.tally = *tally;
  }
  co_return result;
}

asio::awaitable<GraphResult> GraphService::notify(std::string_view secret,
                                                  const graph::Notifications& notifications,
                                                  const IpAddress& caller) {
  const RowDecision decide = [items = notifications.items](const store::GraphRegistration& row) {
    return apply_graph_items(row, items);
  };
  GraphResult result = co_await record(secret, caller, decide);
  count(result);
  co_return result;
}

asio::awaitable<GraphResult> GraphService::resync(std::string_view capability, std::uint32_t count,
                                                  const IpAddress& caller) {
  const RowDecision decide = [count](const store::GraphRegistration& row) {
    return apply_graph_resync(row, count);
  };
  GraphResult result = co_await record(capability, caller, decide);
  requests_.Add({{"kind", "resync"}, {"result", graph_outcome_name(result.outcome)}}).Increment();
  co_return result;
}

void GraphService::count(const GraphResult& result) {
  requests_.Add({{"kind", "notification"}, {"result", graph_outcome_name(result.outcome)}})
      .Increment();
  const GraphTally& t = result.tally;
  for (const auto& [name, n] : {std::pair<const char*, std::size_t>{"created", t.created},
                                {"deleted", t.deleted},
                                {"unchanged", t.unchanged},
                                {"wrong_client_state", t.wrong_client_state},
                                {"wrong_tenant", t.wrong_tenant},
                                {"other", t.other},
                                {"reauthorization_required", t.reauthorization_required},
                                {"subscription_removed", t.subscription_removed},
                                {"missed", t.missed}}) {
    if (n > 0) items_.Add({{"result", name}}).Increment(static_cast<double>(n));
  }
}

}  // namespace mp::relay
