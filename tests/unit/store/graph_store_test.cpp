// Graph registrations on the real MariaDB: created with their clientState hash and stated count,
// found only as Graph registrations, recorded with one row write that marks the pending badge
// only when the count moved and the device and customer are active; a source switch replaces.
#include "store/graph_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "common/crypto.hpp"
#include "store/database_pool.hpp"
#include "store/migrations.hpp"
#include "store/outbox.hpp"
#include "store/registrations.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

class GraphStoreTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  const Actor actor{"registration-api", "192.0.2.9"};
  std::int64_t customer = 0;
  const std::string token = hex_encode(random_bytes(32));
  const Bytes mailbox = random_bytes(32);

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
    customer = test::insert_test_customer(conn, "tst-" + hex_encode(random_bytes(4)));
  }

  CapabilityRegistration graph_request(std::optional<std::uint32_t> unread = std::nullopt) {
    CapabilityRegistration r;
    r.customer_id = customer;
    r.mailbox_hmac = mailbox;
    r.token_hex = token;
    r.environment = "production";
    r.status_frequency_minutes = 10080;
    r.new_hash = sha384(hex_encode(random_bytes(22)));
    r.source = "graph";
    r.client_state_hash = sha256("client-state-of-the-app");
    r.graph_tenant = "tenant-a";
    r.unread = unread;
    return r;
  }

  CapabilityResult registered(const CapabilityRegistration& r) {
    auto result = register_with_capability(conn, r, actor);
    EXPECT_TRUE(result.ok()) << result.error().message;
    return result.ok() ? std::move(*result) : CapabilityResult{};
  }

  std::string column(const std::string& expr, std::int64_t id) {
    auto rows = conn.query("SELECT " + expr + " FROM registrations WHERE id = ?", {Value{id}});
    EXPECT_TRUE(rows.ok() && !rows->empty()) << expr;
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : "";
  }

  // A decision that sets the count to `n` (as the rules would after some items).
  static GraphDecide set_count(std::uint32_t n, std::string subscription = "sub-1") {
    return [n, subscription](const GraphRegistration& row) {
      GraphUpdate u;
      u.write = true;
      u.subscription_id = subscription;
      u.baseline = n;
      u.unread_count = n;
      u.count_moved = n != row.unread_count;
      u.expires_at = 1797099825;
      return u;
    };
  }
};

TEST_F(GraphStoreTest, ARegistrationKeepsItsSourceClientStateAndStatedCount) {
  const auto r = graph_request(4);
  const auto result = registered(r);
  ASSERT_EQ(result.change, CapabilityChange::created);
  EXPECT_EQ(column("source", result.registration_id), "graph");
  EXPECT_EQ(column("unread_count", result.registration_id), "4");
  EXPECT_EQ(column("graph_baseline", result.registration_id), "4");
  EXPECT_EQ(column("graph_tenant", result.registration_id), "tenant-a");
  EXPECT_EQ(column("LOWER(HEX(client_state_hash))", result.registration_id),
            hex_encode(r.client_state_hash));

  auto found = find_graph_registration(conn, r.new_hash);
  ASSERT_TRUE(found.ok()) << found.error().message;
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->unread_count, 4u);
  EXPECT_EQ((*found)->client_state_hash, r.client_state_hash);
  EXPECT_TRUE((*found)->customer_active);
  EXPECT_TRUE((*found)->device_active);
}

TEST_F(GraphStoreTest, AnEwsRegistrationIsNoGraphRegistration) {
  auto r = graph_request();
  r.source = "ews";
  r.unread.reset();
  registered(r);
  auto found = find_graph_registration(conn, r.new_hash);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  auto recorded = record_graph(conn, r.new_hash, set_count(3), "me");
  ASSERT_TRUE(recorded.ok());
  EXPECT_FALSE(recorded->has_value());
}

