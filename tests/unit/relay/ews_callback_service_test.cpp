// Tests of the "handle callback" use case against an in-memory CallbackStore: binding, recording,
// the cache, stale writes, store failures, caller allow-lists and metrics.
#include "relay/ews_callback_service.hpp"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <variant>

#include "test_relay.hpp"

namespace mp::relay {
namespace {

using test::callback;
using test::callback_of;
using test::error_message;
using test::FakeCallbackStore;
using test::folder_modified_event;
using test::hash_key;
using test::item_modified_event;
using test::new_mail_event;
using test::notification_message;
using test::status_event;

constexpr const char* kSecret = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZg";  // 38 chars
constexpr const char* kOtherSecret = "0123456789abcdef0123456789abcdef";

IpAddress ip(const char* text) {
  auto a = parse_ip(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress{});
}

class EwsCallbackServiceTest : public testing::Test {
 protected:
  // Runs one handle() to completion; the fake store completes at once, so run() returns quickly.
  CallbackResult handle(std::string_view secret, const ews::SendNotification& cb,
                        const IpAddress& caller) {
    boost::asio::io_context ioc;
    std::optional<CallbackResult> out;
    boost::asio::co_spawn(ioc, service.handle(secret, cb, caller),
                          [&out](std::exception_ptr e, CallbackResult o) {
                            if (e) std::rethrow_exception(e);
                            out = std::move(o);
                          });
    ioc.run();
    EXPECT_TRUE(out.has_value()) << "handle() did not complete";
    return out.value_or(CallbackResult{});
  }
  CallbackResult handle(std::string_view secret, const ews::SendNotification& cb) {
    return handle(secret, cb, ip("192.0.2.10"));
  }
  // Runs one precheck() (the listener's look at a secret before the body) to completion.
  std::optional<CallbackResult> precheck(EwsCallbackService& s, std::string_view secret,
                                         const IpAddress& caller) {
    boost::asio::io_context ioc;
    bool done = false;
    std::optional<CallbackResult> out;
    boost::asio::co_spawn(ioc, s.precheck(secret, caller),
                          [&](std::exception_ptr e, std::optional<CallbackResult> o) {
                            if (e) std::rethrow_exception(e);
                            out = std::move(o);
                            done = true;
                          });
    ioc.run();
    EXPECT_TRUE(done) << "precheck() did not complete";
    return out;
  }

  boost::asio::awaitable<void> run_preload(EwsCallbackService& s, std::size_t page,
                                           std::optional<Result<std::size_t>>& out) {
    out = co_await s.preload_cache(stopping, page);
  }
  Result<std::size_t> preload(std::size_t page) {
    boost::asio::io_context ioc;
    std::optional<Result<std::size_t>> out;
    boost::asio::co_spawn(ioc, run_preload(service, page, out), boost::asio::detached);
    ioc.run();
    EXPECT_TRUE(out.has_value()) << "preload_cache() did not complete";
    return out.value_or(make_error(Errc::internal, "did not complete"));
  }

  std::string metrics() { return prometheus::TextSerializer().Serialize(registry.Collect()); }
  bool metrics_contain(const std::string& line) {
    return metrics().find(line + "\n") != std::string::npos;
  }

  // The registration as the service has cached it (none when not cached).
  std::optional<CachedRegistration> cached(std::string_view secret) {
    auto hit = cache.get(hash_key(secret));
    if (hit.hit != RegistrationCache::Hit::found) return std::nullopt;
    return hit.entry;
  }

  std::atomic<bool> stopping{false};
  FakeCallbackStore store;
  RegistrationCache cache{1024};
  prometheus::Registry registry;
  prometheus::Registry registry2;
  EwsCallbackService service{store, cache, registry};
};

// --- secrets and registrations -------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, MalformedSecretIsUnknownWithoutALookup) {
  for (const char* secret :
       {"", "short", "has/slash/0123456789abcdef", "abc.def.0123456789abcdefgh"}) {
    const auto out = handle(secret, callback("S1", {status_event("wm-1")}));
    EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_unknown) << secret;
  }
  EXPECT_EQ(store.lookups, 0);
  EXPECT_TRUE(store.attempts.empty());
}

TEST_F(EwsCallbackServiceTest, UnknownSecretIsUnsubscribedAndRemembered) {
  store.add(kOtherSecret);
  auto out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_unknown);
  EXPECT_EQ(out.customer_id, "");
  EXPECT_EQ(store.lookups, 1);

  out = handle(kSecret, callback("S1", {new_mail_event("wm-2")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_unknown);
  EXPECT_EQ(store.lookups, 1) << "an absent secret is answered from the cache";
  EXPECT_TRUE(store.attempts.empty());
}

TEST_F(EwsCallbackServiceTest, PrecheckPassesKnownSecretsAndAnswersUnknownOnesFromTheCache) {
  store.add(kSecret, "use1-acme");
  EXPECT_FALSE(precheck(service, kSecret, ip("192.0.2.10"))) << "known: read the body";
  const auto unknown = precheck(service, kOtherSecret, ip("192.0.2.10"));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->outcome, CallbackOutcome::unsubscribe_unknown);
  const auto malformed = precheck(service, "no", ip("192.0.2.10"));
  ASSERT_TRUE(malformed);
  EXPECT_EQ(malformed->outcome, CallbackOutcome::unsubscribe_unknown);
  EXPECT_EQ(store.lookups, 2);
  // The callback that follows a passed precheck binds (a full read of the record), then both
  // secrets are answered from the cache.
  EXPECT_EQ(handle(kSecret, callback("S1", {status_event("wm-1")})).outcome, CallbackOutcome::ok);
  const int lookups = store.lookups;
  EXPECT_FALSE(precheck(service, kSecret, ip("192.0.2.10")));
  (void)precheck(service, kOtherSecret, ip("192.0.2.10"));
  EXPECT_EQ(store.lookups, lookups) << "both answered from the cache the second time";
}

