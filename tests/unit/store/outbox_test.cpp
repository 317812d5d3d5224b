// Tests of the outbox on the real MariaDB: pending badges marked by the callback's own row write
// (in both write paths, once per registration however many events), rounds read by owner with the
// device's badge, marks cleared by version, dead letters, take-over of marks whose owner went
// away, and the figures operators see.
#include "store/outbox.hpp"

#include <gtest/gtest.h>

#include "common/crypto.hpp"
#include "store/mariadb_callback_store.hpp"
#include "store/migrations.hpp"
#include "store/registrations.hpp"
#include "test_count_events.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

using namespace std::chrono_literals;

class OutboxTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  std::int64_t customer = 0;
  OutboxTarget target{"instance-a"};

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
    customer = test::insert_test_customer(conn, "test-" + hex_encode(random_bytes(4)));
  }

  std::int64_t scalar(const std::string& sql) {
    auto rows = conn.query(sql);
    EXPECT_TRUE(rows.ok() && !rows->empty()) << sql;
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : -1;
  }

  // Binds `sub` to the registration (first sight), with no effect on the count.
  void bind(const test::TestRegistration& r, const std::string& sub) {
    CallbackWrite w;
    w.registration_id = r.id;
    w.mailbox_id = r.mailbox_id;
    w.subscription_id = sub;
    w.bind = true;
    auto out = write_callback_batch(conn, {w}, &target);
    ASSERT_TRUE(out.ok()) << out.error().message;
    ASSERT_EQ((*out)[0], WriteOutcome::recorded);
  }

  CallbackWrite effect(const test::TestRegistration& r, const std::string& sub, bool set,
                       std::int64_t value) {
    CallbackWrite w;
    w.registration_id = r.id;
    w.mailbox_id = r.mailbox_id;
    w.subscription_id = sub;
    w.count_events = test::count_change(set, value);
    return w;
  }

  std::int64_t marked() {
    return scalar("SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL");
  }
  std::int64_t version(const test::TestRegistration& r) {
    return scalar("SELECT badge_version FROM registrations WHERE id = " + std::to_string(r.id));
  }

  static PendingMark mark_of(const OutboxRow& r) { return {r.id, r.version}; }

  std::vector<OutboxRow> due(const std::string& owner = "instance-a",
                             const std::vector<std::int64_t>& paused = {}) {
    auto rows = read_due_outbox(conn, owner, 100, paused);
    EXPECT_TRUE(rows.ok()) << (rows.ok() ? "" : rows.error().message);
    return rows.ok() ? *rows : std::vector<OutboxRow>{};
  }
};

TEST_F(OutboxTest, ACountChangeMarksThatRegistrationsBadgeOnlyAndOnce) {
  // Badges belong to registrations: the tablet of the same mailbox, and whoever registered the
  // same address with a device of their own, get nothing from the phone's subscription.
  const auto phone = test::insert_test_registration(conn, customer, "alice@example.com");
  const auto tablet = test::insert_test_registration(conn, customer, "alice@example.com");
  const auto other = test::insert_test_registration(conn, customer, "bob@example.com");
  ASSERT_EQ(phone.mailbox_id, tablet.mailbox_id);
  bind(phone, "sub-phone");
  bind(tablet, "sub-tablet");
  bind(other, "sub-other");
  EXPECT_EQ(marked(), 0) << "a binding alone changes no badge";

  // The one-statement path (no binding in the batch): a set, then an increment.
  auto out = write_callback_batch(conn, {effect(phone, "sub-phone", true, 5)}, &target);
  ASSERT_TRUE(out.ok()) << out.error().message;
  auto rows = due();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].id, phone.id);
  EXPECT_EQ(rows[0].mailbox_id, phone.mailbox_id);
  EXPECT_EQ(rows[0].badge, 5);
  EXPECT_EQ(rows[0].device_state, "active");
  EXPECT_EQ(rows[0].environment, "production");
  EXPECT_EQ(rows[0].token_hex.size(), 64u);
  EXPECT_EQ(rows[0].attempts, 0);
  const auto phone_device = rows[0].device_id;
  const auto first_version = rows[0].version;
  out = write_callback_batch(conn, {effect(phone, "sub-phone", false, 1)}, &target);
  ASSERT_TRUE(out.ok());
  rows = due();
  ASSERT_EQ(rows.size(), 1u) << "one mark per registration, however many events";
  EXPECT_EQ(rows[0].badge, 6);
  EXPECT_EQ(rows[0].device_id, phone_device);
  EXPECT_GT(rows[0].version, first_version);

  // The tablet's own subscription moves the tablet's own count.
  out = write_callback_batch(conn, {effect(tablet, "sub-tablet", true, 2)}, &target);
  ASSERT_TRUE(out.ok());
  rows = due();
  ASSERT_EQ(rows.size(), 2u);
  const auto& t = rows[0].id == tablet.id ? rows[0] : rows[1];
  EXPECT_NE(t.device_id, phone_device);
  EXPECT_EQ(t.badge, 2);
  EXPECT_EQ(scalar("SELECT unread_count FROM registrations WHERE id = " + std::to_string(phone.id)),
            6);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox"), 0) << "no row besides the registration's";
}

