// Tests of the Dispatcher's rounds against an in-memory outbox (test_dispatch_store) and scripted
// APNs answers (test_badge_sender), without MariaDB or a network: coalescing, ownership and
// take-over, the answer to each APNs outcome (row, device, customer queue), paused customers and
// their resumption, result writes that fail, wake(), and a stop that waits for the answers on
// the wire.
#include "dispatch/dispatcher.hpp"

#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "test_badge_sender.hpp"
#include "test_dispatch_store.hpp"

namespace mp::dispatch {
namespace {

using namespace std::chrono_literals;
using apns::SendOutcome;
using test::answer;
using test::ScriptedBadgeSender;
using Store = mp::test::FakeDispatchStore;

const std::string kOwner = "instance-a";
const std::string kTopic = "com.example.mail";

// A customer's credential as CredentialRegistry hands it out; no TLS context (nothing connects).
std::shared_ptr<const credentials::LoadedCredential> credential(const std::string& customer,
                                                                const std::string& fingerprint,
                                                                bool development = true) {
  auto loaded = std::make_shared<credentials::LoadedCredential>();
  loaded->topic = kTopic;
  loaded->fingerprint = fingerprint;
  auto make = [&](apns::ApnsEnvironment environment) {
    auto c = std::make_shared<apns::ApnsCredential>();
    c->customer_id = customer;
    c->environment = environment;
    c->fingerprint = fingerprint;
    return c;
  };
  loaded->production = make(apns::ApnsEnvironment::production);
  if (development) loaded->development = make(apns::ApnsEnvironment::development);
  return loaded;
}

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    customer = store.add_customer("tst-customer");
    credentials["tst-customer"] = credential("tst-customer", "fp-1");
  }

  void TearDown() override {
    if (!dispatcher) return;
    bool stopped = false;
    dispatcher->stop([&stopped] { stopped = true; });
    EXPECT_TRUE(run_until([&] { return stopped; }));
    EXPECT_EQ(sender.closes(), 1) << "the APNs connections close when the dispatcher stops";
  }

  static DispatcherOptions options() {
    DispatcherOptions o;
    o.owner = kOwner;
    o.batch = 100;
    o.poll = 10ms;
    o.lease = 30s;
    o.pause_probe = 1h;
    o.retry = RetryPolicy{3, 20ms, 40ms};
    o.stats_interval = 1h;
    return o;
  }

  void start(DispatcherOptions o = options()) {
    dispatcher.emplace(
        ioc, store, sender,
        [this](const std::string& id) -> std::shared_ptr<const credentials::LoadedCredential> {
          auto it = credentials.find(id);
          return it == credentials.end() ? nullptr : it->second;
        },
        std::move(o), registry);
    dispatcher->start();
  }

  // Runs the io_context until `done` holds; false after `limit`.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(10ms);
    }
    return true;
  }
  // Runs it for `time` whatever happens (to see that something does not).
  void run_for(std::chrono::milliseconds time) {
    const auto deadline = std::chrono::steady_clock::now() + time;
    while (std::chrono::steady_clock::now() < deadline) {
      if (ioc.stopped()) ioc.restart();
      ioc.run_one_for(5ms);
    }
  }
  // Lets the dispatcher run `n` more rounds (each reads the outbox once).
  void run_rounds(std::size_t n) {
    const std::size_t target = store.reads() + n;
    EXPECT_TRUE(run_until([&] { return store.reads() >= target; }));
  }

  const std::string& token(std::int64_t device) { return store.device(device).token_hex; }
  std::string metrics() const { return prometheus::TextSerializer().Serialize(registry.Collect()); }

  boost::asio::io_context ioc;
  prometheus::Registry registry;
  Store store;
  ScriptedBadgeSender sender;
  std::map<std::string, std::shared_ptr<const credentials::LoadedCredential>> credentials;
  std::int64_t customer = 0;
  std::optional<Dispatcher> dispatcher;  // last: stopped and destroyed first
};