TEST_F(EwsCallbackServiceTest, UnknownSecretsAreLimitedPerAddressWhileKnownOnesPass) {
  // The finding: every made-up secret cost a database query, from any address, without end.
  RegistrationCache own_cache{1024};
  EwsCallbackService limited{store, own_cache, registry2, UnknownSecretLimit{3, 0.001}};
  store.add(kSecret, "use1-acme");
  EXPECT_FALSE(precheck(limited, kSecret, ip("192.0.2.10")));
  const std::string base = "0123456789abcdef0123456789abcd";
  for (int i = 0; i < 3; ++i) {
    const auto out = precheck(limited, base + std::to_string(10 + i), ip("198.51.100.1"));
    ASSERT_TRUE(out);
    EXPECT_EQ(out->outcome, CallbackOutcome::unsubscribe_unknown) << i;
  }
  const int lookups = store.lookups;
  const auto limited_out = precheck(limited, base + "99", ip("198.51.100.1"));
  ASSERT_TRUE(limited_out);
  EXPECT_EQ(limited_out->outcome, CallbackOutcome::rate_limited);
  EXPECT_EQ(store.lookups, lookups) << "over the limit: no lookup at all";
  EXPECT_FALSE(precheck(limited, kSecret, ip("198.51.100.1")))
      << "a known (cached) secret still passes from a limited address";
  const auto other = precheck(limited, base + "98", ip("198.51.100.2"));
  ASSERT_TRUE(other);
  EXPECT_EQ(other->outcome, CallbackOutcome::unsubscribe_unknown) << "other addresses unaffected";
}

TEST_F(EwsCallbackServiceTest, SecretsTheFilterRefusesCostNoLookup) {
  // mailpushd's filter: 44-character secrets must carry the region's tag; others are looked up.
  const std::string tagged = "T" + std::string(43, 'a');
  const std::string forged = "F" + std::string(43, 'a');
  store.add(tagged, "use1-acme");
  store.add(forged, "use1-acme");  // even a row with that hash is never reached
  service.set_secret_filter([&](std::string_view s) { return s.size() != 44 || s == tagged; });
  EXPECT_FALSE(precheck(service, tagged, ip("192.0.2.10")));
  EXPECT_EQ(store.lookups, 1);
  const auto refused = precheck(service, forged, ip("192.0.2.10"));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->outcome, CallbackOutcome::unsubscribe_unknown);
  EXPECT_EQ(handle(forged, callback("S1", {status_event("wm-1")})).outcome,
            CallbackOutcome::unsubscribe_unknown);
  EXPECT_EQ(store.lookups, 1) << "the forged secret never reached the store";
  EXPECT_TRUE(store.attempts.empty());
  EXPECT_EQ(handle(tagged, callback("S1", {status_event("wm-1")})).outcome, CallbackOutcome::ok);
  const int before = store.lookups;
  EXPECT_EQ(handle(kSecret, callback("S2", {status_event("wm-1")})).outcome,
            CallbackOutcome::unsubscribe_unknown);
  EXPECT_EQ(store.lookups, before + 1) << "an untagged secret is still looked up";
}

TEST_F(EwsCallbackServiceTest, CallbacksAreLimitedPerRegistrationAndPerCustomer) {
  // A holder of one capability (or a looping Exchange) cannot write without end.
  RegistrationCache own_cache{1024};
  EwsCallbackService limited{store, own_cache, registry2};
  limited.set_callback_limits({3, 0.001, 5, 0.001});
  store.add(kSecret, "use1-acme");
  store.add(kOtherSecret, "use1-acme");
  const auto run = [&](std::string_view secret, const std::string& sub) {
    boost::asio::io_context ioc;
    std::optional<CallbackResult> out;
    // Named: the coroutine runs after co_spawn returns, and holds references to its arguments.
    const auto cb = callback(sub, {status_event("wm")});
    const auto caller = ip("192.0.2.10");
    boost::asio::co_spawn(ioc, limited.handle(secret, cb, caller),
                          [&](std::exception_ptr e, CallbackResult o) {
                            if (e) std::rethrow_exception(e);
                            out = std::move(o);
                          });
    ioc.run();
    return out.value_or(CallbackResult{});
  };
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(kSecret, "S1").outcome, CallbackOutcome::ok) << i;
  const std::size_t written = store.attempts.size();
  const auto over = run(kSecret, "S1");
  EXPECT_EQ(over.outcome, CallbackOutcome::rate_limited);
  EXPECT_EQ(over.customer_id, "use1-acme");
  EXPECT_EQ(store.attempts.size(), written) << "nothing recorded past the limit";
  // The customer's bucket (5) is shared by its registrations: 3 spent, 2 left for the other.
  EXPECT_EQ(run(kOtherSecret, "S2").outcome, CallbackOutcome::ok);
  EXPECT_EQ(run(kOtherSecret, "S2").outcome, CallbackOutcome::ok);
  EXPECT_EQ(run(kOtherSecret, "S2").outcome, CallbackOutcome::rate_limited);
}

TEST_F(EwsCallbackServiceTest, FirstStatusEventBinds) {
  const auto id = store.add(kSecret, "use1-acme");
  const auto out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(out.customer_id, "use1-acme");

  ASSERT_EQ(store.recorded.size(), 1u);
  const auto& w = store.recorded[0];
  EXPECT_EQ(w.registration_id, id);
  EXPECT_EQ(w.mailbox_id, id);
  EXPECT_EQ(w.subscription_id, "S1");
  EXPECT_TRUE(w.bind);
  EXPECT_FALSE(w.expected_current.has_value());
  EXPECT_TRUE(w.count_events.empty());
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S1"));
}