TEST_F(GraphStoreTest, ARecordWritesTheRowAndMarksItsBadgeWhenTheCountMoved) {
  const auto r = graph_request();
  const auto id = registered(r).registration_id;
  auto recorded = record_graph(conn, r.new_hash, set_count(2), "instance-a");
  ASSERT_TRUE(recorded.ok()) << recorded.error().message;
  ASSERT_TRUE(recorded->has_value());
  EXPECT_TRUE((*recorded)->marked);
  EXPECT_EQ(column("unread_count", id), "2");
  EXPECT_EQ(column("subscription_id", id), "sub-1");
  EXPECT_EQ(column("badge_owner", id), "instance-a");
  EXPECT_EQ(column("badge_version", id), "1");
  EXPECT_EQ(column("UNIX_TIMESTAMP(graph_expires_at)", id).substr(0, 10), "1797099825");
  EXPECT_NE(column("last_heard_at", id), "");

  // The same count again: written, not marked again.
  auto again = record_graph(conn, r.new_hash, set_count(2), "instance-b");
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_FALSE((*again)->marked);
  EXPECT_EQ(column("badge_version", id), "1");
  EXPECT_EQ(column("badge_owner", id), "instance-a");
}

TEST_F(GraphStoreTest, AValidatedRegistrationIsConfirmedOnceAndOnlyIfGraphAndActive) {
  const auto r = graph_request();
  const auto id = registered(r).registration_id;
  auto found = find_graph_registration(conn, r.new_hash);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_FALSE((*found)->heard);
  auto ews = graph_request();
  ews.source = "ews";
  ews.unread.reset();
  ews.mailbox_hmac = random_bytes(32);
  const auto ews_id = registered(ews).registration_id;
  auto n = confirm_graph_registrations(conn, {id, ews_id, 999'999});
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 1u) << "only the Graph registration";
  EXPECT_NE(column("last_heard_at", id), "");
  EXPECT_EQ(column("last_heard_at", ews_id), "");
  found = find_graph_registration(conn, r.new_hash);
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_TRUE((*found)->heard);
  // Not again (the time of the first confirmation stays), and never an ended one.
  const std::string first = column("last_heard_at", id);
  n = confirm_graph_registrations(conn, {id});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(column("last_heard_at", id), first);
  // A month later, the confirmed one is not ended as unconfirmed; the other one is.
  ASSERT_TRUE(conn.execute("UPDATE registrations SET created_at = created_at - INTERVAL 30 DAY "
                           "WHERE id IN (?, ?)",
                           {Value{id}, Value{ews_id}})
                  .ok());
  auto ended = expire_unconfirmed_registrations(conn, std::chrono::hours(1), 100);
  ASSERT_TRUE(ended.ok()) << ended.error().message;
  EXPECT_EQ(*ended, 1u);
  EXPECT_EQ(column("state", id), "active");
  EXPECT_EQ(column("state", ews_id), "deleted");
}

TEST_F(GraphStoreTest, NothingIsWrittenWhenTheDecisionSaysSo) {
  const auto r = graph_request();
  const auto id = registered(r).registration_id;
  auto recorded = record_graph(
      conn, r.new_hash, [](const GraphRegistration&) { return GraphUpdate{}; }, "me");
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_FALSE((*recorded)->marked);
  EXPECT_EQ(column("last_heard_at", id), "");
  EXPECT_EQ(column("badge_owner", id), "");
}

TEST_F(GraphStoreTest, ALifecycleWakeMarksTheRowWithoutMovingTheCount) {
  const auto r = graph_request();
  const auto id = registered(r).registration_id;
  auto recorded = record_graph(
      conn, r.new_hash,
      [](const GraphRegistration& row) {
        GraphUpdate u;
        u.write = true;
        u.unread_count = row.unread_count;
        u.wake_reason = "reauthorize";
        return u;
      },
      "instance-a");
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_TRUE((*recorded)->marked);
  EXPECT_EQ(column("wake_reason", id), "reauthorize");
  EXPECT_EQ(column("badge_owner", id), "instance-a");
  // The dispatcher reads it with its wake, allowed (none sent yet).
  auto due = read_due_outbox(conn, "instance-a", 10, {});
  ASSERT_TRUE(due.ok()) << due.error().message;
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].wake_reason, "reauthorize");
  EXPECT_TRUE((*due)[0].wake_allowed);
  // Sent: the reason clears, the time stays, and the next read within the interval is not allowed.
  DispatchWrites w;
  w.remove.push_back({id, (*due)[0].version});
  w.wakes.push_back({{id, (*due)[0].version}, true});
  ASSERT_TRUE(apply_dispatch_writes(conn, w).ok());
  EXPECT_EQ(column("wake_reason IS NULL", id), "1");
  EXPECT_EQ(column("wake_sent_at IS NOT NULL", id), "1");
  ASSERT_TRUE(conn.execute("UPDATE registrations SET wake_reason = 'resync', badge_owner = "
                           "'instance-a', badge_due_at = UTC_TIMESTAMP(6), badge_queued_at = "
                           "UTC_TIMESTAMP(6) WHERE id = ?",
                           {Value{id}})
                  .ok());
  due = read_due_outbox(conn, "instance-a", 10, {});
  ASSERT_TRUE(due.ok() && due->size() == 1u);
  EXPECT_FALSE((*due)[0].wake_allowed) << "one wake per registration per interval";
}