TEST_F(DispatcherTest, OnlyTheNewestBadgeOfEachDeviceIsSentAndEveryRowOfTheRoundGoes) {
  const auto d1 = store.add_device(customer);
  const auto d2 = store.add_device(customer);
  store.queue(kOwner, d1, 1);
  store.queue(kOwner, d1, 2);
  store.queue(kOwner, d1, 3);
  store.queue(kOwner, d2, 7);
  start();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));

  ASSERT_EQ(sender.sent().size(), 2u);
  std::map<std::string, ScriptedBadgeSender::Sent> by_token;
  for (const auto& s : sender.sent()) by_token[s.notification.device_token_hex] = s;
  ASSERT_EQ(by_token.count(token(d1)), 1u);
  const auto& newest = by_token[token(d1)];
  EXPECT_EQ(newest.notification.badge, 3);
  EXPECT_EQ(newest.notification.topic, kTopic);
  EXPECT_EQ(newest.notification.collapse_id, std::optional<std::string>("badge"));
  EXPECT_EQ(newest.customer, "tst-customer");
  EXPECT_EQ(newest.fingerprint, "fp-1");
  EXPECT_EQ(newest.environment, apns::ApnsEnvironment::production);
  // apns-expiration: the row's hour from now, not already past.
  const auto left = newest.notification.expires - std::chrono::system_clock::now();
  EXPECT_GT(left, 59min);
  EXPECT_LE(left, 1h);
  EXPECT_EQ(by_token[token(d2)].notification.badge, 7);

  const std::string m = metrics();
  EXPECT_NE(m.find("mailpush_dispatch_rows_total{result=\"superseded\"} 2"), std::string::npos)
      << m;
  EXPECT_NE(m.find("mailpush_dispatch_rows_total{result=\"delivered\"} 2"), std::string::npos);
}

TEST_F(DispatcherTest, AWakeIsOneBackgroundPushAfterTheDevicesBadge) {
  const auto d = store.add_device(customer);
  const auto a = store.queue(kOwner, d, 3);
  const auto b = store.queue(kOwner, d, 3);
  store.wake(a, "reauthorize");
  store.wake(b, "resync");
  start();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  ASSERT_EQ(sender.sent().size(), 2u) << "one badge and one wake for the device";
  EXPECT_FALSE(sender.sent()[0].notification.background);
  EXPECT_EQ(sender.sent()[0].notification.badge, 3);
  const auto& wake = sender.sent()[1].notification;
  EXPECT_TRUE(wake.background);
  EXPECT_EQ(wake.priority, 5);
  EXPECT_FALSE(wake.collapse_id) << "a wake must not replace the badge at APNs";
  ASSERT_TRUE(apns::build_request(wake).ok());
  ASSERT_EQ(store.wakes_written().size(), 2u);
  for (const auto& w : store.wakes_written()) EXPECT_TRUE(w.sent);
  EXPECT_NE(
      metrics().find("mailpush_dispatch_wakes_total{reason=\"reauthorize\",result=\"sent\"} 1"),
      std::string::npos)
      << metrics();
}

TEST_F(DispatcherTest, AWakeWithinTheIntervalIsDroppedAndTheBadgeStillGoes) {
  const auto d = store.add_device(customer);
  const auto a = store.queue(kOwner, d, 4);
  store.wake(a, "resync", false);
  start();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  ASSERT_EQ(sender.sent().size(), 1u);
  EXPECT_FALSE(sender.sent()[0].notification.background);
  ASSERT_EQ(store.wakes_written().size(), 1u);
  EXPECT_FALSE(store.wakes_written()[0].sent);
  EXPECT_NE(metrics().find("result=\"limited\""), std::string::npos);
}

TEST_F(DispatcherTest, AWakeWaitsWithItsBadgeAndEndsWithItsDevice) {
  const auto d = store.add_device(customer);
  sender.script(token(d), answer(SendOutcome::retry_later, "TooManyRequests", 429));
  const auto a = store.queue(kOwner, d, 5);
  store.wake(a, "resubscribe");
  start();
  // The badge is retried: no wake yet, and none dropped.
  ASSERT_TRUE(run_until([&] { return sender.sent().size() >= 2; }));
  EXPECT_FALSE(sender.sent()[0].notification.background);
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_TRUE(sender.sent().back().notification.background) << "sent once the badge went";
  ASSERT_EQ(store.wakes_written().size(), 1u);
  EXPECT_TRUE(store.wakes_written()[0].sent);

  const auto gone = store.add_device(customer);
  sender.script(token(gone), answer(SendOutcome::unregistered, "Unregistered", 410));
  const auto g = store.queue(kOwner, gone, 1);
  store.wake(g, "renew");
  dispatcher->wake();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_EQ(sender.sent_to(token(gone)), 1u) << "no wake for an unregistered device";
  ASSERT_EQ(store.wakes_written().size(), 2u);
  EXPECT_FALSE(store.wakes_written()[1].sent);
}

