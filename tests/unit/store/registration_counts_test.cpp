// Tests of the registration count rules: the SQL they make, run on the real MariaDB against a
// registration row (the left-to-right assignment the rules rely on included): truths, new items
// counted once, the remembered ring's bound, folders, and the migration's copy of the counts.
#include "store/registration_counts.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "common/crypto.hpp"
#include "store/callback_store.hpp"
#include "store/migrations.hpp"
#include "test_env.hpp"

namespace mp::store {
namespace {

CountEvent truth(std::int64_t n, std::string folder = "INBOX") {
  return {CountEvent::Kind::truth, n, std::move(folder), ""};
}
CountEvent item(const std::string& id, std::string folder = "INBOX") {
  return {CountEvent::Kind::new_item, 0, std::move(folder), item_digest(id)};
}

class RegistrationCountsTest : public ::testing::Test {
 protected:
  test::ScratchDatabase db;
  Connection conn{db.options()};
  std::int64_t customer = 0;
  std::int64_t reg = 0;

  void SetUp() override {
    ASSERT_TRUE(conn.connect().ok());
    ASSERT_TRUE(migrate(conn).ok());
    customer = test::insert_test_customer(conn, "tst-" + hex_encode(random_bytes(4)));
    reg = test::insert_test_registration(conn, customer, "counts@example.com").id;
  }