TEST_F(GraphStoreTest, TheUpkeepMarksExpiringSilentAndStrandedWakesOnce) {
  // A Graph subscription expiring in 12 hours.
  const auto g = graph_request();
  const auto graph_id = registered(g).registration_id;
  ASSERT_TRUE(conn.execute("UPDATE registrations SET graph_expires_at = UTC_TIMESTAMP(6) + "
                           "INTERVAL 12 HOUR WHERE id = ?",
                           {Value{graph_id}})
                  .ok());
  // An EWS subscription heard once, then silent for a day (StatusFrequency 30 min).
  auto e = graph_request();
  e.source = "ews";
  e.mailbox_hmac = random_bytes(32);
  e.unread.reset();
  e.status_frequency_minutes = 30;
  const auto ews_id = registered(e).registration_id;
  ASSERT_TRUE(conn.execute("UPDATE registrations SET last_heard_at = UTC_TIMESTAMP(6) - INTERVAL "
                           "1 DAY WHERE id = ?",
                           {Value{ews_id}})
                  .ok());
  // A wake whose send failed after its mark was cleared.
  auto s = graph_request();
  s.mailbox_hmac = random_bytes(32);
  const auto stranded_id = registered(s).registration_id;
  ASSERT_TRUE(conn.execute("UPDATE registrations SET wake_reason = 'resync' WHERE id = ?",
                           {Value{stranded_id}})
                  .ok());
  // An EWS registration never heard (unconfirmed): not woken.
  auto n = e;
  n.mailbox_hmac = random_bytes(32);
  n.new_hash = sha384(hex_encode(random_bytes(22)));
  const auto never_id = registered(n).registration_id;
  ASSERT_TRUE(conn.execute("UPDATE registrations SET created_at = UTC_TIMESTAMP(6) - INTERVAL 1 "
                           "DAY WHERE id = ?",
                           {Value{never_id}})
                  .ok());

  auto marked = mark_due_wakes(conn, "instance-a", 100);
  ASSERT_TRUE(marked.ok()) << marked.error().message;
  EXPECT_EQ(*marked, 3u);
  EXPECT_EQ(column("wake_reason", graph_id), "renew");
  EXPECT_EQ(column("wake_reason", ews_id), "resubscribe");
  EXPECT_EQ(column("wake_reason", stranded_id), "resync");
  EXPECT_EQ(column("COALESCE(wake_reason, '')", never_id), "");
  for (auto id : {graph_id, ews_id, stranded_id}) {
    EXPECT_EQ(column("badge_owner", id), "instance-a");
  }
  // Marked already: not again.
  marked = mark_due_wakes(conn, "instance-a", 100);
  ASSERT_TRUE(marked.ok());
  EXPECT_EQ(*marked, 0u);
  // Sent: an expiry and a silence are woken once each, not every minute after.
  auto due = read_due_outbox(conn, "instance-a", 10, {});
  ASSERT_TRUE(due.ok() && due->size() == 3u);
  DispatchWrites w;
  for (const auto& row : *due) {
    w.remove.push_back({row.id, row.version});
    w.wakes.push_back({{row.id, row.version}, true});
  }
  ASSERT_TRUE(apply_dispatch_writes(conn, w).ok());
  marked = mark_due_wakes(conn, "instance-a", 100);
  ASSERT_TRUE(marked.ok());
  EXPECT_EQ(*marked, 0u);
}

