// Tests of the callback store on the real MariaDB: lookups by secret, batched writes with their
// binding rules and per-registration counts, stale detection, group commit, silent subscriptions.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <thread>

#include "common/crypto.hpp"
#include "store/mariadb_callback_store.hpp"
#include "store/migrations.hpp"
#include "store/registrations.hpp"
#include "test_count_events.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

class CallbackStoreTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  std::int64_t customer = 0;

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
    customer = test::insert_test_customer(conn, "test-" + hex_encode(random_bytes(4)));
  }

  RegistrationRecord lookup(const std::string& secret) {
    auto r = find_registration_by_secret(conn, sha384(secret));
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE(r->has_value());
    return r->value_or(RegistrationRecord{});
  }

  std::string column(const std::string& sql, std::int64_t id) {
    auto rows = conn.query(sql, {Value{id}});
    EXPECT_TRUE(rows.ok() && !rows->empty());
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : "";
  }

  CallbackWrite write_for(const test::TestRegistration& r, const std::string& sub) {
    CallbackWrite w;
    w.registration_id = r.id;
    w.mailbox_id = r.mailbox_id;
    w.subscription_id = sub;
    return w;
  }
};

TEST_F(CallbackStoreTest, FindsActiveRegistrationsBySecretOnly) {
  const auto reg = test::insert_test_registration(conn, customer, "alice@example.com", 15);
  const auto rec = lookup(reg.secret);
  EXPECT_EQ(rec.id, reg.id);
  EXPECT_EQ(rec.mailbox_id, reg.mailbox_id);
  EXPECT_FALSE(rec.subscription_id.has_value());
  EXPECT_EQ(rec.status_frequency_minutes, 15);
  auto other = find_registration_by_secret(conn, sha384("not-a-secret-we-issued-000"));
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->has_value());
  ASSERT_TRUE(delete_registration(conn, reg.id).value());
  auto gone = find_registration_by_secret(conn, sha384(reg.secret));
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value()) << "a deleted registration is not found";
}

TEST_F(CallbackStoreTest, BindsAndRecordsLastHeardWithEveryWrite) {
  const auto reg = test::insert_test_registration(conn, customer, "bob@example.com");
  auto w = write_for(reg, "SUB-1");
  w.bind = true;
  auto out = write_callback_batch(conn, {w});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  EXPECT_EQ(lookup(reg.secret).subscription_id, std::optional<std::string>("SUB-1"));
  EXPECT_FALSE(column("SELECT last_heard_at FROM registrations WHERE id = ?", reg.id).empty());
  EXPECT_EQ(column("SELECT COALESCE(watermark, '') FROM registrations WHERE id = ?", reg.id), "")
      << "watermarks are not kept: nothing reads them";

  // A count's write and a durable heartbeat's (the ledger full or off) both move last_heard_at.
  const auto old_heard = [&] {
    ASSERT_TRUE(conn.execute("UPDATE registrations SET last_heard_at = '2020-01-01 00:00:00' "
                             "WHERE id = ?",
                             {Value{reg.id}})
                    .ok());
  };
  old_heard();
  auto counted = write_for(reg, "SUB-1");
  counted.count_events = test::count_change(true, 4);
  out = write_callback_batch(conn, {counted});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "4");
  EXPECT_NE(column("SELECT YEAR(last_heard_at) FROM registrations WHERE id = ?", reg.id), "2020");
  old_heard();
  out = write_callback_batch(conn, {write_for(reg, "SUB-1")});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  EXPECT_NE(column("SELECT YEAR(last_heard_at) FROM registrations WHERE id = ?", reg.id), "2020");
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "4");
}

TEST_F(CallbackStoreTest, RebindKeepsTheOldIdAsSuperseded) {
  const auto reg = test::insert_test_registration(conn, customer, "carol@example.com");
  auto first = write_for(reg, "OLD");
  first.bind = true;
  ASSERT_TRUE(write_callback_batch(conn, {first}).ok());
  auto rebind = write_for(reg, "NEW");
  rebind.bind = true;
  rebind.expected_current = "OLD";
  auto out = write_callback_batch(conn, {rebind});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  const auto rec = lookup(reg.secret);
  EXPECT_EQ(rec.subscription_id, std::optional<std::string>("NEW"));
  EXPECT_EQ(rec.superseded, std::vector<std::string>{"OLD"});
}