TEST_F(DispatcherTest, OnlyItsOwnRowsAreSentUntilTheirOwnerIsGone) {
  const auto d1 = store.add_device(customer);
  const auto d2 = store.add_device(customer);
  const auto alive = store.queue("instance-b", d1, 4);
  const auto orphan = store.queue("instance-c", d2, 5);
  auto o = options();
  o.lease = 2s;  // take-over every second
  start(o);
  run_rounds(3);
  EXPECT_TRUE(sender.sent().empty()) << "rows of live instances are theirs";

  store.owner_gone("instance-c");
  // Take-over runs every lease / 2: the next one moves the gone owner's rows.
  ASSERT_TRUE(run_until([&] { return store.row(orphan) == nullptr; }, 3s));
  EXPECT_EQ(sender.sent_to(token(d2)), 1u);
  EXPECT_EQ(sender.sent_to(token(d1)), 0u);
  ASSERT_NE(store.row(alive), nullptr);
  EXPECT_EQ(store.row(alive)->owner, "instance-b");
}

TEST_F(DispatcherTest, UnregisteredRemovesTheRowAndTheDeviceGetsNoMoreBadges) {
  const auto d = store.add_device(customer);
  const auto at = std::chrono::system_clock::now() - 1h;
  auto gone = answer(SendOutcome::unregistered, "Unregistered", 410);
  gone.unregistered_at = at;
  sender.script(token(d), gone);
  store.queue(kOwner, d, 2);
  start();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_EQ(store.device(d).state, "unregistered");
  EXPECT_EQ(store.device(d).unregistered_at, at) << "Apple's timestamp, not ours";

  // A badge queued before the device changed is dropped without a send.
  store.queue(kOwner, d, 3);
  dispatcher->wake();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_EQ(sender.sent_to(token(d)), 1u);
  EXPECT_NE(metrics().find("mailpush_dispatch_rows_total{result=\"device_inactive\"} 1"),
            std::string::npos);
}

TEST_F(DispatcherTest, BadDeviceTokenAndTokenNotForTopicMakeTheDeviceInvalid) {
  const auto bad = store.add_device(customer);
  const auto other_app = store.add_device(customer);
  sender.script(token(bad), answer(SendOutcome::bad_device_token, "BadDeviceToken", 400));
  sender.script(token(other_app),
                answer(SendOutcome::topic_mismatch, "DeviceTokenNotForTopic", 400));
  store.queue(kOwner, bad, 1);
  store.queue(kOwner, other_app, 1);
  start();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_EQ(store.device(bad).state, "invalid");
  EXPECT_EQ(store.device(bad).invalid_reason, "BadDeviceToken");
  EXPECT_EQ(store.device(other_app).state, "invalid");
  EXPECT_EQ(store.device(other_app).invalid_reason, "DeviceTokenNotForTopic");
  EXPECT_TRUE(store.pause_calls().empty()) << "a device's fault, not the customer's";
}