TEST_F(GraphStoreTest, ABatchDecidesInOrderOnEachRowAndWritesEachRowOnce) {
  const auto a = graph_request();
  const auto a_id = registered(a).registration_id;
  auto b = graph_request(5);
  b.mailbox_hmac = random_bytes(32);
  const auto b_id = registered(b).registration_id;
  // +1 on a's row as each decision finds it.
  const GraphDecide plus_one = [](const GraphRegistration& row) {
    GraphUpdate u;
    u.write = true;
    u.subscription_id = "sub";
    u.unread_count = row.unread_count + 1;
    u.baseline = u.unread_count;
    u.count_moved = true;
    return u;
  };
  // b: +1 then -1 in the same batch: written, but its count did not move, so no mark.
  const GraphDecide minus_one = [](const GraphRegistration& row) {
    GraphUpdate u;
    u.write = true;
    u.unread_count = row.unread_count - 1;
    u.baseline = u.unread_count;
    u.count_moved = true;
    return u;
  };
  const std::vector<GraphRequest> requests = {
      {a.new_hash, plus_one},  {b.new_hash, plus_one},
      {a.new_hash, plus_one},  {sha384("no such secret"), plus_one},
      {b.new_hash, minus_one}, {a.new_hash, plus_one}};
  auto done = record_graph_batch(conn, requests, "instance-a");
  ASSERT_TRUE(done.ok()) << done.error().message;
  ASSERT_EQ(done->size(), 6u);
  EXPECT_FALSE((*done)[3].has_value()) << "an unknown secret records nothing";
  EXPECT_EQ((*done)[0]->before.unread_count, 0u);
  EXPECT_EQ((*done)[2]->before.unread_count, 1u) << "the second decision sees the first";
  EXPECT_EQ((*done)[5]->before.unread_count, 2u);
  EXPECT_EQ(column("unread_count", a_id), "3");
  EXPECT_EQ(column("unread_count", b_id), "5");
  EXPECT_EQ(column("badge_version", a_id), "1") << "one write per row";
  EXPECT_EQ(column("badge_version", b_id), "0");
  EXPECT_TRUE((*done)[0]->marked);
  EXPECT_FALSE((*done)[1]->marked);
  EXPECT_EQ(column("subscription_id", a_id), "sub");
}

