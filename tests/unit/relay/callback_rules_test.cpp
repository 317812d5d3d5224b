// Tests of the listener's pure rules: callback summaries, count events, binding decisions and
// secret plausibility.
#include "relay/callback_rules.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "test_relay.hpp"

namespace mp::relay {
namespace {

using test::callback;
using test::callback_of;
using test::error_message;
using test::folder_modified_event;
using test::item_modified_event;
using test::new_mail_event;
using test::notification_message;
using test::status_event;

// --- count events
// ---------------------------------------------------------------------------------

// The registration's count after `events` from `start` (no folder stated), by the store's rules.
std::int64_t count_after(std::int64_t start, const std::vector<ews::Event>& events) {
  std::vector<store::CountEvent> counted;
  for (const auto& e : events) {
    if (auto c = count_event(e)) counted.push_back(*c);
  }
  return store::apply_count_events({start, ""}, "", counted).unread;
}

TEST(CountEvents, NoCountingEventsChangeNothing) {
  EXPECT_FALSE(count_event(status_event("w1")));
  ews::Event created = new_mail_event("w1");
  created.type = ews::EventType::created;
  EXPECT_FALSE(count_event(created));
  EXPECT_EQ(count_after(5, {created, status_event("w2")}), 5);
}

TEST(CountEvents, EachNewMailAddsOneAndTheSameItemOnce) {
  EXPECT_EQ(count_after(0, {new_mail_event("w1"), new_mail_event("w2"), new_mail_event("w3")}), 3);
  ews::Event again = new_mail_event("w9");
  again.item_id = "AAMkSameItem";
  EXPECT_EQ(count_after(0, {again, again}), 1) << "Exchange sent it again: counted once";
  const auto c = count_event(again);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->kind, store::CountEvent::Kind::new_item);
  EXPECT_EQ(c->item, store::item_digest("AAMkSameItem"));
  EXPECT_EQ(c->folder_id, "inbox") << "its ParentFolderId";
}

TEST(CountEvents, FolderUnreadCountSetsAndLaterNewMailAdds) {
  EXPECT_EQ(count_after(50, {folder_modified_event("w1", 7), new_mail_event("w2")}), 8);
  EXPECT_EQ(count_after(50, {new_mail_event("w1"), folder_modified_event("w2", 7)}), 7)
      << "the truth overrides earlier NewMail";
  EXPECT_EQ(count_after(9, {folder_modified_event("w1", 0)}), 0) << "zero is a truth too";
}

TEST(CountEvents, ItemModifiedAndFolderModifiedWithoutUnreadCountAreIgnored) {
  EXPECT_FALSE(count_event(item_modified_event("w1", 99)));
  EXPECT_FALSE(count_event(folder_modified_event("w1", std::nullopt)));
  EXPECT_EQ(count_after(3, {item_modified_event("w1", 99)}), 3);
}

TEST(CountEvents, HugeUnreadCountsAreClampedAndDoNotWrap) {
  const auto c = count_event(folder_modified_event("w1", std::numeric_limits<std::int64_t>::max()));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->unread, store::kMaxUnreadCount);
  EXPECT_EQ(count_after(0, {folder_modified_event("w1", std::numeric_limits<std::int64_t>::max()),
                            new_mail_event("w2")}),
            store::kMaxUnreadCount);
  EXPECT_EQ(count_event(folder_modified_event("w1", -5))->unread, 0);
}

TEST(CountEvents, FolderIdsTheRelayCannotCompareAreLeftOut) {
  ews::Event odd = folder_modified_event("w1", 3);
  odd.folder_id = std::string(600, 'a');
  EXPECT_EQ(count_event(odd)->folder_id, "");
}

// --- summarize -----------------------------------------------------------------------------------