TEST_F(OutboxTest, ADeviceServingTwoMailboxesGetsTheirTotal) {
  const auto work = test::insert_test_registration(conn, customer, "work@example.com");
  // The same device registered for a second mailbox.
  auto token = conn.query(
      "SELECT d.token_hex FROM devices d JOIN registrations r ON r.device_id "
      "= d.id WHERE r.id = ?",
      {Value{work.id}});
  ASSERT_TRUE(token.ok() && !token->empty());
  NewRegistration home;
  home.customer_id = customer;
  home.mailbox_hmac = hmac_sha256(as_bytes("test-key"), "home@example.com");
  home.token_hex = (*token)[0].text(0);
  home.environment = "production";
  home.secret_hash = sha384("home-secret-0123456789abcdef");
  auto home_id = insert_registration(conn, home);
  ASSERT_TRUE(home_id.ok()) << home_id.error().message;
  test::TestRegistration home_reg;
  home_reg.id = *home_id;
  auto mb = conn.query("SELECT mailbox_id FROM registrations WHERE id = ?", {Value{*home_id}});
  ASSERT_TRUE(mb.ok() && !mb->empty());
  home_reg.mailbox_id = (*mb)[0].i64(0);
  bind(work, "sub-work");
  bind(home_reg, "sub-home");

  ASSERT_TRUE(write_callback_batch(conn, {effect(work, "sub-work", true, 3)}, &target).ok());
  ASSERT_EQ(due().size(), 1u);
  EXPECT_EQ(due()[0].badge, 3);
  ASSERT_TRUE(write_callback_batch(conn, {effect(home_reg, "sub-home", true, 2)}, &target).ok());
  const auto rows = due();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].device_id, rows[1].device_id);
  EXPECT_EQ(rows[0].badge, 5) << "3 unread at work + 2 at home, read when sent";
  EXPECT_EQ(rows[1].badge, 5);
}

TEST_F(OutboxTest, TheStatementByStatementPathMarksToo) {
  const auto phone = test::insert_test_registration(conn, customer, "carol@example.com");
  // Binding and effect in one batch take the careful path.
  auto w = effect(phone, "sub-1", true, 3);
  w.bind = true;
  auto out = write_callback_batch(conn, {w}, &target);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ((*out)[0], WriteOutcome::recorded);
  const auto rows = due();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].badge, 3);
}

TEST_F(OutboxTest, NothingIsMarkedForStaleWritesInactiveDevicesOrCustomers) {
  const auto phone = test::insert_test_registration(conn, customer, "dave@example.com");
  const auto tablet = test::insert_test_registration(conn, customer, "dave@example.com");
  bind(phone, "sub-1");
  bind(tablet, "sub-t");
  // A callback of a subscription the registration is not bound to is stale: no count, no mark.
  auto out = write_callback_batch(conn, {effect(phone, "sub-other", true, 9)}, &target);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[0], WriteOutcome::stale);
  EXPECT_EQ(marked(), 0);
  EXPECT_EQ(scalar("SELECT unread_count FROM registrations WHERE id = " + std::to_string(phone.id)),
            0);

  ASSERT_TRUE(conn.execute("UPDATE devices SET state = 'unregistered' WHERE id = (SELECT "
                           "device_id FROM registrations WHERE id = ?)",
                           {Value{tablet.id}})
                  .ok());
  out = write_callback_batch(
      conn, {effect(phone, "sub-1", true, 2), effect(tablet, "sub-t", true, 7)}, &target);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ((*out)[1], WriteOutcome::recorded);
  EXPECT_EQ(
      scalar("SELECT unread_count FROM registrations WHERE id = " + std::to_string(tablet.id)), 7)
      << "the count is kept";
  ASSERT_EQ(due().size(), 1u) << "only the active device's badge";
  EXPECT_EQ(due()[0].id, phone.id);

  ASSERT_TRUE(
      conn.execute("UPDATE customers SET state = 'disabled' WHERE id = ?", {Value{customer}}).ok());
  const auto before = version(phone);
  out = write_callback_batch(conn, {effect(phone, "sub-1", true, 3)}, &target);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(version(phone), before) << "a disabled customer's registrations mark nothing";
}