TEST_F(CallbackStoreTest, TheLookupBringsSupersededIdsNewestFirst) {
  const auto reg = test::insert_test_registration(conn, customer, "erin@example.com");
  std::optional<std::string> current;
  for (const char* id : {"S1", "S2", "S3", "S4"}) {
    auto w = write_for(reg, id);
    w.bind = true;
    w.expected_current = current;
    auto out = write_callback_batch(conn, {w});
    ASSERT_TRUE(out.ok()) << out.error().message;
    ASSERT_EQ((*out)[0], WriteOutcome::recorded) << id;
    current = id;
  }
  // Distinct times whatever the clock's resolution: S1 oldest.
  ASSERT_TRUE(
      conn.execute("UPDATE superseded_subscriptions SET superseded_at = CASE subscription_id "
                   "WHEN 'S1' THEN '2026-01-01' WHEN 'S2' THEN '2026-01-02' ELSE "
                   "'2026-01-03' END WHERE registration_id = ?",
                   {Value{reg.id}})
          .ok());
  const auto rec = lookup(reg.secret);
  EXPECT_EQ(rec.subscription_id, std::optional<std::string>("S4"));
  EXPECT_EQ(rec.superseded, (std::vector<std::string>{"S3", "S2", "S1"}));
  const auto other = test::insert_test_registration(conn, customer, "frank@example.com");
  EXPECT_TRUE(lookup(other.secret).superseded.empty());
}

TEST_F(CallbackStoreTest, OnlyTheNewestSupersededIdsAreKept) {
  // An app that resubscribes without end (or a holder of its capability) cannot grow the table.
  const auto reg = test::insert_test_registration(conn, customer, "grace@example.com");
  std::optional<std::string> current;
  const int binds = static_cast<int>(kMaxSupersededSubscriptions) + 8;
  for (int i = 0; i < binds; ++i) {
    const std::string id = "S" + std::to_string(i);
    auto w = write_for(reg, id);
    w.bind = true;
    w.expected_current = current;
    auto out = write_callback_batch(conn, {w});
    ASSERT_TRUE(out.ok()) << out.error().message;
    ASSERT_EQ((*out)[0], WriteOutcome::recorded) << id;
    current = id;
    // Distinct times whatever the clock's resolution: each rebind a second after the last.
    ASSERT_TRUE(conn.execute("UPDATE superseded_subscriptions SET superseded_at = "
                             "'2026-01-01' + INTERVAL CAST(SUBSTRING(subscription_id, 2) AS "
                             "UNSIGNED) SECOND WHERE registration_id = ?",
                             {Value{reg.id}})
                    .ok());
  }
  auto rows = conn.query(
      "SELECT COUNT(*), MIN(CAST(SUBSTRING(subscription_id, 2) AS UNSIGNED)) FROM "
      "superseded_subscriptions WHERE registration_id = ?",
      {Value{reg.id}});
  ASSERT_TRUE(rows.ok() && !rows->empty());
  EXPECT_EQ((*rows)[0].i64(0), static_cast<std::int64_t>(kMaxSupersededSubscriptions));
  EXPECT_EQ((*rows)[0].i64(1), binds - 1 - static_cast<std::int64_t>(kMaxSupersededSubscriptions))
      << "the oldest went first";
  const auto rec = lookup(reg.secret);
  EXPECT_EQ(rec.subscription_id, current);
  ASSERT_EQ(rec.superseded.size(), kMaxSupersededSubscriptions);
  EXPECT_EQ(rec.superseded.front(), "S" + std::to_string(binds - 2)) << "newest first";
}

