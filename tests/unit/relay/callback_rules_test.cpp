// Tests of the listener's pure rules: callback summaries, unread-count effects, binding decisions
// and secret plausibility.
#include "relay/callback_rules.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>

#include "relay_test_support.hpp"

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

// --- MailboxEffect::then -------------------------------------------------------------------------

TEST(MailboxEffect, AddsFollowedByAddsSum) {
  const auto e = store::MailboxEffect{false, 2}.then({false, 3});
  EXPECT_FALSE(e.set);
  EXPECT_EQ(e.value, 5);
}

TEST(MailboxEffect, ASetReplacesWhateverCameBefore) {
  const auto e = store::MailboxEffect{false, 4}.then({true, 9});
  EXPECT_TRUE(e.set);
  EXPECT_EQ(e.value, 9);
  const auto twice = store::MailboxEffect{true, 1}.then({true, 0});
  EXPECT_TRUE(twice.set);
  EXPECT_EQ(twice.value, 0);
}

TEST(MailboxEffect, AddsAfterASetStaySet) {
  const auto e = store::MailboxEffect{true, 7}.then({false, 2});
  EXPECT_TRUE(e.set);
  EXPECT_EQ(e.value, 9);
}

// --- mailbox_effect ------------------------------------------------------------------------------

TEST(MailboxEffectOfEvents, NoCountingEventsMeansNoEffect) {
  EXPECT_FALSE(mailbox_effect({}).has_value());
  EXPECT_FALSE(mailbox_effect({status_event("w1")}).has_value());
  ews::Event created;
  created.type = ews::EventType::created;
  created.item_id = "i";
  EXPECT_FALSE(mailbox_effect({created, status_event("w2")}).has_value());
}

TEST(MailboxEffectOfEvents, EachNewMailAddsOne) {
  const auto e = mailbox_effect({new_mail_event("w1"), new_mail_event("w2"), new_mail_event("w3")});
  ASSERT_TRUE(e.has_value());
  EXPECT_FALSE(e->set);
  EXPECT_EQ(e->value, 3);
}

TEST(MailboxEffectOfEvents, FolderUnreadCountSetsAndLaterNewMailAdds) {
  const auto e = mailbox_effect({folder_modified_event("w1", 7), new_mail_event("w2")});
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->set);
  EXPECT_EQ(e->value, 8);
}

TEST(MailboxEffectOfEvents, FolderUnreadCountOverridesEarlierNewMail) {
  const auto e =
      mailbox_effect({new_mail_event("w1"), new_mail_event("w2"), folder_modified_event("w3", 7)});
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->set);
  EXPECT_EQ(e->value, 7);
}

TEST(MailboxEffectOfEvents, UnreadCountZeroIsATruthToo) {
  const auto e = mailbox_effect({new_mail_event("w1"), folder_modified_event("w2", 0)});
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->set);
  EXPECT_EQ(e->value, 0);
}

TEST(MailboxEffectOfEvents, ItemModifiedEventIsIgnoredForTheCount) {
  // Without a FolderId the event is about an item, whatever it carries.
  EXPECT_FALSE(mailbox_effect({item_modified_event("w1", 5)}).has_value());
  const auto e = mailbox_effect({item_modified_event("w1", 5), new_mail_event("w2")});
  ASSERT_TRUE(e.has_value());
  EXPECT_FALSE(e->set);
  EXPECT_EQ(e->value, 1);
}

TEST(MailboxEffectOfEvents, FolderModifiedWithoutUnreadCountIsIgnored) {
  EXPECT_FALSE(mailbox_effect({folder_modified_event("w1", std::nullopt)}).has_value());
  const auto e = mailbox_effect({new_mail_event("w1"), folder_modified_event("w2", std::nullopt)});
  ASSERT_TRUE(e.has_value());
  EXPECT_FALSE(e->set);
  EXPECT_EQ(e->value, 1);
}

TEST(MailboxEffectOfEvents, HugeUnreadCountFollowedByNewMailDoesNotWrap) {
  // The parser accepts any non-negative int64 UnreadCount; a NewMail after it must not overflow
  // into a negative count (signed overflow is undefined behaviour, and UBSan aborts on it).
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const auto e = mailbox_effect({folder_modified_event("w1", max), new_mail_event("w2")});
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->set);
  EXPECT_GE(e->value, 0) << "the unread count wrapped around";
}

// --- summarize -----------------------------------------------------------------------------------

TEST(Summarize, StatusEventCallback) {
  const auto s = summarize(callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(s.subscription_id, std::optional<std::string>("S1"));
  EXPECT_TRUE(s.has_notification);
  EXPECT_EQ(s.watermark, "wm-1");
  EXPECT_FALSE(s.effect.has_value());
  EXPECT_EQ(s.events, 1u);
  EXPECT_EQ(s.foreign_messages, 0u);
  EXPECT_TRUE(s.error_codes.empty());
}

TEST(Summarize, WatermarkIsTheNewestEventsOne) {
  const auto s = summarize(
      callback("S1", {new_mail_event("wm-1"), new_mail_event("wm-2"), new_mail_event("wm-3")}));
  EXPECT_EQ(s.watermark, "wm-3");
  ASSERT_TRUE(s.effect.has_value());
  EXPECT_EQ(s.effect->value, 3);
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
  ASSERT_TRUE(s.effect.has_value());
  EXPECT_TRUE(s.effect->set);
  EXPECT_EQ(s.effect->value, 6);
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
  ASSERT_TRUE(s.effect.has_value());
  EXPECT_FALSE(s.effect->set);
  EXPECT_EQ(s.effect->value, 2);
}

TEST(Summarize, ErrorOnlyCallbackNamesItsSubscription) {
  const auto s = summarize(callback_of({error_message("ErrorReadEventsFailed", "S1")}));
  EXPECT_EQ(s.subscription_id, std::optional<std::string>("S1"));
  EXPECT_FALSE(s.has_notification);
  EXPECT_EQ(s.events, 0u);
  EXPECT_FALSE(s.effect.has_value());
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