TEST_F(OutboxTest, RoundsReadOnlyTheOwnersDueMarksOfCustomersNotPaused) {
  const auto phone = test::insert_test_registration(conn, customer, "erin@example.com");
  bind(phone, "sub-1");
  ASSERT_TRUE(write_callback_batch(conn, {effect(phone, "sub-1", true, 1)}, &target).ok());
  EXPECT_EQ(due("instance-b").size(), 0u);
  EXPECT_EQ(due("instance-a", {customer}).size(), 0u);
  const auto rows = due();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].customer_state, "active");
  EXPECT_FALSE(rows[0].customer_public_id.empty());
  EXPECT_GE(rows[0].age_us, 0);

  // A retry is not due before its time, and another event keeps its backoff.
  DispatchWrites retry;
  retry.retry.push_back({rows[0].id, 60s, "Unreachable"});
  ASSERT_TRUE(apply_dispatch_writes(conn, retry).ok());
  EXPECT_EQ(due().size(), 0u);
  EXPECT_EQ(
      scalar("SELECT badge_attempts FROM registrations WHERE id = " + std::to_string(phone.id)), 1);
  ASSERT_TRUE(write_callback_batch(conn, {effect(phone, "sub-1", true, 2)}, &target).ok());
  EXPECT_EQ(due().size(), 0u);
  EXPECT_EQ(marked(), 1);
}

TEST_F(OutboxTest, ResultsClearMarksByVersionDeadLetterAndChangeDevicesInOneTransaction) {
  const auto a = test::insert_test_registration(conn, customer, "frank@example.com");
  const auto b = test::insert_test_registration(conn, customer, "frank@example.com");
  const auto c = test::insert_test_registration(conn, customer, "frank@example.com");
  const auto d = test::insert_test_registration(conn, customer, "frank@example.com");
  // Each device's own subscription: four callbacks in one batch, four marks.
  bind(a, "sub-a");
  bind(b, "sub-b");
  bind(c, "sub-c");
  bind(d, "sub-d");
  ASSERT_TRUE(write_callback_batch(conn,
                                   {effect(a, "sub-a", true, 4), effect(b, "sub-b", true, 4),
                                    effect(c, "sub-c", true, 4), effect(d, "sub-d", true, 4)},
                                   &target)
                  .ok());
  auto rows = due();
  ASSERT_EQ(rows.size(), 4u);
  std::sort(rows.begin(), rows.end(), [](const auto& x, const auto& y) { return x.id < y.id; });

  // Events for c and d come after the round read them: their marks stay for the next round.
  ASSERT_TRUE(write_callback_batch(conn, {effect(c, "sub-c", true, 5), effect(d, "sub-d", true, 6)},
                                   &target)
                  .ok());
  DispatchWrites o;
  o.remove.push_back(mark_of(rows[0]));
  o.dead.push_back({mark_of(rows[1]), "Expired"});
  o.remove.push_back(mark_of(rows[2]));
  o.dead.push_back({mark_of(rows[3]), "TooManyAttempts: Unreachable"});
  const auto when = std::chrono::system_clock::now() - 1h;
  o.devices.push_back({rows[1].device_id, true, when, "Unregistered"});
  o.devices.push_back({rows[0].device_id, false, std::nullopt, "BadDeviceToken"});
  ASSERT_TRUE(apply_dispatch_writes(conn, o).ok());
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM outbox WHERE state = 'dead'"), 1)
      << "a dead letter only for the badge that had no newer event";
  EXPECT_EQ(scalar("SELECT badge FROM outbox WHERE state = 'dead' AND last_error = 'Expired' AND "
                   "device_id = " +
                   std::to_string(rows[1].device_id)),
            4);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM devices WHERE state = 'unregistered' AND "
                   "unregistered_at < UTC_TIMESTAMP() - INTERVAL 50 MINUTE"),
            1);
  EXPECT_EQ(scalar("SELECT COUNT(*) FROM devices WHERE state = 'invalid' AND invalid_reason = "
                   "'BadDeviceToken'"),
            1);
  const auto next = due();
  ASSERT_EQ(next.size(), 2u);
  for (const auto& r : next) {
    EXPECT_TRUE(r.id == c.id || r.id == d.id);
    EXPECT_EQ(r.attempts, 0);
    EXPECT_EQ(r.badge, r.id == c.id ? 5 : 6);
  }
  auto stats = outbox_stats(conn);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->queued, 2);
  EXPECT_EQ(stats->dead, 1);

  // The next round clears them; a clear of a version already cleared changes nothing.
  DispatchWrites done;
  for (const auto& r : next) done.remove.push_back(mark_of(r));
  ASSERT_TRUE(apply_dispatch_writes(conn, done).ok());
  ASSERT_TRUE(apply_dispatch_writes(conn, done).ok());
  EXPECT_EQ(marked(), 0);
  stats = outbox_stats(conn);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->queued, 0);
  EXPECT_EQ(stats->oldest_queued_seconds, 0);
}