TEST_F(CallbackStoreTest, ActiveRegistrationsComeInPagesWithTheirSecretHashes) {
  std::vector<test::TestRegistration> regs;
  for (int i = 0; i < 7; ++i) {
    regs.push_back(test::insert_test_registration(conn, customer,
                                                  "page" + std::to_string(i) + "@example.com"));
  }
  ASSERT_TRUE(
      conn.execute("UPDATE registrations SET state = 'deleted' WHERE id = ?", {Value{regs[2].id}})
          .ok());
  // A deleted customer's registrations are left out too.
  const auto gone = test::insert_test_customer(conn, "test-" + hex_encode(random_bytes(4)));
  const auto gone_reg = test::insert_test_registration(conn, gone, "gone@example.com");
  ASSERT_TRUE(
      conn.execute("UPDATE customers SET state = 'deleted' WHERE id = ?", {Value{gone}}).ok());

  std::vector<ActiveRegistration> all;
  std::int64_t after = regs.front().id - 1;
  int pages = 0;
  for (; pages < 10; ++pages) {
    auto page = active_registrations_after(conn, after, 3);
    ASSERT_TRUE(page.ok()) << page.error().message;
    for (auto& r : page->registrations) all.push_back(std::move(r));
    if (page->done) break;
    after = page->next_after;
  }
  EXPECT_EQ(pages, 2)
      << "7 active registrations, 3 at a time (the deleted customer's is read, not kept)";
  ASSERT_EQ(all.size(), 6u);
  for (std::size_t i = 0, j = 0; i < regs.size(); ++i) {
    if (i == 2) continue;
    const auto& a = all[j++];
    EXPECT_EQ(a.record.id, regs[i].id);
    const Bytes hash = sha384(regs[i].secret);
    EXPECT_EQ(a.secret_hash, std::string(hash.begin(), hash.end()));
    EXPECT_EQ(a.record.mailbox_id, regs[i].mailbox_id);
    EXPECT_EQ(a.record.customer_id, customer);
    EXPECT_FALSE(a.record.subscription_id.has_value());
  }
  for (const auto& a : all) EXPECT_NE(a.record.id, gone_reg.id);
}

TEST_F(CallbackStoreTest, StaleWhenTheRegistrationChangedUnderneath) {
  const auto reg = test::insert_test_registration(conn, customer, "dave@example.com");
  auto bind = write_for(reg, "A");
  bind.bind = true;
  ASSERT_TRUE(write_callback_batch(conn, {bind}).ok());

  // Another instance rebound it to B: a write for A (read before) is stale, B's is recorded.
  ASSERT_TRUE(
      conn.execute("UPDATE registrations SET subscription_id = 'B' WHERE id = ?", {Value{reg.id}})
          .ok());
  auto out = write_callback_batch(conn, {write_for(reg, "A"), write_for(reg, "B")});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::stale);
  EXPECT_EQ((*out)[1], WriteOutcome::recorded);
  // Subscription ids are compared byte for byte: "b" is not "B".
  out = write_callback_batch(conn, {write_for(reg, "b")});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::stale);

  // A conditional bind that lost the race is stale too.
  auto late = write_for(reg, "C");
  late.bind = true;
  late.expected_current = "A";
  out = write_callback_batch(conn, {late});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0], WriteOutcome::stale);
  EXPECT_EQ(lookup(reg.secret).subscription_id, std::optional<std::string>("B"));

  ASSERT_TRUE(delete_registration(conn, reg.id).value());
  out = write_callback_batch(conn, {write_for(reg, "B")});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0], WriteOutcome::stale) << "a deleted registration records nothing";
}

TEST_F(CallbackStoreTest, ASupersededIdIsNeverBoundAgain) {
  const auto reg = test::insert_test_registration(conn, customer, "olga@example.com");
  auto first = write_for(reg, "OLD");
  first.bind = true;
  ASSERT_TRUE(write_callback_batch(conn, {first}).ok());
  auto second = write_for(reg, "NEW");
  second.bind = true;
  second.expected_current = "OLD";
  ASSERT_TRUE(write_callback_batch(conn, {second}).ok());
  // A caller whose copy of the superseded list is short (or stale) tries to rebind OLD.
  auto back = write_for(reg, "OLD");
  back.bind = true;
  back.expected_current = "NEW";
  auto out = write_callback_batch(conn, {back});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::stale);
  EXPECT_EQ(lookup(reg.secret).subscription_id, std::optional<std::string>("NEW"));
}

