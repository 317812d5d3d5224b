// GraphService against an in-memory GraphStore: validation without a write, notifications and
// resyncs through the row rules, unknown secrets limited per address, a failing store is 503.
#include "relay/graph_service.hpp"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>

#include "test_registration_service.hpp"

namespace mp::relay {
namespace {

using test::run;

constexpr const char* kServiceState = "client-state-0123456789";

class FakeGraphStore final : public store::GraphStore {
 public:
  std::map<Bytes, store::GraphRegistration> rows;
  bool fail = false;
  int finds = 0, records = 0, writes = 0;
  std::vector<std::vector<std::int64_t>> confirmed;

  boost::asio::awaitable<Result<std::uint64_t>> confirm(
      const std::vector<std::int64_t>& ids) override {
    if (fail) co_return make_error(Errc::unavailable, "fake: down");
    confirmed.push_back(ids);
    co_return static_cast<std::uint64_t>(ids.size());
  }

  boost::asio::awaitable<Result<std::optional<store::GraphRegistration>>> find(
      const Bytes& secret_hash) override {
    ++finds;
    if (fail) co_return make_error(Errc::unavailable, "fake: down");
    const auto it = rows.find(secret_hash);
    if (it == rows.end()) co_return std::optional<store::GraphRegistration>{};
    co_return std::optional{it->second};
  }
  boost::asio::awaitable<Result<std::optional<store::GraphRecorded>>> record(
      const Bytes& secret_hash, const store::GraphDecide& decide) override {
    ++records;
    if (fail) co_return make_error(Errc::unavailable, "fake: down");
    const auto it = rows.find(secret_hash);
    if (it == rows.end()) co_return std::optional<store::GraphRecorded>{};
    store::GraphRecorded out;
    out.before = it->second;
    out.update = decide(it->second);
    if (out.update.write) {
      ++writes;
      auto& row = it->second;
      row.subscription_id = out.update.subscription_id;
      row.baseline = out.update.baseline;
      row.items = out.update.items;
      row.unread_count = out.update.unread_count;
      out.marked = out.update.count_moved && row.customer_active && row.device_active;
    }
    co_return std::optional{std::move(out)};
  }
};

graph::Notifications created_item(const std::string& message,
                                  const std::string& state = kServiceState) {
  graph::Item i;
  i.subscription_id = "sub";
  i.client_state = state;
  i.change = graph::ChangeType::created;
  i.message_id = message;
  return {{i}};
}

class GraphServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::GraphRegistration row;
    row.id = 1;
    row.customer_public_id = "dev-x";
    row.customer_active = row.device_active = true;
    row.client_state_hash = client_state_hash(kServiceState);
    store.rows[sha384(secret)] = row;
  }
  FakeGraphStore store;
  prometheus::Registry registry;
  GraphLimits limits{3, 0.001, 100};
  GraphService service{store, registry, limits};
  const std::string secret = std::string(44, 's');
  const IpAddress caller = *parse_ip("192.0.2.7");
};

TEST_F(GraphServiceTest, ValidationFindsTheRegistrationAndWritesNothing) {
  EXPECT_EQ(run(service.validate(secret, caller)).outcome, GraphOutcome::accepted);
  EXPECT_EQ(run(service.validate(std::string(44, 'x'), caller)).outcome, GraphOutcome::unknown);
  EXPECT_EQ(store.records, 0);
  EXPECT_EQ(store.finds, 2);
  EXPECT_TRUE(store.confirmed.empty()) << "nothing written before the answer";
}

TEST_F(GraphServiceTest, AValidatedNeverHeardRegistrationIsConfirmedByTheNextFlush) {
  store::GraphRegistration heard = store.rows[sha384(secret)];
  heard.id = 2;
  heard.heard = true;
  const std::string heard_secret(44, 'h');
  store.rows[sha384(heard_secret)] = heard;
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(run(service.validate(secret, caller)).outcome, GraphOutcome::accepted);
  }
  EXPECT_EQ(run(service.validate(heard_secret, caller)).outcome, GraphOutcome::accepted);
  EXPECT_EQ(service.validated_pending(), 1u) << "once, and not the one already heard";
  // A failed write keeps it for the next flush.
  store.fail = true;
  run(service.flush_validated());
  EXPECT_EQ(service.validated_pending(), 1u);
  store.fail = false;
  run(service.flush_validated());
  ASSERT_EQ(store.confirmed.size(), 1u);
  EXPECT_EQ(store.confirmed[0], std::vector<std::int64_t>{1});
  EXPECT_EQ(service.validated_pending(), 0u);
  run(service.flush_validated());
  EXPECT_EQ(store.confirmed.size(), 1u) << "nothing to write: no statement";
}