TEST_F(OutboxTest, MarksOfAnInstanceThatWentAwayAreTakenOverAndOthersAreNot) {
  OutboxTarget live{"instance-live"}, dead{"instance-dead"}, never{"instance-never"},
      stopped{"instance-stopped"};
  ASSERT_TRUE(conn.execute("INSERT INTO instances (instance_id, host_name, version, started_at, "
                           "heartbeat_at, stopped_at) VALUES "
                           "('instance-live', 'h', 'v', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), NULL), "
                           "('instance-dead', 'h', 'v', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) - "
                           "INTERVAL 5 MINUTE, NULL), ('instance-stopped', 'h', 'v', "
                           "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
                           std::span<const Value>{})
                  .ok());
  std::int64_t badge = 1;
  for (const auto* t : {&live, &dead, &never, &stopped}) {
    const auto r = test::insert_test_registration(conn, customer, t->owner + "@example.com");
    bind(r, "sub-1");
    ASSERT_TRUE(write_callback_batch(conn, {effect(r, "sub-1", true, badge++)}, t).ok());
  }
  auto moved = take_over_outbox(conn, "instance-a", 30s, 100);
  ASSERT_TRUE(moved.ok()) << moved.error().message;
  EXPECT_EQ(*moved, 3u);
  EXPECT_EQ(due("instance-live").size(), 1u);
  EXPECT_EQ(due("instance-a").size(), 3u);
  moved = take_over_outbox(conn, "instance-a", 30s, 100);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(*moved, 0u) << "its own marks are not moved";
}

TEST_F(OutboxTest, OldDeadLettersArePurgedRecentOnesKept) {
  const auto phone = test::insert_test_registration(conn, customer, "hank@example.com");
  for (int badge : {1, 2}) {
    ASSERT_TRUE(conn.execute("INSERT INTO outbox (owner, customer_id, device_id, mailbox_id, "
                             "badge, state, next_attempt_at, expires_at, created_at) SELECT 'a', "
                             "customer_id, device_id, mailbox_id, ?, 'dead', UTC_TIMESTAMP(6), "
                             "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) - INTERVAL ? DAY FROM "
                             "registrations WHERE id = ?",
                             {Value{std::int64_t{badge}}, Value{std::int64_t{badge == 1 ? 8 : 1}},
                              Value{phone.id}})
                    .ok());
  }
  auto purged = purge_dead_letters(conn, std::chrono::hours(24 * 7), 100);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(*purged, 1u);
  EXPECT_EQ(scalar("SELECT badge FROM outbox"), 2);
}

}  // namespace
}  // namespace mp::store
