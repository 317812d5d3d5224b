// What a Graph notification does to its registration (DESIGN.md flow 7): pure rules, decided on
// the row as the store locked it, and unit-tested without a database.
//
// Only items whose clientState hashes to the registration's pass (compared in constant time);
// an item of another tenant than the one the app stated is dropped too. Passing items bind the
// subscription they came from (the app recreates its subscription with the same clientState),
// `created` / `deleted` move the unread set (graph::UnreadSet), `updated` changes nothing, and
// lifecycle events are tallied for the caller; `subscriptionRemoved` unbinds the subscription.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/crypto.hpp"
#include "graph/notification.hpp"
#include "store/graph_store.hpp"

namespace mp::relay {

struct GraphTally {
  std::size_t created = 0;    // items that added a message to the unread set
  std::size_t deleted = 0;    // items that took one out (or lowered the baseline)
  std::size_t unchanged = 0;  // duplicates, resends, `updated`, deletes of unknown messages at 0
  std::size_t wrong_client_state = 0;
  std::size_t wrong_tenant = 0;
  std::size_t other = 0;  // an unknown changeType or lifecycle event, or no message id
  std::size_t reauthorization_required = 0;
  std::size_t subscription_removed = 0;
  std::size_t missed = 0;
  std::size_t passed() const noexcept {
    return created + deleted + unchanged + other + reauthorization_required + subscription_removed +
           missed;
  }
};

struct GraphDecision {
  store::GraphUpdate update;
  GraphTally tally;
};

// SHA-256 of a clientState: what the registration stores and notifications are compared with.
Bytes client_state_hash(std::string_view client_state);
// True when `presented` hashes to `stored` (constant time in the hash).
bool client_state_matches(const Bytes& stored, std::string_view presented);

// The items of one POST against the registration's row.
GraphDecision apply_graph_items(const store::GraphRegistration& row,
                                const std::vector<graph::Item>& items);

// The app reports the unread count it sees (PUT /v1/registrations/self/unread).
GraphDecision apply_graph_resync(const store::GraphRegistration& row, std::uint32_t count);

}  // namespace mp::relay