TEST_F(CallbackStoreTest, ValuesFromExchangeAreStoredVerbatimWhateverTheyHold) {
  // Printable ASCII is all the listener lets through; quotes, backslashes and SQL must stay text.
  const auto reg = test::insert_test_registration(conn, customer, "rita@example.com");
  const std::string sub = "S'; DROP TABLE registrations; --\\";
  auto bind = write_for(reg, sub);
  bind.bind = true;
  ASSERT_TRUE(write_callback_batch(conn, {bind}).ok());
  auto w = write_for(reg, sub);
  w.count_events = test::count_change(false, 2);
  auto out = write_callback_batch(conn, {w});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  EXPECT_EQ(column("SELECT subscription_id FROM registrations WHERE id = ?", reg.id), sub);
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", reg.id), "2");
}

TEST_F(CallbackStoreTest, AWriteTheDatabaseRefusesFailsAloneNotItsBatch) {
  const auto a = test::insert_test_registration(conn, customer, "pat@example.com");
  const auto b = test::insert_test_registration(conn, customer, "quinn@example.com");
  auto good = write_for(a, "SA");
  good.bind = true;
  auto bad = write_for(b, std::string(kMaxSubscriptionIdLength + 1, 'x'));
  bad.bind = true;
  auto out = write_callback_batch(conn, {good, bad});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  EXPECT_EQ((*out)[1], WriteOutcome::failed);
  EXPECT_EQ(lookup(a.secret).subscription_id, std::optional<std::string>("SA"));
}

TEST_F(CallbackStoreTest, CountEventsApplyPerRegistrationInArrivalOrder) {
  const auto a = test::insert_test_registration(conn, customer, "erin@example.com");
  const auto b = test::insert_test_registration(conn, customer, "frank@example.com");
  for (const auto* r : {&a, &b}) {
    auto w = write_for(*r, "S" + std::to_string(r->id));
    w.bind = true;
    ASSERT_TRUE(write_callback_batch(conn, {w}).ok());
  }
  auto add = [&](const test::TestRegistration& r, bool set, std::int64_t v) {
    auto w = write_for(r, "S" + std::to_string(r.id));
    w.count_events = test::count_change(set, v);
    return w;
  };
  // a: +2, set 7, +1 -> 8.  b: +1, +1 -> 2.
  auto out = write_callback_batch(conn, {add(a, false, 2), add(b, false, 1), add(a, true, 7),
                                         add(a, false, 1), add(b, false, 1)});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", a.id), "8");
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", b.id), "2");
  out = write_callback_batch(conn, {add(a, true, 0)});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", a.id), "0");
}

// The one-round-trip batch commits counts only when every registration matched: with one
// registration rebound underneath, the batch is written again statement by statement, and the
// counts of the others still change exactly once.
TEST_F(CallbackStoreTest, AStaleRegistrationInABatchChangesNoCountTwice) {
  const auto a = test::insert_test_registration(conn, customer, "gina@example.com");
  const auto b = test::insert_test_registration(conn, customer, "hank@example.com");
  for (const auto* r : {&a, &b}) {
    auto w = write_for(*r, "S" + std::to_string(r->id));
    w.bind = true;
    ASSERT_TRUE(write_callback_batch(conn, {w}).ok());
  }
  ASSERT_TRUE(
      conn.execute("UPDATE registrations SET subscription_id = 'other' WHERE id = ?", {Value{b.id}})
          .ok());
  auto newmail = [&](const test::TestRegistration& r, std::int64_t n) {
    auto w = write_for(r, "S" + std::to_string(r.id));
    w.count_events = test::count_change(false, n);
    return w;
  };
  auto out = write_callback_batch(conn, {newmail(a, 3), newmail(b, 5)});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  EXPECT_EQ((*out)[1], WriteOutcome::stale);
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", a.id), "3");
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", b.id), "0");

  // Once nothing is stale, the same connection records a batch in one go again.
  out = write_callback_batch(conn, {newmail(a, 1)});
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", a.id), "4");
}