TEST_F(DispatcherTest, TooManyRequestsAndServerErrorsAreRetriedLater) {
  const auto limited = store.add_device(customer);
  const auto failing = store.add_device(customer);
  sender.script(token(limited), answer(SendOutcome::retry_exhausted, "TooManyRequests", 429));
  sender.script(token(failing), answer(SendOutcome::retry_exhausted, "InternalServerError", 500));
  const auto r1 = store.queue(kOwner, limited, 6);
  const auto r2 = store.queue(kOwner, failing, 8);
  auto o = options();
  o.retry = RetryPolicy{5, 300ms, 300ms};
  start(o);
  ASSERT_TRUE(run_until([&] { return store.writes_applied() >= 1; }));
  std::map<std::int64_t, std::chrono::steady_clock::time_point> due;
  for (auto id : {r1, r2}) {
    ASSERT_NE(store.row(id), nullptr);
    EXPECT_EQ(store.row(id)->state, "queued");
    EXPECT_EQ(store.row(id)->attempts, 1);
    // A jittered backoff of at most the policy's cap.
    EXPECT_LE(store.row(id)->next_attempt, std::chrono::steady_clock::now() + 300ms);
    due[id] = store.row(id)->next_attempt;
  }
  EXPECT_EQ(store.row(r1)->last_error, "TooManyRequests");
  EXPECT_EQ(store.row(r2)->last_error, "InternalServerError");

  // Sent again once due, and delivered (the script has no more failures).
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  ASSERT_EQ(sender.sent().size(), 4u);
  for (const auto& [id, device] : {std::pair{r1, limited}, std::pair{r2, failing}}) {
    EXPECT_EQ(sender.sent_to(token(device)), 2u);
    for (std::size_t i = 2; i < sender.sent().size(); ++i) {
      if (sender.sent()[i].notification.device_token_hex != token(device)) continue;
      EXPECT_GE(sender.sent()[i].at, due[id]) << "not before its next attempt";
    }
  }
}

TEST_F(DispatcherTest, ARowThatKeepsFailingIsDeadLetteredAfterMaxAttempts) {
  const auto d = store.add_device(customer);
  for (int i = 0; i < 5; ++i) {
    sender.script(token(d), answer(SendOutcome::retry_exhausted, "ServiceUnavailable", 503));
  }
  const auto id = store.queue(kOwner, d, 1);
  start();  // max_attempts 3
  ASSERT_TRUE(run_until([&] { return store.row(id) && store.row(id)->state == "dead"; }));
  EXPECT_EQ(sender.sent_to(token(d)), 3u);
  EXPECT_EQ(store.row(id)->last_error, "TooManyAttempts: ServiceUnavailable");
  run_rounds(3);
  EXPECT_EQ(sender.sent_to(token(d)), 3u) << "a dead letter is not sent";
}

TEST_F(DispatcherTest, ARefusedPayloadIsDeadAtOnceAndAClosedPoolLeavesTheRowQueued) {
  const auto refused = store.add_device(customer);
  const auto closing = store.add_device(customer);
  sender.script(token(refused), answer(SendOutcome::permanent_payload, "PayloadTooLarge", 413));
  sender.script(token(closing), answer(SendOutcome::retry_exhausted, "PoolClosed"));
  const auto r1 = store.queue(kOwner, refused, 1);
  const auto r2 = store.queue(kOwner, closing, 1);
  start();
  ASSERT_TRUE(run_until([&] { return store.writes_applied() >= 1; }));
  ASSERT_NE(store.row(r1), nullptr);
  EXPECT_EQ(store.row(r1)->state, "dead");
  EXPECT_EQ(store.row(r1)->last_error, "Refused: PayloadTooLarge");
  ASSERT_NE(store.row(r2), nullptr);
  EXPECT_EQ(store.row(r2)->state, "queued");
  EXPECT_EQ(store.row(r2)->attempts, 0) << "shutting down is no failed attempt";
  EXPECT_TRUE(store.pause_calls().empty());
}

