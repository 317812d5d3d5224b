// The Graph use case: limits before the database, one read for a validation, one transaction
// for a notification, counted results.
#include "relay/graph_service.hpp"

#include "common/crypto.hpp"
#include "common/log.hpp"

namespace mp::relay {
namespace asio = boost::asio;

namespace {

// mailpush_graph_items_total's results, in the order of GraphService::count's tally.
constexpr const char* kItemResults[] = {"created",
                                        "deleted",
                                        "unchanged",
                                        "wrong_client_state",
                                        "wrong_tenant",
                                        "other",
                                        "reauthorization_required",
                                        "subscription_removed",
                                        "missed"};

}  // namespace

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
  const char* kinds[kRequestKinds] = {"validation", "notification", "resync"};
  for (int k = 0; k < kRequestKinds; ++k) {
    for (std::size_t o = 0; o < request_counters_[k].size(); ++o) {
      request_counters_[k][o] = &requests_.Add(
          {{"kind", kinds[k]}, {"result", graph_outcome_name(static_cast<GraphOutcome>(o))}});
    }
  }
  for (std::size_t i = 0; i < item_counters_.size(); ++i) {
    item_counters_[i] = &items_.Add({{"result", kItemResults[i]}});
  }
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
  count_request(kValidation, result.outcome);
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
  // One copy of the items, shared by every copy of the decision (the store keeps its own).
  const auto items = std::make_shared<const std::vector<graph::Item>>(notifications.items);
  const RowDecision decide = [items](const store::GraphRegistration& row) {
    return apply_graph_items(row, *items);
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
  count_request(kResync, result.outcome);
  co_return result;
}

void GraphService::count_request(RequestKind kind, GraphOutcome outcome) {
  request_counters_[kind][static_cast<std::size_t>(outcome)]->Increment();
}

void GraphService::count(const GraphResult& result) {
  count_request(kNotification, result.outcome);
  const GraphTally& t = result.tally;
  const std::size_t counts[] = {t.created,
                                t.deleted,
                                t.unchanged,
                                t.wrong_client_state,
                                t.wrong_tenant,
                                t.other,
                                t.reauthorization_required,
                                t.subscription_removed,
                                t.missed};
  static_assert(std::size(counts) == std::size(kItemResults));
  for (std::size_t i = 0; i < std::size(counts); ++i) {
    if (counts[i] > 0) item_counters_[i]->Increment(static_cast<double>(counts[i]));
  }
}

}  // namespace mp::relay