TEST_F(EwsCallbackServiceTest, BindUpdatesTheCacheSoTheNextCallbackNeedsNoLookupOrBind) {
  store.add(kSecret);
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("wm-1")})).outcome, CallbackOutcome::ok);
  const auto entry = cached(kSecret);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->subscription, subscription_digest("S1"));

  ASSERT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm-2")})).outcome, CallbackOutcome::ok);
  EXPECT_EQ(store.lookups, 1);
  ASSERT_EQ(store.recorded.size(), 2u);
  EXPECT_FALSE(store.recorded[1].bind);
  EXPECT_EQ(store.attempts.size(), 2u) << "no stale round trip";
}

TEST_F(EwsCallbackServiceTest, SecondCallbackIsServedFromTheCache) {
  store.add(kSecret, "use1-test", "", "S1");
  for (int i = 0; i < 3; ++i) {
    const auto out = handle(kSecret, callback("S1", {new_mail_event("wm-" + std::to_string(i))}));
    EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  }
  EXPECT_EQ(store.lookups, 1);
  EXPECT_EQ(store.recorded.size(), 3u);
  EXPECT_TRUE(metrics_contain("mailpush_registration_cache_lookups_total{result=\"miss\"} 1"))
      << metrics();
  EXPECT_TRUE(metrics_contain("mailpush_registration_cache_lookups_total{result=\"hit\"} 2"))
      << metrics();
}