TEST_F(CallbackStoreTest, ALoneCallbackWaitsItsWindowForOthersToShareItsCommit) {
  std::vector<test::TestRegistration> regs;
  for (int i = 0; i < 4; ++i) {
    regs.push_back(test::insert_test_registration(conn, customer,
                                                  "lone" + std::to_string(i) + "@example.com"));
    auto w = write_for(regs.back(), "SUB");
    w.bind = true;
    ASSERT_TRUE(write_callback_batch(conn, {w}).ok());
  }
  DatabasePool pool(db.options(), {.threads = 2, .queue_limit = 100});
  MariadbCallbackStore store(pool, 64, 2);
  store.set_batch_window(std::chrono::seconds(1));  // far longer than the 90 ms below
  boost::asio::io_context ioc;
  std::atomic<int> recorded{0};
  // Four callbacks 30 ms apart, at a rate where each would otherwise commit alone.
  std::thread sender([&] {
    for (const auto& r : regs) {
      auto w = write_for(r, "SUB");
      w.count_events = test::count_change(false, 1);
      boost::asio::co_spawn(
          ioc,
          [&, w]() -> boost::asio::awaitable<void> {
            auto out = co_await store.record(w);
            if (out && *out == WriteOutcome::recorded) ++recorded;
          },
          boost::asio::detached);
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (recorded.load() < 4 && std::chrono::steady_clock::now() < deadline) {
    ioc.run_for(std::chrono::milliseconds(10));
    ioc.restart();
  }
  sender.join();
  EXPECT_EQ(recorded.load(), 4);
  pool.stop();  // joins its threads: every batch's completion (and its count) has run
  const auto stats = store.stats();
  EXPECT_EQ(stats.batches, 1u) << "the first waited out its window and took the other three";
  EXPECT_EQ(stats.largest_batch, 4u);
  for (const auto& r : regs) {
    EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", r.id), "1");
  }
}

TEST_F(CallbackStoreTest, ConcurrentCallbacksShareTransactions) {
  constexpr int kRegistrations = 40, kRounds = 10;
  std::vector<test::TestRegistration> regs;
  for (int i = 0; i < kRegistrations; ++i) {
    regs.push_back(test::insert_test_registration(conn, customer,
                                                  "user" + std::to_string(i) + "@example.com"));
  }
  DatabasePool pool(db.options(), {.threads = 3, .queue_limit = 10000});
  MariadbCallbackStore store(pool, 64, 2);
  boost::asio::io_context ioc;
  std::atomic<int> recorded{0}, failed{0};
  for (int round = 0; round < kRounds; ++round) {
    for (const auto& r : regs) {
      auto w = write_for(r, "SUB");
      w.bind = round == 0;
      w.count_events = test::count_change(false, 1);
      boost::asio::co_spawn(
          ioc,
          [&, w]() -> boost::asio::awaitable<void> {
            auto out = co_await store.record(w);
            if (out && *out == WriteOutcome::recorded)
              ++recorded;
            else
              ++failed;
          },
          boost::asio::detached);
    }
    ioc.run();
    ioc.restart();
  }
  EXPECT_EQ(recorded.load(), kRegistrations * kRounds);
  EXPECT_EQ(failed.load(), 0);
  const auto stats = store.stats();
  EXPECT_GT(stats.largest_batch, 1u) << "callbacks waiting together share a transaction";
  EXPECT_LT(stats.batches, static_cast<std::uint64_t>(kRegistrations * kRounds));
  for (const auto& r : regs) {
    EXPECT_EQ(column("SELECT unread_count FROM registrations WHERE id = ?", r.id),
              std::to_string(kRounds));
  }
  pool.stop();
}

TEST_F(CallbackStoreTest, DatabaseGoneFailsEveryWriteOfTheBatch) {
  const auto reg = test::insert_test_registration(conn, customer, "gina@example.com");
  auto o = db.options();
  o.port = test::free_tcp_port();
  o.connect_timeout = std::chrono::milliseconds(500);
  DatabasePool pool(o, {.threads = 1, .queue_limit = 10});
  MariadbCallbackStore store(pool, 10, 1);
  boost::asio::io_context ioc;
  Result<WriteOutcome> out = WriteOutcome::recorded;
  boost::asio::co_spawn(
      ioc,
      [&]() -> boost::asio::awaitable<void> { out = co_await store.record(write_for(reg, "S")); },
      boost::asio::detached);
  ioc.run();
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code, Errc::unavailable);
  pool.stop();
}

TEST_F(CallbackStoreTest, SilentSubscriptionsAreThoseNotHeardForTwiceTheirFrequency) {
  const auto quiet = test::insert_test_registration(conn, customer, "quiet@example.com", 1);
  const auto lively = test::insert_test_registration(conn, customer, "lively@example.com", 1);
  const auto young = test::insert_test_registration(conn, customer, "young@example.com", 30);
  const auto heard = [this](std::int64_t id, int minutes_ago) {
    return conn
        .execute("UPDATE registrations SET last_heard_at = UTC_TIMESTAMP(6) - INTERVAL " +
                     std::to_string(minutes_ago) + " MINUTE WHERE id = ?",
                 {Value{id}})
        .ok();
  };
  ASSERT_TRUE(heard(quiet.id, 3));
  ASSERT_TRUE(heard(lively.id, 1));
  (void)young;
  // Never heard, created long ago: silent since its creation.
  const auto never = test::insert_test_registration(conn, customer, "never@example.com", 1);
  ASSERT_TRUE(conn.execute("UPDATE registrations SET created_at = UTC_TIMESTAMP(6) - INTERVAL 5 "
                           "MINUTE WHERE id = ?",
                           {Value{never.id}})
                  .ok());
  // Heard 3 minutes ago, but its StatusFrequency is 30 minutes: not silent.
  const auto slow = test::insert_test_registration(conn, customer, "slow@example.com", 30);
  ASSERT_TRUE(heard(slow.id, 3));
  auto n = count_silent_subscriptions(conn);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 2);
  auto list = list_silent_subscriptions(conn, 10);
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].registration_id, never.id) << "the longest overdue first";
  EXPECT_EQ((*list)[1].registration_id, quiet.id);
  EXPECT_GE((*list)[1].silent_seconds, 170);
  EXPECT_EQ((*list)[1].device.find("…"), 8u) << "device tokens are shown redacted";

  // A new StatusFrequency moves the moment a registration falls silent.
  ASSERT_TRUE(conn.execute("UPDATE registrations SET status_frequency_minutes = 1 WHERE id = ?",
                           {Value{slow.id}})
                  .ok());
  n = count_silent_subscriptions(conn);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 3);
}