TEST(Summarize, StatusEventCallback) {
  const auto s = summarize(callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(s.subscription_id, std::optional<std::string>("S1"));
  EXPECT_TRUE(s.has_notification);
  EXPECT_EQ(s.watermark, "wm-1");
  EXPECT_TRUE(s.count_events.empty());
  EXPECT_EQ(s.events, 1u);
  EXPECT_EQ(s.foreign_messages, 0u);
  EXPECT_TRUE(s.error_codes.empty());
}

TEST(Summarize, WatermarkIsTheNewestEventsOne) {
  const auto s = summarize(
      callback("S1", {new_mail_event("wm-1"), new_mail_event("wm-2"), new_mail_event("wm-3")}));
  EXPECT_EQ(s.watermark, "wm-3");
  EXPECT_EQ(s.count_events.size(), 3u);
  EXPECT_EQ(s.events, 3u);
}

TEST(Summarize, EventsWithoutWatermarkDoNotHideTheNewestOne) {
  auto last = new_mail_event("");
  const auto s = summarize(callback("S1", {new_mail_event("wm-1"), new_mail_event("wm-2"), last}));
  EXPECT_EQ(s.watermark, "wm-2");
}

TEST(Summarize, PreviousWatermarkWhenNoEventHasOne) {
  EXPECT_EQ(summarize(callback("S1", {}, "wm-prev")).watermark, "wm-prev");
  EXPECT_EQ(summarize(callback("S1", {new_mail_event("")}, "wm-prev")).watermark, "wm-prev");
  EXPECT_EQ(summarize(callback("S1", {}, "")).watermark, "");
}

TEST(Summarize, MessagesOfOneSubscriptionAreMerged) {
  const auto s = summarize(callback_of(
      {notification_message("S1", {folder_modified_event("wm-1", 4)}, "wm-0"),
       notification_message("S1", {new_mail_event("wm-2"), new_mail_event("wm-3")}, "wm-1")}));
  EXPECT_EQ(s.events, 3u);
  EXPECT_EQ(s.watermark, "wm-3");
  ASSERT_EQ(s.count_events.size(), 3u);
  EXPECT_EQ(store::apply_count_events({0, ""}, "", s.count_events).unread, 6);
  EXPECT_EQ(s.foreign_messages, 0u);
}

TEST(Summarize, MessagesAboutAnotherSubscriptionAreIgnored) {
  const auto s = summarize(callback_of(
      {notification_message("S1", {new_mail_event("wm-1")}),
       notification_message("S9", {new_mail_event("x-1"), folder_modified_event("x-2", 40)}),
       notification_message("S1", {new_mail_event("wm-2")})}));
  EXPECT_EQ(s.subscription_id, std::optional<std::string>("S1"));
  EXPECT_EQ(s.foreign_messages, 1u);
  EXPECT_EQ(s.events, 2u);
  EXPECT_EQ(s.watermark, "wm-2");
  ASSERT_EQ(s.count_events.size(), 2u) << "the other subscription's events are not counted";
}

TEST(Summarize, ErrorOnlyCallbackNamesItsSubscription) {
  const auto s = summarize(callback_of({error_message("ErrorReadEventsFailed", "S1")}));
  EXPECT_EQ(s.subscription_id, std::optional<std::string>("S1"));
  EXPECT_FALSE(s.has_notification);
  EXPECT_EQ(s.events, 0u);
  EXPECT_TRUE(s.count_events.empty());
  EXPECT_EQ(s.watermark, "");
  EXPECT_EQ(s.error_codes, std::vector<std::string>{"ErrorReadEventsFailed"});
}

TEST(Summarize, ErrorWithoutSubscriptionIdAndWarningsAreCounted) {
  auto warning = notification_message("S1", {status_event("wm-1")});
  warning.response_class = "Warning";
  warning.response_code = "ErrorSomethingMinor";
  const auto s =
      summarize(callback_of({error_message("ErrorInternalServerError", std::nullopt), warning}));
  EXPECT_EQ(s.subscription_id, std::optional<std::string>("S1"));
  EXPECT_TRUE(s.has_notification);
  EXPECT_EQ(s.error_codes,
            (std::vector<std::string>{"ErrorInternalServerError", "ErrorSomethingMinor"}));
  EXPECT_FALSE(
      summarize(callback_of({error_message("ErrorX", std::nullopt)})).subscription_id.has_value());
}

TEST(Summarize, EmptyCallback) {
  const auto s = summarize(ews::SendNotification{});
  EXPECT_FALSE(s.subscription_id.has_value());
  EXPECT_FALSE(s.has_notification);
  EXPECT_EQ(s.events, 0u);
}

// --- decide_binding ------------------------------------------------------------------------------

store::RegistrationRecord bound_to(std::optional<std::string> current,
                                   std::vector<std::string> superseded = {}) {
  store::RegistrationRecord r;
  r.id = 1;
  r.subscription_id = std::move(current);
  r.superseded = std::move(superseded);
  return r;
}

TEST(DecideBinding, UnboundRegistrationBindsTheFirstId) {
  const auto d = decide_binding(bound_to(std::nullopt), "S1");
  EXPECT_TRUE(d.bind);
  EXPECT_FALSE(d.unsubscribe);
  EXPECT_FALSE(d.expected_current.has_value());
}

TEST(DecideBinding, TheBoundIdNeedsNothing) {
  const auto d = decide_binding(bound_to("S1", {"S0"}), "S1");
  EXPECT_FALSE(d.bind);
  EXPECT_FALSE(d.unsubscribe);
  EXPECT_FALSE(d.expected_current.has_value());
}

TEST(DecideBinding, ASupersededIdIsUnsubscribed) {
  for (const char* old : {"S1", "S0", "Sa"}) {
    const auto d = decide_binding(bound_to("S2", {"S1", "S0", "Sa"}), old);
    EXPECT_TRUE(d.unsubscribe) << old;
    EXPECT_FALSE(d.bind) << old;
  }
}

TEST(DecideBinding, ANewIdRebindsOverTheCurrentOne) {
  const auto d = decide_binding(bound_to("S1", {"S0"}), "S2");
  EXPECT_TRUE(d.bind);
  EXPECT_FALSE(d.unsubscribe);
  EXPECT_EQ(d.expected_current, std::optional<std::string>("S1"));
}

TEST(DecideBinding, IdsCompareExactly) {
  // Subscription ids are base64: case matters, and a prefix is another id.
  const auto d = decide_binding(bound_to("AbC=", {"xyz="}), "abc=");
  EXPECT_TRUE(d.bind);
  EXPECT_FALSE(decide_binding(bound_to("AbC=", {"xyz="}), "XYZ=").unsubscribe);
  EXPECT_TRUE(decide_binding(bound_to("AbC=", {}), "AbC").bind);
}

// --- plausible_secret ----------------------------------------------------------------------------

TEST(PlausibleSecret, LengthBoundaries) {
  EXPECT_FALSE(plausible_secret(""));
  EXPECT_FALSE(plausible_secret(std::string(21, 'a')));
  EXPECT_TRUE(plausible_secret(std::string(22, 'a')));
  EXPECT_TRUE(plausible_secret(std::string(64, 'f')));
  EXPECT_TRUE(plausible_secret(std::string(128, 'Z')));
  EXPECT_FALSE(plausible_secret(std::string(129, 'Z')));
}

TEST(PlausibleSecret, UrlSafeBase64AndHexOnly) {
  EXPECT_TRUE(plausible_secret("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"));
  EXPECT_TRUE(plausible_secret("0123456789abcdef0123456789ABCDEF"));
  const std::string base(30, 'a');
  const std::vector<std::string> bad_bytes = {
      "+", "/", "=", ".", " ", "%", "~", "\n", std::string(1, '\0'), "\xc3\xa9", "\x80"};
  for (const auto& bad : bad_bytes) {
    EXPECT_FALSE(plausible_secret(base + bad)) << "with byte " << static_cast<int>(bad[0] & 0xff);
    EXPECT_FALSE(plausible_secret(bad + base)) << "with byte " << static_cast<int>(bad[0] & 0xff);
  }
}

}  // namespace
}  // namespace mp::relay