TEST_F(GraphServiceTest, ANotificationMovesTheCountOnceAndMarks) {
  auto r = run(service.notify(secret, created_item("m1"), caller));
  EXPECT_EQ(r.outcome, GraphOutcome::accepted);
  EXPECT_TRUE(r.marked);
  EXPECT_EQ(r.tally.created, 1u);
  r = run(service.notify(secret, created_item("m1"), caller));
  EXPECT_FALSE(r.marked);
  EXPECT_EQ(r.tally.unchanged, 1u);
  EXPECT_EQ(store.rows.begin()->second.unread_count, 1u);
}

TEST_F(GraphServiceTest, AWrongClientStateWritesNothingButIsAccepted) {
  const auto r = run(service.notify(secret, created_item("m1", "not-the-state"), caller));
  EXPECT_EQ(r.outcome, GraphOutcome::accepted);
  EXPECT_EQ(r.tally.wrong_client_state, 1u);
  EXPECT_EQ(store.writes, 0);
}

TEST_F(GraphServiceTest, AResyncSetsTheCount) {
  const auto r = run(service.resync(secret, 9, caller));
  EXPECT_EQ(r.outcome, GraphOutcome::accepted);
  EXPECT_TRUE(r.marked);
  EXPECT_EQ(store.rows.begin()->second.unread_count, 9u);
}

TEST_F(GraphServiceTest, UnknownSecretsAreLimitedPerAddressBeforeTheStore) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(run(service.notify(std::string(44, 'a' + i), created_item("m"), caller)).outcome,
              GraphOutcome::unknown);
  }
  const int before = store.records;
  EXPECT_EQ(run(service.notify(secret, created_item("m"), caller)).outcome,
            GraphOutcome::rate_limited);
  EXPECT_EQ(store.records, before) << "no lookup once the address is over its limit";
  // Another address is not held back.
  EXPECT_EQ(run(service.notify(secret, created_item("m"), *parse_ip("192.0.2.8"))).outcome,
            GraphOutcome::accepted);
}

TEST_F(GraphServiceTest, ARegistrationIsHeldToItsOwnRateWhoeverPosts) {
  prometheus::Registry own;
  GraphService limited{store, own, GraphLimits{100, 100, 100, 2, 0.001}};
  EXPECT_EQ(run(limited.notify(secret, created_item("m1"), caller)).outcome,
            GraphOutcome::accepted);
  EXPECT_EQ(run(limited.validate(secret, *parse_ip("192.0.2.9"))).outcome, GraphOutcome::accepted);
  const int before = store.records + store.finds;
  EXPECT_EQ(run(limited.notify(secret, created_item("m2"), *parse_ip("198.51.100.1"))).outcome,
            GraphOutcome::rate_limited);
  EXPECT_EQ(store.records + store.finds, before) << "refused before the database";
  // Another registration is not held back.
  EXPECT_EQ(run(limited.notify(std::string(44, 'z'), created_item("m"), caller)).outcome,
            GraphOutcome::unknown);
}

TEST_F(GraphServiceTest, TheSecretFilterRefusesWithoutALookup) {
  service.set_secret_filter([](std::string_view s) { return s.size() == 44; });
  EXPECT_EQ(run(service.validate("short", caller)).outcome, GraphOutcome::unknown);
  EXPECT_EQ(run(service.notify("", created_item("m"), caller)).outcome, GraphOutcome::unknown);
  EXPECT_EQ(store.finds + store.records, 0);
}

TEST_F(GraphServiceTest, AFailingStoreIsUnavailableNeverAccepted) {
  store.fail = true;
  EXPECT_EQ(run(service.validate(secret, caller)).outcome, GraphOutcome::unavailable);
  EXPECT_EQ(run(service.notify(secret, created_item("m1"), caller)).outcome,
            GraphOutcome::unavailable);
  EXPECT_EQ(run(service.resync(secret, 1, caller)).outcome, GraphOutcome::unavailable);
}

}  // namespace
}  // namespace mp::relay
