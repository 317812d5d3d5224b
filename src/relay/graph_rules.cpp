// The Graph rules: clientState and tenant checks, the unread set, the binding.
#include "relay/graph_rules.hpp"

#include <algorithm>

#include "graph/unread_set.hpp"

namespace mp::relay {
namespace {

// The update of a row whose unread set is `set`, binding `subscription_id`.
store::GraphUpdate update_of(const store::GraphRegistration& row, const graph::UnreadSet& set,
                             std::string subscription_id) {
  store::GraphUpdate u;
  u.write = true;
  u.subscription_id = std::move(subscription_id);
  u.baseline = set.baseline();
  u.items = set.encode();
  u.unread_count = set.count();
  u.count_moved = u.unread_count != row.unread_count;
  return u;
}

}  // namespace

Bytes client_state_hash(std::string_view client_state) {
  return sha256(client_state);
}

bool client_state_matches(const Bytes& stored, std::string_view presented) {
  const Bytes h = sha256(presented);
  // A registration without a stored hash (never written so for Graph) matches nothing.
  return stored.size() == h.size() && constant_time_equal(stored, h);
}

GraphDecision apply_graph_items(const store::GraphRegistration& row,
                                const std::vector<graph::Item>& items) {
  GraphDecision d;
  graph::UnreadSet set = graph::UnreadSet::decode(row.items, row.baseline);
  std::string bound = row.subscription_id;
  std::optional<std::int64_t> expires;
  bool any = false;
  // The wake a lifecycle event asks for; a subscription to create again outranks a
  // reauthorization, which outranks a resync.
  int wake_rank = 0;
  std::string wake;
  auto want_wake = [&](int rank, const char* reason) {
    if (rank > wake_rank) {
      wake_rank = rank;
      wake = reason;
    }
  };
  for (const auto& item : items) {
    if (!client_state_matches(row.client_state_hash, item.client_state)) {
      ++d.tally.wrong_client_state;
      continue;
    }
    if (!row.tenant.empty() && !item.tenant_id.empty() && item.tenant_id != row.tenant) {
      ++d.tally.wrong_tenant;
      continue;
    }
    any = true;
    bound = item.subscription_id;
    if (item.expires_at) expires = std::max(expires.value_or(*item.expires_at), *item.expires_at);
    switch (item.lifecycle) {
      case graph::LifecycleEvent::reauthorization_required:
        ++d.tally.reauthorization_required;
        want_wake(2, "reauthorize");
        continue;
      case graph::LifecycleEvent::subscription_removed:
        // The subscription is gone: nothing is bound until the app's new one notifies.
        ++d.tally.subscription_removed;
        bound.clear();
        want_wake(3, "resubscribe");
        continue;
      case graph::LifecycleEvent::missed:
        ++d.tally.missed;
        want_wake(1, "resync");
        continue;
      case graph::LifecycleEvent::other:
        ++d.tally.other;
        continue;
      case graph::LifecycleEvent::none:
        break;
    }
    if (item.message_id.empty() &&
        (item.change == graph::ChangeType::created || item.change == graph::ChangeType::deleted)) {
      ++d.tally.other;
      continue;
    }
    using Change = graph::UnreadSet::Change;
    switch (item.change) {
      case graph::ChangeType::created:
        if (set.created(graph::UnreadSet::digest(item.message_id)) == Change::added) {
          ++d.tally.created;
        } else {
          ++d.tally.unchanged;
        }
        break;
      case graph::ChangeType::deleted:
        if (set.deleted(graph::UnreadSet::digest(item.message_id)) == Change::removed) {
          ++d.tally.deleted;
        } else {
          ++d.tally.unchanged;
        }
        break;
      case graph::ChangeType::updated:
        ++d.tally.unchanged;
        break;
      case graph::ChangeType::other:
        ++d.tally.other;
        break;
    }
  }
  if (!any) return d;  // nothing passed: nothing is written
  d.update = update_of(row, set, std::move(bound));
  d.update.expires_at = expires;
  d.update.wake_reason = std::move(wake);
  return d;
}

GraphDecision apply_graph_resync(const store::GraphRegistration& row, std::uint32_t count) {
  GraphDecision d;
  graph::UnreadSet set = graph::UnreadSet::decode(row.items, row.baseline);
  set.resync(count);
  d.update = update_of(row, set, row.subscription_id);
  d.update.heard = false;
  return d;
}

}  // namespace mp::relay