// write_graph_rows: several rows in one statement, each with its own values (binary unread sets,
// an unbinding, a kept expiry, a wake); an id without a row passed over; a repeated id written
// once, with its first entry.
TEST_F(GraphStoreTest, OneWriteFillsSeveralRowsPassesOverAVanishedOneAndWritesARepeatOnce) {
  const auto a_id = registered(graph_request()).registration_id;
  auto b = graph_request(5);
  b.mailbox_hmac = random_bytes(32);
  const auto b_id = registered(b).registration_id;
  const auto statements = conn.cached_statements();

  GraphRowWrite a_row{a_id, {}, true};
  a_row.update.subscription_id = "sub-\"a\\";
  a_row.update.baseline = 2;
  a_row.update.items = std::string("\x00\xff\"\\ab\x01\x7f", 8);
  a_row.update.unread_count = 3;
  a_row.update.expires_at = 1797099825;
  GraphRowWrite b_row{b_id, {}, false};
  b_row.update.subscription_id = "sub-b";
  b_row.update.unread_count = 5;
  b_row.update.expires_at = 1797000000;
  b_row.update.heard = false;
  GraphRowWrite vanished{b_id + 1000, {}, true};
  vanished.update.unread_count = 9;
  GraphRowWrite a_again = a_row;
  a_again.update.unread_count = 7;
  const std::vector<GraphRowWrite> first = {a_row, vanished, b_row, a_again};
  ASSERT_TRUE(write_graph_rows(conn, first, "instance-a").ok());
  EXPECT_EQ(conn.cached_statements(), statements + 1);

  EXPECT_EQ(column("unread_count", a_id), "3") << "the first entry of a repeated id";
  EXPECT_EQ(column("graph_baseline", a_id), "2");
  EXPECT_EQ(column("LOWER(HEX(graph_items))", a_id), "00ff225c6162017f");
  EXPECT_EQ(column("subscription_id", a_id), "sub-\"a\\");
  EXPECT_EQ(column("badge_version", a_id), "1") << "one write per row";
  EXPECT_EQ(column("badge_owner", a_id), "instance-a");
  EXPECT_NE(column("badge_due_at", a_id), "");
  EXPECT_NE(column("last_heard_at", a_id), "");
  EXPECT_EQ(column("UNIX_TIMESTAMP(graph_expires_at)", a_id).substr(0, 10), "1797099825");
  EXPECT_EQ(column("unread_count", b_id), "5");
  EXPECT_EQ(column("subscription_id", b_id), "sub-b");
  EXPECT_EQ(column("badge_version", b_id), "0");
  EXPECT_EQ(column("badge_owner", b_id), "");
  EXPECT_EQ(column("last_heard_at", b_id), "") << "not heard: a resync";
  auto none = conn.query("SELECT COUNT(*) FROM registrations WHERE id = ?", {Value{b_id + 1000}});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)[0].i64(0), 0);

  // b unbound, woken and marked; its expiry kept when a write states none.
  b_row.update.subscription_id.clear();
  b_row.update.expires_at.reset();
  b_row.update.wake_reason = "resubscribe";
  b_row.mark = true;
  const std::vector<GraphRowWrite> second = {b_row};
  ASSERT_TRUE(write_graph_rows(conn, second, "instance-b").ok());
  EXPECT_EQ(column("COALESCE(subscription_id, 'NULL')", b_id), "NULL");
  EXPECT_EQ(column("wake_reason", b_id), "resubscribe");
  EXPECT_EQ(column("badge_version", b_id), "1");
  EXPECT_EQ(column("badge_owner", b_id), "instance-b");
  EXPECT_EQ(column("UNIX_TIMESTAMP(graph_expires_at)", b_id).substr(0, 10), "1797000000");
  EXPECT_EQ(column("badge_version", a_id), "1") << "a row not in the write is left alone";

  // More rows than one statement takes: every chunk written, by one prepared statement.
  std::vector<GraphRowWrite> many;
  for (std::size_t i = 0; i < kGraphWriteChunk + 2; ++i) {
    many.push_back({b_id + 2000 + static_cast<std::int64_t>(i), {}, false});
  }
  many.front().id = a_id;
  many.front().update.unread_count = 11;
  many.back().id = b_id;
  many.back().update.unread_count = 12;
  const auto before_many = conn.cached_statements();
  ASSERT_TRUE(write_graph_rows(conn, many, "instance-a").ok());
  EXPECT_EQ(conn.cached_statements(), before_many) << "one statement text for every size";
  EXPECT_EQ(column("unread_count", a_id), "11");
  EXPECT_EQ(column("unread_count", b_id), "12");
}

TEST_F(GraphStoreTest, AWriteRefusesASubscriptionIdTheColumnCannotHold) {
  const auto id = registered(graph_request()).registration_id;
  GraphRowWrite row{id, {}, true};
  row.update.subscription_id = std::string(513, 's');
  row.update.unread_count = 4;
  const std::vector<GraphRowWrite> rows = {row};
  const auto st = write_graph_rows(conn, rows, "instance-a");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  EXPECT_EQ(column("unread_count", id), "0") << "nothing written, nothing cut";
}

TEST_F(GraphStoreTest, ADeletedCustomersRegistrationIsNoGraphRegistration) {
  const auto r = graph_request();
  const auto id = registered(r).registration_id;
  ASSERT_TRUE(
      conn.execute("UPDATE customers SET state = 'deleted' WHERE id = ?", {Value{customer}}).ok());
  auto found = find_graph_registration(conn, r.new_hash);
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_FALSE(found->has_value());
  auto recorded = record_graph(conn, r.new_hash, set_count(3), "me");
  ASSERT_TRUE(recorded.ok());
  EXPECT_FALSE(recorded->has_value());
  EXPECT_EQ(column("unread_count", id), "0");
}

