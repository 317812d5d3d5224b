// apply_graph_items / apply_graph_resync on a registration row: clientState and tenant checks,
// the binding, the unread set, lifecycle events, and what is written.
#include "relay/graph_rules.hpp"

#include <gtest/gtest.h>

#include "graph/unread_set.hpp"

namespace mp::relay {
namespace {

constexpr const char* kState = "c3RhdGUtb2YtZGV2aWNlLTE";

store::GraphRegistration row() {
  store::GraphRegistration r;
  r.id = 7;
  r.customer_public_id = "dev-x";
  r.customer_active = true;
  r.device_active = true;
  r.client_state_hash = client_state_hash(kState);
  return r;
}

graph::Item change(graph::ChangeType type, std::string message, std::string state = kState) {
  graph::Item i;
  i.subscription_id = "sub-1";
  i.client_state = std::move(state);
  i.change = type;
  i.message_id = std::move(message);
  return i;
}

graph::Item lifecycle(graph::LifecycleEvent event) {
  graph::Item i;
  i.subscription_id = "sub-1";
  i.client_state = kState;
  i.lifecycle = event;
  return i;
}

// The row after `d` was written.
store::GraphRegistration after(store::GraphRegistration r, const GraphDecision& d) {
  if (!d.update.write) return r;
  r.subscription_id = d.update.subscription_id;
  r.baseline = d.update.baseline;
  r.items = d.update.items;
  r.unread_count = d.update.unread_count;
  return r;
}

using graph::ChangeType;

TEST(GraphRules, CreatedCountsAndBindsTheSubscription) {
  const auto d = apply_graph_items(row(), {change(ChangeType::created, "m1")});
  EXPECT_TRUE(d.update.write);
  EXPECT_EQ(d.update.unread_count, 1u);
  EXPECT_TRUE(d.update.count_moved);
  EXPECT_EQ(d.update.subscription_id, "sub-1");
  EXPECT_EQ(d.tally.created, 1u);
}

TEST(GraphRules, TheSampleBatchCountsTwoMessagesOnce) {
  // graph-samples/03: created m1, created m2, updated m2.
  const auto d = apply_graph_items(
      row(), {change(ChangeType::created, "m1"), change(ChangeType::created, "m2"),
              change(ChangeType::updated, "m2")});
  EXPECT_EQ(d.update.unread_count, 2u);
  EXPECT_EQ(d.tally.created, 2u);
  EXPECT_EQ(d.tally.unchanged, 1u);
  // Graph resends the whole batch: nothing changes twice, and no badge is marked.
  const auto again = apply_graph_items(
      after(row(), d), {change(ChangeType::created, "m1"), change(ChangeType::created, "m2"),
                        change(ChangeType::updated, "m2")});
  EXPECT_EQ(again.update.unread_count, 2u);
  EXPECT_FALSE(again.update.count_moved);
  EXPECT_EQ(again.tally.unchanged, 3u);
}

TEST(GraphRules, DeletedLowersOnceAndNeverBelowZero) {
  auto r = after(row(), apply_graph_items(row(), {change(ChangeType::created, "m1")}));
  const auto d =
      apply_graph_items(r, {change(ChangeType::deleted, "m1"), change(ChangeType::deleted, "m1"),
                            change(ChangeType::deleted, "never-seen")});
  EXPECT_EQ(d.update.unread_count, 0u);
  EXPECT_EQ(d.tally.deleted, 1u);
  EXPECT_EQ(d.tally.unchanged, 2u);
}

TEST(GraphRules, AWrongClientStateOrTenantIsDroppedAndNothingWritten) {
  auto r = row();
  r.tenant = "tenant-a";
  auto other_tenant = change(ChangeType::created, "m2");
  other_tenant.tenant_id = "tenant-b";
  const auto d = apply_graph_items(r, {change(ChangeType::created, "m1", "guessed-client-state"),
                                       other_tenant, change(ChangeType::created, "m3", "")});
  EXPECT_FALSE(d.update.write);
  EXPECT_EQ(d.tally.wrong_client_state, 2u);
  EXPECT_EQ(d.tally.wrong_tenant, 1u);
  EXPECT_EQ(d.tally.passed(), 0u);
}

TEST(GraphRules, ARegistrationWithoutAStoredHashMatchesNothing) {
  auto r = row();
  r.client_state_hash.clear();
  const auto d = apply_graph_items(r, {change(ChangeType::created, "m1", "")});
  EXPECT_FALSE(d.update.write);
  EXPECT_EQ(d.tally.wrong_client_state, 1u);
}

TEST(GraphRules, GoodItemsPassBesideBadOnes) {
  const auto d = apply_graph_items(
      row(), {change(ChangeType::created, "m1", "wrong"), change(ChangeType::created, "m2")});
  EXPECT_TRUE(d.update.write);
  EXPECT_EQ(d.update.unread_count, 1u);
  EXPECT_EQ(d.tally.wrong_client_state, 1u);
}

TEST(GraphRules, LifecycleEventsAreTalliedAndARemovedSubscriptionUnbinds) {
  auto r = row();
  r.subscription_id = "sub-1";
  auto removed = lifecycle(graph::LifecycleEvent::subscription_removed);
  removed.expires_at = 1797099825;
  const auto d = apply_graph_items(r, {lifecycle(graph::LifecycleEvent::reauthorization_required),
                                       lifecycle(graph::LifecycleEvent::missed), removed});
  EXPECT_TRUE(d.update.write);
  EXPECT_EQ(d.update.subscription_id, "");
  EXPECT_FALSE(d.update.count_moved);
  EXPECT_EQ(d.update.expires_at, 1797099825);
  EXPECT_EQ(d.tally.reauthorization_required, 1u);
  EXPECT_EQ(d.tally.missed, 1u);
  EXPECT_EQ(d.tally.subscription_removed, 1u);
  EXPECT_EQ(d.update.wake_reason, "resubscribe") << "the strongest of the batch's wakes";
  const auto reauth =
      apply_graph_items(r, {lifecycle(graph::LifecycleEvent::reauthorization_required)});
  EXPECT_EQ(reauth.update.wake_reason, "reauthorize");
  EXPECT_EQ(apply_graph_items(r, {change(ChangeType::created, "m1")}).update.wake_reason, "");
}

TEST(GraphRules, ANewSubscriptionOfTheAppRebinds) {
  auto r = row();
  r.subscription_id = "old";
  const auto d = apply_graph_items(r, {change(ChangeType::created, "m1")});
  EXPECT_EQ(d.update.subscription_id, "sub-1");
}

TEST(GraphRules, ItemsWithoutAMessageIdAreOther) {
  const auto d =
      apply_graph_items(row(), {change(ChangeType::created, ""), change(ChangeType::other, "m1")});
  EXPECT_EQ(d.tally.other, 2u);
  EXPECT_EQ(d.update.unread_count, 0u);
}

TEST(GraphRules, AResyncSetsTheBaselineAndMarksWhenTheCountMoved) {
  auto r = after(row(), apply_graph_items(row(), {change(ChangeType::created, "m1")}));
  const auto d = apply_graph_resync(r, 5);
  EXPECT_EQ(d.update.unread_count, 5u);
  EXPECT_EQ(d.update.baseline, 5u);
  EXPECT_TRUE(d.update.count_moved);
  EXPECT_FALSE(d.update.heard);  // the app, not Graph
  const auto same = apply_graph_resync(after(r, d), 5);
  EXPECT_FALSE(same.update.count_moved);
}

TEST(GraphRules, ClientStatesCompareByHash) {
  EXPECT_TRUE(client_state_matches(client_state_hash("abc"), "abc"));
  EXPECT_FALSE(client_state_matches(client_state_hash("abc"), "abd"));
  EXPECT_FALSE(client_state_matches({}, ""));
}

}  // namespace
}  // namespace mp::relay
