// Thousands of callback batches and dispatcher rounds of every shape against the real MariaDB
// (which the suite runs with a low max_prepared_stmt_count): the prepared statements the server
// holds stay flat and no connection evicts a statement in steady state. A statement whose text
// varies per call (an id list, a LIMIT, a batch's mailbox ids) would make them grow.
//
// Prepared_stmt_count counts every client of a server, so the test has a MariaDB server of its
// own (with the suite's low limit): it runs beside the other tests instead of alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <iostream>
#include <random>

#include "store/mariadb_callback_store.hpp"
#include "store/migrations.hpp"
#include "store/outbox.hpp"
#include "test_count_events.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

constexpr int kWarmupRounds = 300;
constexpr int kRounds = 2000;
constexpr int kRegistrations = 300;
// The rounds use every batch and list size up to these: all shapes are warm after kWarmupRounds.
constexpr std::size_t kBatchMax = 200;
constexpr std::size_t kRoundMax = 400;

class StatementBudgetTest : public ::testing::Test {
 protected:
  struct StartedServer {
    test::PrivateMariadb db;
    StartedServer() { db.start(); }
  };
  // Started before the connections below are made (members are initialised in order).
  StartedServer server;
  Connection setup{server.db.options()};
  Connection callbacks{server.db.options()};  // as a callback-store thread's connection
  Connection dispatcher{server.db.options()};
  Connection observer{server.db.options()};
  std::vector<test::TestRegistration> regs;
  std::vector<std::int64_t> customers;
  std::mt19937_64 rng{20261206};
  const OutboxTarget outbox{"budget-test"};

  void SetUp() override {
    for (Connection* c : {&setup, &callbacks, &dispatcher, &observer}) {
      ASSERT_TRUE(c->connect().ok());
    }
    ASSERT_TRUE(migrate(setup).ok());
    for (int c = 0; c < 4; ++c) {
      customers.push_back(test::insert_test_customer(setup, "budget-" + std::to_string(c)));
    }
    for (int i = 0; i < kRegistrations; ++i) {
      regs.push_back(test::insert_test_registration(
          setup, customers[static_cast<std::size_t>(i) % customers.size()],
          "user" + std::to_string(i) + "@example.com"));
    }
    // Bind every registration once, so later batches take the one-round-trip path unless they
    // rebind.
    std::vector<CallbackWrite> binds;
    for (const auto& r : regs) binds.push_back(write_for(r, true));
    for (std::size_t i = 0; i < binds.size(); i += kBatchMax) {
      const std::vector<CallbackWrite> part(
          binds.begin() + static_cast<std::ptrdiff_t>(i),
          binds.begin() + static_cast<std::ptrdiff_t>(std::min(binds.size(), i + kBatchMax)));
      ASSERT_TRUE(write_callback_batch(callbacks, part, &outbox).ok());
    }
  }

  std::size_t pick(std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  }

  CallbackWrite write_for(const test::TestRegistration& r, bool bind) {
    CallbackWrite w;
    w.registration_id = r.id;
    w.mailbox_id = r.mailbox_id;
    w.subscription_id = "SUB-" + std::to_string(r.id);
    w.bind = bind;
    if (pick(3) != 0)
      w.count_events = test::count_change(pick(2) == 0, static_cast<std::int64_t>(pick(9)));
    return w;
  }

  // One callback batch of `size` writes; every fourth one rebinds a registration to its own id
  // (the careful, statement-by-statement path), every seventh names a stale subscription.
  void callback_batch(int round, std::size_t size) {
    std::vector<CallbackWrite> writes;
    for (std::size_t i = 0; i < size; ++i) {
      auto w = write_for(regs[pick(regs.size())], false);
      if (round % 4 == 0 && i == 0) {
        w.bind = true;
        w.expected_current = w.subscription_id;
      }
      if (round % 7 == 0 && i == 0) w.subscription_id = "SUB-STALE";
      writes.push_back(std::move(w));
    }
    auto out = write_callback_batch(callbacks, writes, &outbox);
    ASSERT_TRUE(out.ok()) << "round " << round << ": " << out.error().message;
  }

  // One dispatcher round: read up to `limit` due rows with a few paused customers, then delete,
  // retry and dead-letter parts of them.
  void dispatch_round(int round, std::size_t limit) {
    std::vector<std::int64_t> paused;
    for (std::size_t i = 0, n = pick(3); i < n; ++i) paused.push_back(customers[pick(3)]);
    auto due = read_due_outbox(dispatcher, outbox.owner, limit, paused);
    ASSERT_TRUE(due.ok()) << "round " << round << ": " << due.error().message;
    DispatchWrites outcome;
    for (const auto& row : *due) {
      const auto fate = pick(20);
      if (fate == 0) {
        outcome.retry.push_back({row.id, std::chrono::milliseconds(0), "TooManyRequests"});
      } else if (fate == 1) {
        outcome.dead.push_back(
            {{row.id, row.version}, pick(2) == 0 ? "Expired" : "TooManyAttempts"});
      } else {
        outcome.remove.push_back({row.id, row.version});
      }
    }
    ASSERT_TRUE(apply_dispatch_writes(dispatcher, outcome).ok()) << "round " << round;
  }

  void run_rounds(int from, int to) {
    for (int round = from; round < to; ++round) {
      // Sizes sweep every value early (so every shape is warm), then vary at random.
      const auto batch = static_cast<std::size_t>(round) < kBatchMax
                             ? static_cast<std::size_t>(round) + 1
                             : pick(kBatchMax) + 1;
      const auto limit = static_cast<std::size_t>(round) < kRoundMax
                             ? static_cast<std::size_t>(round) + 1
                             : pick(kRoundMax) + 1;
      callback_batch(round, batch);
      dispatch_round(round, limit);
      if (HasFatalFailure()) return;
    }
  }
};

TEST_F(StatementBudgetTest, PreparedStatementsStayFlatOverThousandsOfRounds) {
  run_rounds(0, kWarmupRounds);
  ASSERT_FALSE(HasFatalFailure());
  const std::int64_t server_before = test::server_prepared_statements(observer);
  const StatementStats before = statement_stats();

  run_rounds(kWarmupRounds, kWarmupRounds + kRounds);
  ASSERT_FALSE(HasFatalFailure());
  const std::int64_t server_after = test::server_prepared_statements(observer);
  const StatementStats after = statement_stats();

  EXPECT_LE(std::abs(server_after - server_before), 16)
      << "the server's prepared statements went from " << server_before << " to " << server_after
      << " over " << kRounds << " rounds";
  EXPECT_EQ(after.evicted, before.evicted)
      << "statements were evicted in steady state: some SQL text varies per call";
  // A rare shape (a long dead-letter list) may first appear after the warm-up: a few more, never
  // a growth with the number of rounds.
  EXPECT_LE(after.open - before.open, 16);
  std::cout << "[ budget ] server Prepared_stmt_count " << server_before << " -> " << server_after
            << "; this process " << before.open << " -> " << after.open << " open, "
            << after.evicted - before.evicted << " evicted, " << after.prepared - before.prepared
            << " prepared over " << kRounds << " rounds\n";
  EXPECT_LT(callbacks.cached_statements(), 64u);
  EXPECT_LT(dispatcher.cached_statements(), 64u);
  RecordProperty("server_prepared_statements", static_cast<int>(server_after));
  RecordProperty("callback_connection_statements", static_cast<int>(callbacks.cached_statements()));
  RecordProperty("dispatcher_connection_statements",
                 static_cast<int>(dispatcher.cached_statements()));
}

}  // namespace
}  // namespace mp::store