// Through MariadbGraphStore: many notifications at once share commits, every one is recorded;
// one that cannot be written within max_wait is refused unwritten (the 503 Graph retries).
TEST_F(GraphStoreTest, TheStoreGroupCommitsAndRefusesWhatWaitedTooLong) {
  std::vector<CapabilityRegistration> regs;
  for (int i = 0; i < 8; ++i) {
    auto r = graph_request();
    r.mailbox_hmac = random_bytes(32);
    registered(r);
    regs.push_back(r);
  }
  const GraphDecide plus_one = [](const GraphRegistration& row) {
    GraphUpdate u;
    u.write = true;
    u.unread_count = row.unread_count + 1;
    u.baseline = u.unread_count;
    u.count_moved = true;
    return u;
  };
  DatabasePool pool(db.options(), {.threads = 2, .queue_limit = 100});
  boost::asio::io_context ioc;
  const auto run_all = [&](MariadbGraphStore& store, int rounds) {
    std::atomic<int> ok{0}, busy{0};
    for (int k = 0; k < rounds; ++k) {
      for (const auto& r : regs) {
        boost::asio::co_spawn(
            ioc,
            [&, hash = r.new_hash]() -> boost::asio::awaitable<void> {
              auto out = co_await store.record(hash, plus_one);
              if (out && *out) ++ok;
              if (!out && out.error().code == Errc::busy) ++busy;
            },
            boost::asio::detached);
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (ok + busy < rounds * static_cast<int>(regs.size()) &&
           std::chrono::steady_clock::now() < deadline) {
      ioc.run_for(std::chrono::milliseconds(10));
      ioc.restart();
    }
    return std::pair{ok.load(), busy.load()};
  };
  {
    MariadbGraphStore store(pool, "instance-a", 64, 2);
    const auto [ok, busy] = run_all(store, 5);
    EXPECT_EQ(ok, 40);
    EXPECT_EQ(busy, 0);
  }
  for (const auto& r : regs) {
    auto found = find_graph_registration(conn, r.new_hash);
    ASSERT_TRUE(found.ok() && found->has_value());
    EXPECT_EQ((*found)->unread_count, 5u) << "every notification counted once";
  }
  {
    // A wait no notification can meet: each is refused, and nothing is written.
    MariadbGraphStore store(pool, "instance-a", 64, 2, std::chrono::milliseconds(-1));
    const auto [ok, busy] = run_all(store, 1);
    EXPECT_EQ(ok, 0);
    EXPECT_EQ(busy, 8);
  }
  for (const auto& r : regs) {
    auto found = find_graph_registration(conn, r.new_hash);
    ASSERT_TRUE(found.ok() && found->has_value());
    EXPECT_EQ((*found)->unread_count, 5u);
  }
}

TEST_F(GraphStoreTest, AnInactiveDeviceOrCustomerGetsTheCountButNoMark) {
  const auto r = graph_request();
  const auto result = registered(r);
  ASSERT_TRUE(
      conn.execute("UPDATE devices SET state = 'invalid' WHERE id = ?", {Value{result.device_id}})
          .ok());
  auto recorded = record_graph(conn, r.new_hash, set_count(3), "me");
  ASSERT_TRUE(recorded.ok() && recorded->has_value());
  EXPECT_FALSE((*recorded)->marked);
  EXPECT_EQ(column("unread_count", result.registration_id), "3");
  EXPECT_EQ(column("badge_owner", result.registration_id), "");
}

TEST_F(GraphStoreTest, MovingTheAccountToGraphReplacesTheEwsRegistration) {
  auto ews = graph_request();
  ews.source = "ews";
  ews.unread.reset();
  const auto first = registered(ews);
  ASSERT_EQ(first.change, CapabilityChange::created);
  // The app presents its EWS capability but asks for Graph: new URLs.
  auto graph = graph_request(6);
  graph.presented_hash = ews.new_hash;
  const auto second = registered(graph);
  EXPECT_EQ(second.change, CapabilityChange::replaced);
  EXPECT_EQ(second.registration_id, first.registration_id);
  EXPECT_EQ(column("source", second.registration_id), "graph");
  EXPECT_EQ(column("unread_count", second.registration_id), "6");
  auto found = find_graph_registration(conn, graph.new_hash);
  ASSERT_TRUE(found.ok());
  EXPECT_TRUE(found->has_value());
  // A refresh of the Graph registration keeps it, and its count.
  auto refresh = graph_request(9);
  refresh.presented_hash = graph.new_hash;
  EXPECT_EQ(registered(refresh).change, CapabilityChange::unchanged);
  EXPECT_EQ(column("unread_count", second.registration_id), "6");
}

}  // namespace
}  // namespace mp::store