// --- what gets recorded --------------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, ThreeNewMailsAddThree) {
  const auto id = store.add(kSecret, "use1-test", "", "S1");
  store.set_unread(id, 4);
  const auto out = handle(kSecret, callback("S1", {new_mail_event("wm-1"), new_mail_event("wm-2"),
                                                   new_mail_event("wm-3")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  ASSERT_EQ(store.recorded.size(), 1u);
  const auto& w = store.recorded[0];
  EXPECT_FALSE(w.bind);
  ASSERT_EQ(w.count_events.size(), 3u);
  for (const auto& e : w.count_events) EXPECT_EQ(e.kind, store::CountEvent::Kind::new_item);
  EXPECT_EQ(store.unread(id), 7);
}

TEST_F(EwsCallbackServiceTest, UnreadCountThenNewMailSetsEight) {
  const auto id = store.add(kSecret, "use1-test", "", "S1");
  store.set_unread(id, 50);
  const auto out =
      handle(kSecret, callback("S1", {folder_modified_event("wm-1", 7), new_mail_event("wm-2")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  ASSERT_EQ(store.recorded.size(), 1u);
  ASSERT_EQ(store.recorded[0].count_events.size(), 2u);
  EXPECT_EQ(store.recorded[0].count_events[0].kind, store::CountEvent::Kind::truth);
  EXPECT_EQ(store.recorded[0].count_events[0].unread, 7);
  EXPECT_EQ(store.recorded[0].count_events[0].folder_id, "inbox");
  EXPECT_EQ(store.unread(id), 8);
}

TEST_F(EwsCallbackServiceTest, ItemModifiedEventDoesNotTouchTheCount) {
  const auto id = store.add(kSecret, "use1-test", "", "S1");
  store.set_unread(id, 3);
  const auto out = handle(kSecret, callback("S1", {item_modified_event("wm-1", 99)}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  ASSERT_EQ(store.recorded.size(), 1u);
  EXPECT_TRUE(store.recorded[0].count_events.empty());
  EXPECT_EQ(store.unread(id), 3);
}

TEST_F(EwsCallbackServiceTest, MessagesAboutAnotherSubscriptionAreIgnored) {
  const auto id = store.add(kSecret, "use1-test", "", "S1");
  const auto cb = callback_of(
      {notification_message("S1", {new_mail_event("wm-1")}),
       notification_message("S9", {new_mail_event("x-1"), folder_modified_event("x-2", 40)})});
  const auto out = handle(kSecret, cb);
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  ASSERT_EQ(store.recorded.size(), 1u);
  EXPECT_EQ(store.recorded[0].subscription_id, "S1");
  EXPECT_FALSE(store.recorded[0].bind);
  ASSERT_EQ(store.recorded[0].count_events.size(), 1u);
  EXPECT_EQ(store.recorded[0].count_events[0].kind, store::CountEvent::Kind::new_item);
  EXPECT_EQ(store.unread(id), 1);
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S1"));
  EXPECT_TRUE(metrics_contain("mailpush_ews_events_total{type=\"NewMail\"} 1")) << metrics();
  // Every type's series exists from the start; the ignored message's events are not counted.
  EXPECT_TRUE(metrics_contain("mailpush_ews_events_total{type=\"Modified\"} 0")) << metrics();
}

TEST_F(EwsCallbackServiceTest, ErrorOnlyCallbackForTheBoundSubscriptionIsOkWithoutAWrite) {
  store.add(kSecret, "use1-acme", "", "S1");
  const auto out = handle(kSecret, callback_of({error_message("ErrorReadEventsFailed", "S1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(out.customer_id, "use1-acme");
  EXPECT_TRUE(store.attempts.empty());
  EXPECT_TRUE(
      metrics_contain("mailpush_ews_error_messages_total{code=\"ErrorReadEventsFailed\"} 1"))
      << metrics();
}

TEST_F(EwsCallbackServiceTest, ErrorOnlyCallbackAboutAnotherIdNeverBinds) {
  // A subscription Exchange says is broken must not displace the working one.
  store.add(kSecret, "use1-test", "", "S1");
  store.add(kOtherSecret);
  for (const char* secret : {kSecret, kOtherSecret}) {
    const auto out = handle(secret, callback_of({error_message("ErrorReadEventsFailed", "S7")}));
    EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  }
  EXPECT_TRUE(store.attempts.empty());
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S1"));
  EXPECT_FALSE(store.find(kOtherSecret)->subscription_id.has_value());
  EXPECT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm-1")})).outcome, CallbackOutcome::ok);
}

TEST_F(EwsCallbackServiceTest, ErrorOnlyCallbackForASupersededIdIsUnsubscribed) {
  store.add(kSecret, "use1-test", "", "S2");
  store.find(kSecret)->superseded = {"S1"};
  const auto out = handle(kSecret, callback_of({error_message("ErrorReadEventsFailed", "S1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_superseded) << out.reason;
  EXPECT_TRUE(store.attempts.empty());
}

TEST_F(EwsCallbackServiceTest, CallbackWithoutAnySubscriptionIdIsOkWithoutAWrite) {
  store.add(kSecret, "use1-test", "", "S1");
  const auto out =
      handle(kSecret, callback_of({error_message("ErrorInternalServerError", std::nullopt)}));
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_TRUE(store.attempts.empty());
}

// --- the cache's preload ------------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, PreloadCachesEveryActiveRegistrationPageByPage) {
  std::vector<std::string> secrets;
  for (int i = 0; i < 23; ++i) {
    secrets.push_back("preloaded-secret-number-" + std::to_string(i));
    store.add(secrets.back(), "use1-acme", "",
              i % 2 ? std::optional<std::string>("S1") : std::nullopt);
  }
  const auto n = preload(5);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(*n, 23u);
  EXPECT_EQ(store.pages, 5) << "23 rows in pages of 5: the short fifth page ends it";
  EXPECT_EQ(store.lookups, 0);

  // Every callback of a preloaded registration is answered without a lookup, bound or not.
  for (int i = 0; i < 23; ++i) {
    const auto out = handle(secrets[i], callback("S1", {new_mail_event("wm")}));
    EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
    EXPECT_EQ(out.customer_id, "use1-acme");
  }
  EXPECT_EQ(store.lookups, 12) << "only the unbound ones read their full record, to bind";
  EXPECT_EQ(store.recorded.size(), 23u);
}

TEST_F(EwsCallbackServiceTest, PreloadKeepsWhatCallbacksCachedMeanwhile) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S2", {status_event("a")})).outcome, CallbackOutcome::ok);
  // The page was read before that rebind: it still says S1.
  store.find(kSecret)->subscription_id = "S1";
  ASSERT_TRUE(preload(100).ok());
  EXPECT_EQ(cached(kSecret)->subscription, subscription_digest("S2")) << "the newer entry stays";
}

TEST_F(EwsCallbackServiceTest, PreloadStopsWhenTheCacheIsFullOrOnShutdown) {
  RegistrationCache small(16);
  EwsCallbackService service2{store, small, registry2};
  for (int i = 0; i < 200; ++i) store.add("preloaded-secret-number-" + std::to_string(i));
  boost::asio::io_context ioc;
  std::optional<Result<std::size_t>> out;
  boost::asio::co_spawn(ioc, run_preload(service2, 10, out), boost::asio::detached);
  ioc.run();
  ASSERT_TRUE(out && out->ok());
  EXPECT_LE(small.size(), 16u);
  EXPECT_LT(store.pages, 20) << "no need to read every page once the cache is full";

  store.pages = 0;
  stopping = true;
  const auto none = preload(10);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);
  EXPECT_EQ(store.pages, 0);
}

TEST_F(EwsCallbackServiceTest, PreloadErrorIsReported) {
  store.add(kSecret);
  store.fail_next_page = make_error(Errc::unavailable, "database down");
  const auto n = preload(10);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().code, Errc::unavailable);
  EXPECT_EQ(handle(kSecret, callback("S1", {status_event("a")})).outcome, CallbackOutcome::ok)
      << "callbacks still work, reading their registration";
}

// --- superseded subscriptions --------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, SupersededSubscriptionIsUnsubscribed) {
  store.add(kSecret, "use1-acme", "", "S2");
  store.find(kSecret)->superseded = {"S1", "S0"};
  for (const char* old : {"S1", "S0"}) {
    const auto out = handle(kSecret, callback(old, {new_mail_event("wm-1")}));
    EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_superseded) << old;
    EXPECT_EQ(out.customer_id, "use1-acme");
  }
  EXPECT_TRUE(store.attempts.empty());
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S2"));
}

TEST_F(EwsCallbackServiceTest, RebindSupersedesTheOldSubscription) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm-1")})).outcome, CallbackOutcome::ok);
  EXPECT_EQ(store.lookups, 1);

  // The app resubscribed: Exchange opens S2 with a StatusEvent. The cache knows only that S1 is
  // bound: another id is decided on the full record, read again.
  const auto out = handle(kSecret, callback("S2", {status_event("wm-9")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.lookups, 2);
  ASSERT_EQ(store.recorded.size(), 2u);
  EXPECT_TRUE(store.recorded[1].bind);
  EXPECT_EQ(store.recorded[1].expected_current, std::optional<std::string>("S1"));
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S2"));
  EXPECT_EQ(store.find(kSecret)->superseded, std::vector<std::string>{"S1"});

  const auto entry = cached(kSecret);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->subscription, subscription_digest("S2"));

  // The new subscription is served from the cache.
  ASSERT_EQ(handle(kSecret, callback("S2", {new_mail_event("wm-10")})).outcome,
            CallbackOutcome::ok);
  EXPECT_EQ(store.lookups, 2);

  // The old subscription still calls: one read finds it superseded, and nothing is written.
  const auto old = handle(kSecret, callback("S1", {new_mail_event("wm-2")}));
  EXPECT_EQ(old.outcome, CallbackOutcome::unsubscribe_superseded) << old.reason;
  EXPECT_EQ(store.lookups, 3);
  EXPECT_EQ(store.attempts.size(), 3u);
  EXPECT_EQ(cached(kSecret)->subscription, subscription_digest("S2")) << "still bound to S2";
}

TEST_F(EwsCallbackServiceTest, SecondRebindPutsTheNewestOldIdFirst) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S2", {status_event("a")})).outcome, CallbackOutcome::ok);
  ASSERT_EQ(handle(kSecret, callback("S3", {status_event("b")})).outcome, CallbackOutcome::ok);
  const auto entry = cached(kSecret);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->subscription, subscription_digest("S3"));
  EXPECT_EQ(store.find(kSecret)->superseded, (std::vector<std::string>{"S2", "S1"}));
  for (const char* old : {"S1", "S2"}) {
    EXPECT_EQ(handle(kSecret, callback(old, {status_event("c")})).outcome,
              CallbackOutcome::unsubscribe_superseded)
        << old;
  }
  EXPECT_EQ(store.attempts.size(), 2u) << "superseded ids write nothing";
}

// --- stale writes --------------------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, StaleWriteRereadsAndFindsTheSubscriptionSuperseded) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm-1")})).outcome, CallbackOutcome::ok);
  store.rebind(kSecret, "S2");  // another instance saw the app's new subscription

  const auto out = handle(kSecret, callback("S1", {new_mail_event("wm-2")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_superseded) << out.reason;
  EXPECT_EQ(store.lookups, 2) << "the stale entry must be re-read from the store";
  EXPECT_EQ(store.attempts.size(), 2u);
  EXPECT_EQ(store.recorded.size(), 1u);

  const auto entry = cached(kSecret);
  ASSERT_TRUE(entry.has_value()) << "the fresh read is cached again";
  EXPECT_EQ(entry->subscription, subscription_digest("S2"));
  ASSERT_EQ(handle(kSecret, callback("S2", {new_mail_event("wm-3")})).outcome, CallbackOutcome::ok);
  EXPECT_EQ(store.lookups, 2);
}

TEST_F(EwsCallbackServiceTest, BindRacingAnotherInstanceRereadsAndRebinds) {
  store.add(kSecret);
  // Between this instance's lookup and its write, another instance binds S0.
  store.before_next_record = [](FakeCallbackStore& s) { s.rebind(kSecret, "S0"); };
  const auto out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.lookups, 2);
  ASSERT_EQ(store.attempts.size(), 2u);
  EXPECT_TRUE(store.attempts[0].bind);
  EXPECT_FALSE(store.attempts[0].expected_current.has_value());
  EXPECT_TRUE(store.attempts[1].bind);
  EXPECT_EQ(store.attempts[1].expected_current, std::optional<std::string>("S0"));
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S1"));

  const auto entry = cached(kSecret);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->subscription, subscription_digest("S1"));
  EXPECT_EQ(store.find(kSecret)->superseded, std::vector<std::string>{"S0"});
}

TEST_F(EwsCallbackServiceTest, BindOfTheSameIdByAnotherInstanceIsNotStale) {
  store.add(kSecret);
  store.before_next_record = [](FakeCallbackStore& s) { s.rebind(kSecret, "S1"); };
  const auto out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.attempts.size(), 1u);
  EXPECT_EQ(store.lookups, 1);
}

TEST_F(EwsCallbackServiceTest, RegistrationDeletedBeforeTheWriteIsUnsubscribed) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm-1")})).outcome, CallbackOutcome::ok);
  store.before_next_record = [](FakeCallbackStore& s) { s.remove(kSecret); };
  const auto out = handle(kSecret, callback("S1", {new_mail_event("wm-2")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_unknown) << out.reason;
  EXPECT_EQ(store.lookups, 2);
  EXPECT_EQ(cache.get(hash_key(kSecret)).hit, RegistrationCache::Hit::absent);
}

TEST_F(EwsCallbackServiceTest, StaleTwiceIsUnavailable) {
  store.add(kSecret);
  // Each write finds the registration bound to yet another id.
  store.before_next_record = [](FakeCallbackStore& s) {
    s.rebind(kSecret, "X1");
    s.before_next_record = [](FakeCallbackStore& t) { t.rebind(kSecret, "X2"); };
  };
  const auto out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unavailable) << out.reason;
  EXPECT_EQ(store.attempts.size(), 2u);
  EXPECT_TRUE(store.recorded.empty());
  EXPECT_EQ(cache.get(hash_key(kSecret)).hit, RegistrationCache::Hit::miss)
      << "a registration known to be stale must not stay cached";
  EXPECT_TRUE(metrics_contain("mailpush_ews_callbacks_total{result=\"unavailable\"} 1"))
      << metrics();
}

// --- store failures ------------------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, LookupErrorIsUnavailableAndNotRemembered) {
  store.add(kSecret, "use1-test", "", "S1");
  store.fail_next_lookup = make_error(Errc::unavailable, "database down");
  auto out = handle(kSecret, callback("S1", {new_mail_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unavailable);
  EXPECT_NE(out.reason.find("database down"), std::string::npos) << out.reason;
  EXPECT_TRUE(store.attempts.empty());
  EXPECT_EQ(cache.get(hash_key(kSecret)).hit, RegistrationCache::Hit::miss);

  out = handle(kSecret, callback("S1", {new_mail_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.lookups, 2);
}

TEST_F(EwsCallbackServiceTest, WriteErrorIsUnavailableAndChangesNothing) {
  store.add(kSecret);
  store.fail_next_record = make_error(Errc::unavailable, "lost connection");
  auto out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unavailable);
  EXPECT_EQ(out.customer_id, "use1-test");
  EXPECT_FALSE(store.find(kSecret)->subscription_id.has_value());
  const auto entry = cached(kSecret);
  ASSERT_TRUE(entry.has_value());
  EXPECT_FALSE(entry->subscription.has_value()) << "the cache must not claim the bind";

  // Exchange retries: now it works, and binds.
  out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S1"));
}

TEST_F(EwsCallbackServiceTest, LookupErrorOnTheRereadIsUnavailableNotUnsubscribe) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm-1")})).outcome, CallbackOutcome::ok);
  store.before_next_record = [](FakeCallbackStore& s) {
    s.rebind(kSecret, "S2");
    s.fail_next_lookup = make_error(Errc::unavailable, "database down");
  };
  const auto out = handle(kSecret, callback("S1", {new_mail_event("wm-2")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unavailable) << out.reason;
}

TEST_F(EwsCallbackServiceTest, WriteErrorOnTheSecondRoundIsUnavailable) {
  store.add(kSecret);
  store.before_next_record = [](FakeCallbackStore& s) {
    s.rebind(kSecret, "S0");
    s.before_next_record = [](FakeCallbackStore& t) {
      t.fail_next_record = make_error(Errc::unavailable, "lost connection");
    };
  };
  const auto out = handle(kSecret, callback("S1", {status_event("wm-1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unavailable) << out.reason;
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S0"));
}

// --- caller allow-lists --------------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, WithoutAnAllowListAnyCallerIsAccepted) {
  store.add(kSecret, "use1-test", "", "S1");
  for (const char* caller : {"192.0.2.10", "10.1.2.3", "2001:db8::7", "::1"}) {
    const auto out = handle(kSecret, callback("S1", {new_mail_event("wm")}), ip(caller));
    EXPECT_EQ(out.outcome, CallbackOutcome::ok) << caller << ": " << out.reason;
  }
}

TEST_F(EwsCallbackServiceTest, CallerOutsideTheAllowListIsForbidden) {
  store.add(kSecret, "use1-acme", "198.51.100.0/24, 203.0.113.7", "S1");
  for (const char* caller : {"198.51.100.20", "203.0.113.7", "::ffff:198.51.100.1"}) {
    const auto out = handle(kSecret, callback("S1", {new_mail_event("wm")}), ip(caller));
    EXPECT_EQ(out.outcome, CallbackOutcome::ok) << caller << ": " << out.reason;
  }
  const auto recorded = store.recorded.size();
  for (const char* caller : {"192.0.2.10", "203.0.113.8", "198.51.101.1", "2001:db8::1"}) {
    const auto out = handle(kSecret, callback("S1", {new_mail_event("wm")}), ip(caller));
    EXPECT_EQ(out.outcome, CallbackOutcome::forbidden) << caller;
    EXPECT_EQ(out.customer_id, "use1-acme");
    EXPECT_NE(out.reason.find(ip(caller).to_string()), std::string::npos) << out.reason;
  }
  EXPECT_EQ(store.recorded.size(), recorded) << "a forbidden callback records nothing";
  EXPECT_EQ(store.find(kSecret)->subscription_id, std::optional<std::string>("S1"));
}

TEST_F(EwsCallbackServiceTest, ForbiddenCallerCannotBind) {
  store.add(kSecret, "use1-acme", "198.51.100.0/24");
  const auto out = handle(kSecret, callback("S1", {status_event("wm")}), ip("192.0.2.1"));
  EXPECT_EQ(out.outcome, CallbackOutcome::forbidden);
  EXPECT_TRUE(store.attempts.empty());
  EXPECT_FALSE(store.find(kSecret)->subscription_id.has_value());
}

TEST_F(EwsCallbackServiceTest, AllowListSeparatorsAndIpv6) {
  store.add(kSecret, "use1-test", "2001:db8::/32,10.0.0.0/8\n192.0.2.0/25\t172.16.0.1", "S1");
  for (const char* caller : {"2001:db8:ffff::1", "10.200.0.1", "192.0.2.127", "172.16.0.1"}) {
    const auto out = handle(kSecret, callback("S1", {new_mail_event("wm")}), ip(caller));
    EXPECT_EQ(out.outcome, CallbackOutcome::ok) << caller << ": " << out.reason;
  }
  for (const char* caller : {"2001:db9::1", "::1", "192.0.2.128", "172.16.0.2", "11.0.0.1"}) {
    const auto out = handle(kSecret, callback("S1", {new_mail_event("wm")}), ip(caller));
    EXPECT_EQ(out.outcome, CallbackOutcome::forbidden) << caller;
  }
}

TEST_F(EwsCallbackServiceTest, Ipv4AllowListRefusesIpv6Callers) {
  store.add(kSecret, "use1-test", "0.0.0.0/0", "S1");
  EXPECT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm")}), ip("203.0.113.1")).outcome,
            CallbackOutcome::ok);
  EXPECT_EQ(handle(kSecret, callback("S1", {new_mail_event("wm")}), ip("2001:db8::1")).outcome,
            CallbackOutcome::forbidden);
}

TEST_F(EwsCallbackServiceTest, InvalidAllowListRefusesEveryone) {
  const char* lists[] = {"10.0.0.0/8, bogus", "10.0.0.0/33", "10.1.2.3/8",
                         "10.0.0.0/8;192.0.2.0/24"};
  std::string secrets[] = {std::string(40, 'a'), std::string(40, 'b'), std::string(40, 'c'),
                           std::string(40, 'd')};
  for (int i = 0; i < 4; ++i) {
    store.add(secrets[i], "use1-bad", lists[i], "S1");
    for (const char* caller : {"10.1.2.3", "192.0.2.1", "2001:db8::1"}) {
      const auto out = handle(secrets[i], callback("S1", {new_mail_event("wm")}), ip(caller));
      EXPECT_EQ(out.outcome, CallbackOutcome::forbidden) << lists[i] << " / " << caller;
      EXPECT_EQ(out.customer_id, "use1-bad");
    }
  }
  EXPECT_TRUE(store.attempts.empty());
}

TEST_F(EwsCallbackServiceTest, UnknownSecretIsUnsubscribedWhateverTheCaller) {
  EXPECT_EQ(handle(kSecret, callback("S1", {status_event("wm")}), ip("2001:db8::1")).outcome,
            CallbackOutcome::unsubscribe_unknown);
}

// --- metrics -------------------------------------------------------------------------------------

TEST_F(EwsCallbackServiceTest, CountsCallbacksByResult) {
  // Every result is exported at 0 before any callback, so alerts have a series to watch.
  for (const char* r :
       {"ok", "unsubscribe_unknown", "unsubscribe_superseded", "forbidden", "unavailable"}) {
    EXPECT_TRUE(
        metrics_contain(std::string("mailpush_ews_callbacks_total{result=\"") + r + "\"} 0"))
        << r << "\n"
        << metrics();
  }
  store.add(kSecret, "use1-test", "", "S1");
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(
        handle(kSecret, callback("S1", {new_mail_event("wm"), new_mail_event("wm2")})).outcome,
        CallbackOutcome::ok);
  }
  (void)handle(kOtherSecret, callback("S1", {status_event("wm")}));
  (void)handle("bad", callback("S1", {status_event("wm")}));
  const auto text = metrics();
  EXPECT_TRUE(metrics_contain("mailpush_ews_callbacks_total{result=\"ok\"} 4")) << text;
  EXPECT_TRUE(metrics_contain("mailpush_ews_callbacks_total{result=\"unsubscribe_unknown\"} 2"))
      << text;
  EXPECT_TRUE(metrics_contain("mailpush_ews_callbacks_total{result=\"forbidden\"} 0")) << text;
  EXPECT_TRUE(metrics_contain("mailpush_ews_events_total{type=\"NewMail\"} 8")) << text;
}

// --- real callback bodies ------------------------------------------------------------------------

std::optional<ews::SendNotification> sample(const char* name) {
  const auto path = std::filesystem::path(MAILPUSH_SOURCE_DIR) / "tests/data/ews" / name;
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream body;
  body << in.rdbuf();
  auto parsed = ews::parse_send_notification(body.str());
  if (!std::holds_alternative<ews::SendNotification>(parsed)) {
    ADD_FAILURE() << name << ": " << std::get<ews::ParseError>(parsed).message;
    return std::nullopt;
  }
  return std::get<ews::SendNotification>(std::move(parsed));
}

TEST_F(EwsCallbackServiceTest, SampleStatusEventBinds) {
  const auto cb = sample("03-workmail-docs-status-repaired.xml");
  ASSERT_TRUE(cb.has_value()) << "sample missing from tests/data/ews";
  store.add(kSecret);
  const auto out = handle(kSecret, *cb);
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.find(kSecret)->subscription_id,
            std::optional<std::string>("hKJETtoAdi9PPW0tZDQ4MThmMDoVYB"));
  ASSERT_EQ(store.recorded.size(), 1u);
}

TEST_F(EwsCallbackServiceTest, SampleFolderModifiedWithoutUnreadCountRecordsTheWatermarkOnly) {
  const auto cb = sample("01-rooms-doc-exo-two-modified-repaired.xml");
  ASSERT_TRUE(cb.has_value()) << "sample missing from tests/data/ews";
  const std::string id =
      "LABkYjhwcjAxbWI2NDg1LmV1cnByZDAxLnByb2QuZXhjaGFuZ2VsYWJzLmNvbRAAAADELVfykPBZQp7Q8IIUrUfmCKn7"
      "JnqX2AgQAAAAWTlI8+A2EEqLQp01E8Pw2Q==";
  store.add(kSecret, "use1-test", "", id);
  const auto out = handle(kSecret, *cb);
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  ASSERT_EQ(store.recorded.size(), 1u);
  EXPECT_FALSE(store.recorded[0].bind);
  EXPECT_TRUE(store.recorded[0].count_events.empty());
}

TEST_F(EwsCallbackServiceTest, SampleReadEventsFailedForTheBoundSubscriptionIsOk) {
  const auto cb = sample("04-tistory-ex2007sp1-error-readeventsfailed.xml");
  ASSERT_TRUE(cb.has_value()) << "sample missing from tests/data/ews";
  const std::string id =
      "HwBlaGRldjAaLm15c2luZ2alZGV2LnNhbXNabmcuY29tEAaAAEDzY414aNRHmaqvPaxcOC6bMacSPTbQCA==";
  store.add(kSecret, "use1-test", "", id);
  const auto out = handle(kSecret, *cb);
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_TRUE(store.attempts.empty());
}

}  // namespace
}  // namespace mp::relay

namespace mp::relay {
namespace {

TEST_F(EwsCallbackServiceTest, ErrorOnlyCallbackRereadsACachedRegistration) {
  store.add(kSecret, "use1-acme", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("w0")})).outcome, CallbackOutcome::ok);
  store.remove(kSecret);  // deleted meanwhile; no write will notice on this path
  const auto out = handle(kSecret, callback_of({error_message("ErrorReadEventsFailed", "S1")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_unknown) << out.reason;
}

TEST_F(EwsCallbackServiceTest, ValuesNoExchangeSendsAreInvalidBeforeAnyLookup) {
  store.add(kSecret, "use1-acme", "", "S1");
  const int before = store.lookups;
  auto out = handle(kSecret, callback(std::string(513, 'S'), {status_event("w0")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::invalid);
  out = handle(kSecret, callback("S1", {status_event(std::string(1025, 'w'))}));
  EXPECT_EQ(out.outcome, CallbackOutcome::invalid);
  out = handle(kSecret, callback("S1 with spaces", {status_event("w0")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::invalid);
  EXPECT_EQ(store.lookups, before);
  EXPECT_TRUE(store.attempts.empty());
}

TEST_F(EwsCallbackServiceTest, UnknownResponseCodesShareOneMetricLabel) {
  store.add(kSecret, "use1-acme", "", "S1");
  for (const char* code : {"ErrorMadeUpOne", "ErrorMadeUpTwo"}) {
    (void)handle(kSecret, callback_of({error_message(code, "S1")}));
  }
  EXPECT_TRUE(metrics_contain("mailpush_ews_error_messages_total{code=\"other\"} 2")) << metrics();
  EXPECT_EQ(metrics().find("ErrorMadeUp"), std::string::npos);
}

// --- heartbeats answered from memory (defer_heartbeats)
// -------------------------------------------

class DeferredHeartbeatTest : public EwsCallbackServiceTest {
 protected:
  DeferredHeartbeatTest() { service.defer_heartbeats(100); }
  void flush() {
    boost::asio::io_context ioc;
    bool done = false;
    boost::asio::co_spawn(ioc, service.flush_heard(), [&done](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
      done = true;
    });
    ioc.run();
    EXPECT_TRUE(done) << "flush_heard() did not complete";
  }
  static std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
};

TEST_F(DeferredHeartbeatTest, AHeartbeatIsAnsweredWithoutAWriteAndWrittenInBulkLater) {
  const auto id = store.add(kSecret, "use1-test", "", "S1");
  const std::int64_t before = now_s();
  for (int i = 0; i < 3; ++i) {
    const auto out = handle(kSecret, callback("S1", {status_event("wm")}));
    EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  }
  EXPECT_TRUE(store.attempts.empty()) << "no durable write before OK";
  EXPECT_EQ(service.heard_pending(), 1u) << "one entry per registration";
  EXPECT_EQ(store.last_heard(id), 0);
  flush();
  ASSERT_EQ(store.heard_calls.size(), 1u);
  ASSERT_EQ(store.heard_calls[0].size(), 1u);
  EXPECT_EQ(store.heard_calls[0][0].subscription_id, "S1");
  EXPECT_GE(store.last_heard(id), before);
  EXPECT_LE(store.last_heard(id), now_s());
  EXPECT_EQ(service.heard_pending(), 0u);
  flush();
  EXPECT_EQ(store.heard_calls.size(), 1u) << "nothing to write: no call";
  EXPECT_TRUE(metrics_contain("mailpush_ews_heartbeats_total{result=\"deferred\"} 3")) << metrics();
  EXPECT_TRUE(metrics_contain("mailpush_ews_heartbeats_total{result=\"written\"} 1")) << metrics();
  EXPECT_TRUE(metrics_contain("mailpush_ews_callbacks_total{result=\"ok\"} 3")) << metrics();
  EXPECT_TRUE(metrics_contain("mailpush_ews_events_total{type=\"Status\"} 3")) << metrics();
}

TEST_F(DeferredHeartbeatTest, BindingsAndCountsAreStillWrittenBeforeOk) {
  const auto id = store.add(kSecret);  // not bound yet
  auto out = handle(kSecret, callback("S1", {status_event("wm")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  ASSERT_EQ(store.recorded.size(), 1u) << "the first callback binds, durably";
  EXPECT_TRUE(store.recorded[0].bind);
  out = handle(kSecret, callback("S1", {new_mail_event("n1")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.recorded.size(), 2u) << "a count moved: durable before OK";
  EXPECT_EQ(store.unread(id), 1);
  EXPECT_EQ(service.heard_pending(), 0u) << "its time was written with its count";
  out = handle(kSecret, callback("S1", {status_event("wm")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  EXPECT_EQ(store.recorded.size(), 2u);
  EXPECT_EQ(service.heard_pending(), 1u);
}

TEST_F(DeferredHeartbeatTest, AnEndedRegistrationIsUnsubscribedAfterTheNextWrite) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("wm")})).outcome, CallbackOutcome::ok);
  store.remove(kSecret);  // ended through another instance
  // Answered from the cache until the write finds out (at most one flush interval).
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("wm")})).outcome, CallbackOutcome::ok);
  flush();
  EXPECT_FALSE(cached(kSecret).has_value()) << "the write dropped it from the cache";
  EXPECT_TRUE(metrics_contain("mailpush_ews_heartbeats_total{result=\"registration_changed\"} 1"))
      << metrics();
  const auto out = handle(kSecret, callback("S1", {status_event("wm")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_unknown) << out.reason;
}

TEST_F(DeferredHeartbeatTest, ARebindElsewhereUnsubscribesTheOldSubscriptionAfterTheNextWrite) {
  store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("wm")})).outcome, CallbackOutcome::ok);
  store.rebind(kSecret, "S2");  // the app resubscribed; another instance bound S2
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("wm")})).outcome, CallbackOutcome::ok);
  flush();
  auto out = handle(kSecret, callback("S1", {status_event("wm")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::unsubscribe_superseded) << out.reason;
  out = handle(kSecret, callback("S2", {status_event("wm")}));
  EXPECT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
}

TEST_F(DeferredHeartbeatTest, AFailedWriteKeepsTheTimesForTheNextOne) {
  const auto id = store.add(kSecret, "use1-test", "", "S1");
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("wm")})).outcome, CallbackOutcome::ok);
  store.fail_next_heard = make_error(Errc::unavailable, "database down");
  flush();
  EXPECT_EQ(store.last_heard(id), 0);
  EXPECT_EQ(service.heard_pending(), 1u) << "kept for the next write";
  EXPECT_TRUE(metrics_contain("mailpush_ews_heartbeats_total{result=\"write_failed\"} 1"))
      << metrics();
  flush();
  EXPECT_GT(store.last_heard(id), 0);
  EXPECT_EQ(service.heard_pending(), 0u);
}

TEST_F(DeferredHeartbeatTest, AFullLedgerRecordsHeartbeatsDurablyInstead) {
  service.defer_heartbeats(1);
  store.add(kSecret, "use1-test", "", "S1");
  store.add(kOtherSecret, "use1-test", "", "S9");
  ASSERT_EQ(handle(kSecret, callback("S1", {status_event("wm")})).outcome, CallbackOutcome::ok);
  const auto out = handle(kOtherSecret, callback("S9", {status_event("wm")}));
  ASSERT_EQ(out.outcome, CallbackOutcome::ok) << out.reason;
  ASSERT_EQ(store.recorded.size(), 1u) << "nothing unbounded: the second one is written at once";
  EXPECT_EQ(store.recorded[0].subscription_id, "S9");
  EXPECT_TRUE(metrics_contain("mailpush_ews_heartbeats_total{result=\"recorded_ledger_full\"} 1"))
      << metrics();
}

}  // namespace
}  // namespace mp::relay