// Heartbeats' last-heard times, written in bulk (write_heard): by registration and subscription,
// never backwards, and the registrations that ended or were rebound come back.
TEST_F(CallbackStoreTest, HeardTimesAreWrittenInBulkForBoundRegistrationsOnly) {
  std::vector<test::TestRegistration> regs;
  for (int i = 0; i < 70; ++i) {  // more than one statement's 64
    regs.push_back(test::insert_test_registration(conn, customer,
                                                  "heard" + std::to_string(i) + "@example.com"));
    auto w = write_for(regs.back(), "SUB-" + std::to_string(i));
    w.bind = true;
    ASSERT_TRUE(write_callback_batch(conn, {w}).ok());
  }
  ASSERT_TRUE(conn.execute("UPDATE registrations SET last_heard_at = '2026-01-01 00:00:00' "
                           "WHERE customer_id = ?",
                           {Value{customer}})
                  .ok());
  const std::int64_t t0 = 1796000000;  // 2026-11-30 (UTC)
  std::vector<Heard> heard;
  for (int i = 0; i < 70; ++i) {
    heard.push_back({regs[i].id, "SUB-" + std::to_string(i), t0 + i});
  }
  heard.push_back({regs[0].id, "SUB-0", t0 - 100});  // an older one of the same: ignored
  ASSERT_TRUE(delete_registration(conn, regs[5].id).value());
  heard[7].subscription_id = "SUB-other";  // rebound elsewhere since it was cached
  auto gone = write_heard(conn, heard);
  ASSERT_TRUE(gone.ok()) << gone.error().message;
  std::sort(gone->begin(), gone->end());
  EXPECT_EQ(*gone, (std::vector<std::int64_t>{regs[5].id, regs[7].id}));
  EXPECT_EQ(column("SELECT last_heard_at FROM registrations WHERE id = ?", regs[0].id),
            "2026-11-30 00:53:20.000000");
  EXPECT_EQ(column("SELECT last_heard_at FROM registrations WHERE id = ?", regs[69].id),
            "2026-11-30 00:54:29.000000");
  EXPECT_EQ(column("SELECT last_heard_at FROM registrations WHERE id = ?", regs[7].id),
            "2026-01-01 00:00:00.000000")
      << "not written for another subscription";

  // Never backwards: a callback recorded later than the heartbeat keeps its time.
  ASSERT_TRUE(write_callback_batch(conn, {write_for(regs[1], "SUB-1")}).ok());
  const std::string recorded =
      column("SELECT last_heard_at FROM registrations WHERE id = ?", regs[1].id);
  gone = write_heard(conn, {{regs[1].id, "SUB-1", t0}});
  ASSERT_TRUE(gone.ok()) << gone.error().message;
  EXPECT_TRUE(gone->empty());
  EXPECT_EQ(column("SELECT last_heard_at FROM registrations WHERE id = ?", regs[1].id), recorded);

  // A subscription id with quotes is a parameter, not SQL: it matches nothing.
  gone = write_heard(conn, {{regs[2].id, "SUB' OR '1'='1", t0 + 1000}});
  ASSERT_TRUE(gone.ok()) << gone.error().message;
  EXPECT_EQ(*gone, std::vector<std::int64_t>{regs[2].id});
  EXPECT_EQ(column("SELECT last_heard_at FROM registrations WHERE id = ?", regs[2].id),
            "2026-11-30 00:53:22.000000");
  EXPECT_EQ(column("SELECT last_heard_at FROM registrations WHERE id = ?", regs[3].id),
            "2026-11-30 00:53:23.000000");
}

