// The dispatcher's rules: one badge per device is sent (its other marks are cleared with it),
// marks of inactive devices and customers are dropped, expired badges are dead-lettered, and
// every APNs answer maps to the right change of mark, device and customer queue.
#include "dispatch/dispatch_plan.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "apns/request.hpp"

namespace mp::dispatch {
namespace {

store::OutboxRow row(std::int64_t id, std::int64_t device, std::int64_t badge) {
  store::OutboxRow r;
  r.id = id;
  r.version = id * 10;
  r.customer_id = 7;
  r.device_id = device;
  r.mailbox_id = 3;
  r.badge = badge;
  r.token_hex = std::string(64, 'a');
  r.environment = "production";
  r.device_state = "active";
  r.customer_public_id = "dev-x";
  r.customer_state = "active";
  return r;
}

// Cleared at the version read (row() sets it to id × 10).
bool contains(const std::vector<store::PendingMark>& v, std::int64_t id) {
  return std::find(v.begin(), v.end(), store::PendingMark{id, id * 10}) != v.end();
}

TEST(DispatchPlan, OneBadgePerDeviceIsSentAndItsOtherMarksCleared) {
  const auto plan = plan_round({row(10, 1, 1), row(12, 1, 3), row(11, 1, 2), row(13, 2, 5)});
  ASSERT_EQ(plan.sends.size(), 2u);
  EXPECT_EQ(plan.sends[0].row.id, 12);
  EXPECT_EQ(plan.sends[0].row.badge, 3);
  EXPECT_EQ(plan.sends[1].row.id, 13);
  EXPECT_TRUE(contains(plan.outcome.remove, 10));
  EXPECT_TRUE(contains(plan.outcome.remove, 11));
  EXPECT_FALSE(contains(plan.outcome.remove, 12));
  EXPECT_EQ(plan.counted.size(), 2u);
}

TEST(DispatchPlan, InactiveDevicesAndCustomersAreDroppedAndExpiredRowsDeadLettered) {
  auto gone = row(1, 1, 1);
  gone.device_state = "unregistered";
  auto disabled = row(2, 2, 1);
  disabled.customer_state = "disabled";
  auto old = row(3, 3, 1);
  old.expired = true;
  const auto plan = plan_round({gone, disabled, old});
  EXPECT_TRUE(plan.sends.empty());
  EXPECT_TRUE(contains(plan.outcome.remove, 1));
  EXPECT_TRUE(contains(plan.outcome.remove, 2));
  ASSERT_EQ(plan.outcome.dead.size(), 1u);
  EXPECT_EQ(plan.outcome.dead[0].mark, (store::PendingMark{3, 30}));
  EXPECT_EQ(plan.outcome.dead[0].reason, "Expired");
}

class Answers : public ::testing::Test {
 protected:
  RowOutcome apply(apns::SendOutcome outcome, const std::string& reason = "", int attempts = 0) {
    PlannedSend send{row(5, 9, 4), {}, {}};
    send.row.attempts = attempts;
    apns::SendResult result;
    result.outcome = outcome;
    result.reason = reason;
    out = {};
    signal = {};
    return apply_send_result(send, result, policy, rng, out, signal);
  }
  RetryPolicy policy{3, std::chrono::milliseconds(100), std::chrono::milliseconds(1000)};
  std::mt19937_64 rng{1};
  store::DispatchWrites out;
  CustomerSignal signal;
};

TEST_F(Answers, DeliveredRemovesTheRow) {
  EXPECT_EQ(apply(apns::SendOutcome::delivered), RowOutcome::delivered);
  EXPECT_TRUE(contains(out.remove, 5));
  EXPECT_TRUE(out.devices.empty());
}

TEST_F(Answers, UnregisteredAndBadTokensChangeTheDeviceNotTheCustomer) {
  EXPECT_EQ(apply(apns::SendOutcome::unregistered, "Unregistered"), RowOutcome::unregistered);
  ASSERT_EQ(out.devices.size(), 1u);
  EXPECT_TRUE(out.devices[0].unregistered);
  EXPECT_EQ(out.devices[0].device_id, 9);
  EXPECT_FALSE(signal.pause);

  EXPECT_EQ(apply(apns::SendOutcome::bad_device_token, "BadDeviceToken"),
            RowOutcome::bad_device_token);
  ASSERT_EQ(out.devices.size(), 1u);
  EXPECT_FALSE(out.devices[0].unregistered);
  EXPECT_EQ(out.devices[0].reason, "BadDeviceToken");
  EXPECT_TRUE(contains(out.remove, 5));

  EXPECT_EQ(apply(apns::SendOutcome::topic_mismatch, "DeviceTokenNotForTopic"),
            RowOutcome::bad_device_token);
  EXPECT_FALSE(signal.pause);
}

TEST_F(Answers, CredentialFailuresPauseTheCustomerAndKeepTheRow) {
  EXPECT_EQ(apply(apns::SendOutcome::credential_failed, "BadCertificate"), RowOutcome::paused);
  EXPECT_TRUE(signal.pause);
  EXPECT_EQ(signal.reason, "BadCertificate");
  EXPECT_TRUE(out.empty()) << "the row stays queued, the device is kept";

  EXPECT_EQ(apply(apns::SendOutcome::topic_mismatch, "TopicDisallowed"), RowOutcome::paused);
  EXPECT_TRUE(signal.pause);
  EXPECT_TRUE(out.empty());
}

TEST_F(Answers, RetryableAnswersBackOffThenDeadLetter) {
  EXPECT_EQ(apply(apns::SendOutcome::retry_exhausted, "TooManyRequests", 0), RowOutcome::retry);
  ASSERT_EQ(out.retry.size(), 1u);
  EXPECT_LE(out.retry[0].delay, std::chrono::milliseconds(100));
  EXPECT_EQ(out.retry[0].error, "TooManyRequests");

  EXPECT_EQ(apply(apns::SendOutcome::retry_exhausted, "Unreachable", 2), RowOutcome::dead);
  ASSERT_EQ(out.dead.size(), 1u);
  EXPECT_EQ(out.dead[0].reason, "TooManyAttempts: Unreachable");

  EXPECT_EQ(apply(apns::SendOutcome::retry_exhausted, "PoolClosed", 0), RowOutcome::paused);
  EXPECT_TRUE(out.empty()) << "shutting down: the row stays as it is";

  EXPECT_EQ(apply(apns::SendOutcome::permanent_payload, "PayloadTooLarge"), RowOutcome::dead);
  EXPECT_EQ(out.dead[0].reason, "Refused: PayloadTooLarge");
}

TEST(DispatchPlan, OneCollapseIdForEveryBadgeOfADevice) {
  // Two accounts on one device: the newest badge is the sum of both, so it must replace the
  // older one whichever account moved it (a collapse id per mailbox kept one badge per account).
  EXPECT_EQ(kBadgeCollapseId, "badge");
  apns::BadgeNotification n;
  n.device_token_hex = std::string(64, 'a');
  n.topic = "com.example.mail";
  n.badge = 3;
  n.collapse_id = std::string(kBadgeCollapseId);
  auto request = apns::build_request(n);
  ASSERT_TRUE(request.ok()) << request.error().message;
  EXPECT_EQ(request->headers.back(),
            (std::pair<std::string, std::string>{"apns-collapse-id", "badge"}));
}

}  // namespace
}  // namespace mp::dispatch