TEST_F(DispatcherTest, ABadCertificatePausesTheCustomerUntilARenewal) {
  const auto other = store.add_customer("tst-other");
  credentials["tst-other"] = credential("tst-other", "fp-o");
  const auto d = store.add_device(customer);
  const auto e = store.add_device(other);
  sender.script(token(d), answer(SendOutcome::credential_failed, "BadCertificate", 403));
  const auto held = store.queue(kOwner, d, 3);
  start();
  ASSERT_TRUE(run_until([&] { return !store.pause_calls().empty(); }));
  EXPECT_EQ(store.pause_calls().back(),
            std::make_pair(customer, std::optional<std::string>("BadCertificate")));
  EXPECT_EQ(store.customer(customer).paused_reason, std::optional<std::string>("BadCertificate"));

  // Its rows stay queued and are not read while it is paused; other customers go on.
  store.queue(kOwner, d, 4);
  const auto others = store.queue(kOwner, e, 1);
  ASSERT_TRUE(run_until([&] { return store.row(others) == nullptr; }));
  run_rounds(3);
  EXPECT_EQ(store.last_paused_filter(), std::vector<std::int64_t>{customer});
  EXPECT_EQ(sender.sent_to(token(d)), 1u);
  ASSERT_NE(store.row(held), nullptr);
  EXPECT_EQ(store.row(held)->attempts, 0);
  EXPECT_EQ(store.device(d).state, "active") << "devices are kept";
  EXPECT_NE(metrics().find("mailpush_dispatch_paused_customers 1"), std::string::npos);

  // A new certificate is active: resumed, and the newest badge goes with it.
  credentials["tst-customer"] = credential("tst-customer", "fp-2");
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_EQ(store.pause_calls().back(), std::make_pair(customer, std::optional<std::string>()));
  EXPECT_EQ(store.customer(customer).paused_reason, std::nullopt);
  EXPECT_EQ(sender.sent_to(token(d)), 2u);
  EXPECT_EQ(sender.sent().back().fingerprint, "fp-2");
  EXPECT_EQ(sender.sent().back().notification.badge, 4);
}

TEST_F(DispatcherTest, APausedCustomerIsProbedAgainAfterThePauseProbe) {
  const auto d = store.add_device(customer);
  sender.script(token(d), answer(SendOutcome::topic_mismatch, "TopicDisallowed", 400));
  store.queue(kOwner, d, 2);
  auto o = options();
  o.pause_probe = 1s;  // the option's unit
  start(o);
  ASSERT_TRUE(run_until([&] { return !store.pause_calls().empty(); }));
  EXPECT_EQ(store.pause_calls().back().second, std::optional<std::string>("TopicDisallowed"));
  run_for(300ms);
  EXPECT_EQ(sender.sent_to(token(d)), 1u) << "not before the probe";
  // Same credential: the probe sends again, and this time APNs takes it.
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_EQ(sender.sent_to(token(d)), 2u);
  EXPECT_EQ(store.pause_calls().back().second, std::nullopt);
}

TEST_F(DispatcherTest, NoCredentialPausesAndNoneForTheEnvironmentIsADeadLetter) {
  const auto waiting = store.add_customer("tst-onboarding");  // its credential is not loaded yet
  const auto dw = store.add_device(waiting);
  const auto dev = store.add_device(customer, "development");
  credentials["tst-customer"] = credential("tst-customer", "fp-1", /*development=*/false);
  const auto r1 = store.queue(kOwner, dw, 1);
  const auto r2 = store.queue(kOwner, dev, 1);
  start();
  ASSERT_TRUE(run_until([&] { return store.writes_applied() >= 1; }));
  EXPECT_TRUE(sender.sent().empty());
  ASSERT_NE(store.row(r1), nullptr);
  EXPECT_EQ(store.row(r1)->state, "queued");
  EXPECT_EQ(store.customer(waiting).paused_reason,
            std::optional<std::string>("NoActiveCredential"));
  ASSERT_NE(store.row(r2), nullptr);
  EXPECT_EQ(store.row(r2)->state, "dead");
  EXPECT_EQ(store.row(r2)->last_error, "NoCredentialForEnvironment");

  // The credential arrives (the registry's next refresh): the row is sent with it.
  credentials["tst-onboarding"] = credential("tst-onboarding", "fp-w");
  ASSERT_TRUE(run_until([&] { return store.row(r1) == nullptr; }));
  EXPECT_EQ(sender.sent_to(token(dw)), 1u);
  EXPECT_EQ(store.customer(waiting).paused_reason, std::nullopt);
}

TEST_F(DispatcherTest, RowsOfInactiveCustomersAreDroppedAndExpiredRowsDeadWithoutASend) {
  const auto disabled = store.add_customer("tst-disabled", "disabled");
  credentials["tst-disabled"] = credential("tst-disabled", "fp-d");
  const auto dd = store.add_device(disabled);
  const auto d = store.add_device(customer);
  const auto dropped = store.queue(kOwner, dd, 1);
  const auto expired = store.queue(kOwner, d, 1, 2h);
  start();
  ASSERT_TRUE(run_until([&] { return store.writes_applied() >= 1; }));
  EXPECT_TRUE(sender.sent().empty());
  EXPECT_EQ(store.row(dropped), nullptr);
  ASSERT_NE(store.row(expired), nullptr);
  EXPECT_EQ(store.row(expired)->state, "dead");
  EXPECT_EQ(store.row(expired)->last_error, "Expired");
}