TEST_F(CallbackStoreTest, HeardTimesThroughTheStoreAndItsPool) {
  const auto reg = test::insert_test_registration(conn, customer, "pool-heard@example.com");
  auto w = write_for(reg, "SUB-P");
  w.bind = true;
  ASSERT_TRUE(write_callback_batch(conn, {w}).ok());
  ASSERT_TRUE(conn.execute("UPDATE registrations SET last_heard_at = '2026-01-01' WHERE id = ?",
                           {Value{reg.id}})
                  .ok());
  DatabasePool pool(db.options(), {.threads = 1, .queue_limit = 10});
  MariadbCallbackStore store(pool, 16, 1);
  const std::vector<Heard> heard{{reg.id, "SUB-P", 1796000000}};
  boost::asio::io_context ioc;
  std::optional<Result<std::vector<std::int64_t>>> out;
  boost::asio::co_spawn(
      ioc, [&]() -> boost::asio::awaitable<void> { out = co_await store.record_heard(heard); },
      boost::asio::detached);
  ioc.run();
  pool.stop();
  ASSERT_TRUE(out.has_value());
  ASSERT_TRUE(out->ok()) << out->error().message;
  EXPECT_TRUE((*out)->empty());
  EXPECT_EQ(column("SELECT last_heard_at FROM registrations WHERE id = ?", reg.id),
            "2026-11-30 00:53:20.000000");
}

// The once-a-minute count can read the silent rows through their index instead of every
// registration (which of the two a nearly empty table gets is the optimizer's choice).
TEST_F(CallbackStoreTest, TheSilentCountHasAnIndex) {
  auto plan = conn.query(
      "EXPLAIN SELECT COUNT(*) FROM registrations r WHERE r.state = 'active' AND "
      "r.silent_after < UTC_TIMESTAMP(6)");
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  ASSERT_EQ(plan->size(), 1u);
  // EXPLAIN's columns: id, select_type, table, type, possible_keys, key, ...
  EXPECT_NE((*plan)[0].text(4).find("ix_registrations_silent_after"), std::string::npos)
      << (*plan)[0].text(4);
}

}  // namespace
}  // namespace mp::store