  // Applies `events` to registration `id` as the batch does; returns its count afterwards.
  std::int64_t apply(const std::vector<CountEvent>& events, std::int64_t id = 0) {
    const auto sql = count_sql(events, [&](std::string_view s) { return conn.quote(s); });
    ++batch;
    auto done = conn.execute_text(
        "UPDATE registrations SET count_batch = IF(" + sql.notify + ", " + std::to_string(batch) +
        ", count_batch), unread_count = " + sql.count + ", recent_items = " + sql.recent +
        " WHERE id = " + std::to_string(id ? id : reg));
    EXPECT_TRUE(done.ok()) << done.error().message;
    return count(id ? id : reg);
  }
  // Whether the last apply() marked registration `id` for a push.
  bool notified(std::int64_t id = 0) {
    auto rows = conn.query("SELECT COALESCE(count_batch, 0) FROM registrations WHERE id = ?",
                           {Value{id ? id : reg}});
    return rows.ok() && !rows->empty() && (*rows)[0].i64(0) == batch;
  }
  std::int64_t batch = 0;
  std::int64_t count(std::int64_t id) {
    auto rows = conn.query("SELECT unread_count FROM registrations WHERE id = ?", {Value{id}});
    return rows.ok() && !rows->empty() ? (*rows)[0].i64(0) : -1;
  }
  std::string recent() {
    auto rows = conn.query("SELECT recent_items FROM registrations WHERE id = ?", {Value{reg}});
    return rows.ok() && !rows->empty() ? (*rows)[0].text(0) : "?";
  }
};

TEST_F(RegistrationCountsTest, ATruthSetsAndNewItemsAddOnceEach) {
  EXPECT_EQ(apply({truth(5)}), 5);
  EXPECT_EQ(apply({item("A"), item("B")}), 7);
  EXPECT_TRUE(notified());
  EXPECT_EQ(apply({item("A")}), 7) << "Exchange sent A again after a lost OK: counted once";
  EXPECT_FALSE(notified()) << "and not worth a push";
  EXPECT_EQ(apply({item("C"), item("C")}), 8) << "twice in one callback: once";
  // A truth after items: the truth is the count; items before it are remembered, not added.
  EXPECT_EQ(apply({item("D"), truth(3), item("E")}), 4);
  EXPECT_EQ(apply({item("D"), item("E")}), 4) << "D and E were remembered";
  EXPECT_EQ(apply({truth(2'000'000)}), kMaxUnreadCount);
  EXPECT_EQ(apply({item("F")}), kMaxUnreadCount);
}

TEST_F(RegistrationCountsTest, TheRememberedItemsAreBounded) {
  std::vector<CountEvent> many;
  for (int i = 0; i < 50; ++i) many.push_back(item("item-" + std::to_string(i)));
  EXPECT_EQ(apply({truth(0)}), 0);
  EXPECT_EQ(apply(many), 50);
  const std::string r = recent();
  EXPECT_EQ(r.size(), kRecentItemsChars);
  EXPECT_EQ(r.substr(r.size() - 17), item_digest("item-49") + ",") << "newest last";
  EXPECT_EQ(apply({item("item-49"), item("item-30")}), 50) << "the newest 20 are remembered";
  EXPECT_EQ(apply({item("item-0")}), 51) << "the oldest fell out of the ring";
}

TEST_F(RegistrationCountsTest, OnlyTheStatedFolderCounts) {
  ASSERT_TRUE(
      conn.execute("UPDATE registrations SET folder_id = 'INBOX' WHERE id = ?", {Value{reg}}).ok());
  const auto other = test::insert_test_registration(conn, customer, "all@example.com").id;
  EXPECT_EQ(apply({truth(4), truth(9, "ARCHIVE")}), 4);
  EXPECT_EQ(apply({truth(4), truth(9, "ARCHIVE")}, other), 9) << "no folder stated: the last truth";
  EXPECT_EQ(apply({item("A", "ARCHIVE")}), 4);
  EXPECT_FALSE(notified()) << "another folder's event is not worth a push";
  EXPECT_EQ(apply({item("B", "INBOX")}), 5);
  EXPECT_EQ(apply({item("C", "")}), 5) << "an event without a folder counts only without one";
  EXPECT_EQ(apply({item("C", "")}, other), 10);
  // A folder id with a quote is a literal, not SQL.
  EXPECT_EQ(apply({truth(1, "x' OR '1'='1")}), 5);
}

TEST_F(RegistrationCountsTest, AnItemSeenBeforeATruthIsInItAndNotAddedAgain) {
  EXPECT_EQ(apply({truth(0)}), 0);
  EXPECT_EQ(apply({item("A"), truth(3), item("A"), item("B")}), 4);
}

// The SQL and the C++ rules agree, event for event, on random callbacks: for a registration
// without a folder and one with the Inbox.
TEST_F(RegistrationCountsTest, TheSqlDoesWhatTheCppRulesSay) {
  ASSERT_TRUE(
      conn.execute("UPDATE registrations SET folder_id = 'INBOX' WHERE id = ?", {Value{reg}}).ok());
  const auto any = test::insert_test_registration(conn, customer, "any@example.com").id;
  CountState inbox_state, any_state;
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  const auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  const char* folders[] = {"INBOX", "ARCHIVE", ""};
  for (int round = 0; round < 150; ++round) {
    std::vector<CountEvent> events;
    const int n = static_cast<int>(next() % 6);
    for (int i = 0; i < n; ++i) {
      const char* folder = folders[next() % 3];
      if (next() % 4 == 0) {
        events.push_back(truth(static_cast<std::int64_t>(next() % 30), folder));
      } else {
        events.push_back(item("item-" + std::to_string(next() % 40), folder));
      }
    }
    inbox_state = apply_count_events(inbox_state, "INBOX", events);
    any_state = apply_count_events(any_state, "", events);
    ASSERT_EQ(apply(events), inbox_state.unread) << "round " << round;
    ASSERT_EQ(recent(), inbox_state.recent) << "round " << round;
    ASSERT_EQ(notified(), inbox_state.notify) << "round " << round;
    ASSERT_EQ(apply(events, any), any_state.unread) << "round " << round;
    ASSERT_EQ(notified(any), any_state.notify) << "round " << round;
  }
}

TEST_F(RegistrationCountsTest, DigestsAndFolderIds) {
  EXPECT_EQ(item_digest("AAMkItem1").size(), kItemDigestChars);
  EXPECT_EQ(item_digest("AAMkItem1"), item_digest("AAMkItem1"));
  EXPECT_NE(item_digest("AAMkItem1"), item_digest("AAMkItem2"));
  EXPECT_EQ(count_folder_id("AAMkADAwATM3ZmYAZS0xZQ=="), "AAMkADAwATM3ZmYAZS0xZQ==");
  EXPECT_EQ(count_folder_id(std::string(513, 'a')), "");
  EXPECT_EQ(count_folder_id("has space"), "");
  EXPECT_EQ(count_folder_id("caf\xc3\xa9"), "");
  // A digest that is not hex never reaches the SQL.
  std::vector<CountEvent> odd = {{CountEvent::Kind::new_item, 0, "", "'); DROP TABLE x; --"}};
  EXPECT_EQ(apply(odd), 0);
}

}  // namespace
}  // namespace mp::store