TEST_F(DispatcherTest, AFailedResultWriteIsRetriedWithoutSendingAgain) {
  const auto d = store.add_device(customer);
  store.queue(kOwner, d, 9);
  store.fail_next_writes(2);
  start();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }));
  EXPECT_EQ(store.write_attempts(), 3u);
  EXPECT_EQ(sender.sent_to(token(d)), 1u);
  EXPECT_NE(metrics().find("mailpush_dispatch_result_write_failures_total 1"), std::string::npos);
}

TEST_F(DispatcherTest, WakeStartsARoundBeforeThePoll) {
  auto o = options();
  o.poll = 30s;
  start(o);
  ASSERT_TRUE(run_until([&] { return store.reads() >= 1; }));
  const auto d = store.add_device(customer);
  store.queue(kOwner, d, 1);
  run_for(100ms);
  EXPECT_TRUE(sender.sent().empty()) << "nothing reads before the poll";
  dispatcher->wake();
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }, 1s));
  EXPECT_EQ(sender.sent_to(token(d)), 1u);
}

TEST_F(DispatcherTest, AWakeGathersTheCommitsThatFollowIntoOneRound) {
  auto o = options();
  o.poll = 30s;
  o.gather = 1s;  // far longer than the 120 ms below, even on a loaded machine
  start(o);
  ASSERT_TRUE(run_until([&] { return store.reads() >= 1; }));
  const std::size_t reads = store.reads();
  // Three commits in quick succession, each waking the dispatcher.
  std::vector<std::int64_t> devices;
  for (int i = 0; i < 3; ++i) {
    devices.push_back(store.add_device(customer));
    store.queue(kOwner, devices.back(), i + 1);
    dispatcher->wake();
    run_for(40ms);
  }
  EXPECT_TRUE(sender.sent().empty()) << "the round waits out its gather time";
  EXPECT_EQ(store.reads(), reads);
  ASSERT_TRUE(run_until([&] { return store.rows() == 0; }, 3s));
  EXPECT_EQ(store.reads(), reads + 1) << "one round took all three";
  for (const auto d : devices) EXPECT_EQ(sender.sent_to(token(d)), 1u);
}

TEST_F(DispatcherTest, AStopCutsTheGatherShort) {
  auto o = options();
  o.poll = 30s;
  o.gather = 30s;
  start(o);
  ASSERT_TRUE(run_until([&] { return store.reads() >= 1; }));
  store.queue(kOwner, store.add_device(customer), 1);
  dispatcher->wake();
  run_for(50ms);
  bool stopped = false;
  dispatcher->stop([&stopped] { stopped = true; });
  EXPECT_TRUE(run_until([&] { return stopped; }, 2s)) << "a stop does not wait 30 s";
  EXPECT_EQ(sender.closes(), 1);
  dispatcher.reset();
}

TEST_F(DispatcherTest, StopWaitsForTheAnswersOnTheWireAndWritesThem) {
  const auto d = store.add_device(customer);
  sender.hold();
  store.queue(kOwner, d, 5);
  start();
  ASSERT_TRUE(run_until([&] { return sender.in_flight() == 1; }));
  bool stopped = false;
  dispatcher->stop([&stopped] { stopped = true; });
  run_for(100ms);
  EXPECT_FALSE(stopped) << "a send is on the wire";
  EXPECT_EQ(store.rows(), 1u);
  EXPECT_EQ(sender.closes(), 0);

  sender.release();
  ASSERT_TRUE(run_until([&] { return stopped; }));
  EXPECT_EQ(store.rows(), 0u) << "its answer was written before the stop ended";
  EXPECT_EQ(sender.closes(), 1);
  dispatcher.reset();
}

}  // namespace
}  // namespace mp::dispatch
