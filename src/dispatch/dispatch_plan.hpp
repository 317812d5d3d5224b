// The dispatcher's rules as pure functions: which pending badges of a round are sent (one per
// device: the device's badge covers every mark of it read in the round), which are dropped, and
// what an APNs answer does to a mark, its device and its customer's queue.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "apns/connection_pool.hpp"
#include "store/outbox.hpp"

namespace mp::dispatch {

// What a round counts, for metrics and logs (stable snake_case names).
enum class RowOutcome {
  delivered,
  superseded,         // another mark of the same device was sent: its badge covers this one
  device_inactive,    // the device was unregistered or made invalid after the row was queued
  customer_inactive,  // customer disabled or deleted
  unregistered,       // 410
  bad_device_token,   // invalid for this environment
  retry,              // requeued with a backoff
  dead,               // dead-lettered (TTL, attempts, permanent refusal, no credential)
  paused,             // left queued: the customer's queue is paused
};
inline constexpr std::size_t kRowOutcomeCount = 9;
const char* row_outcome_name(RowOutcome r) noexcept;

// What became of a wake, for the metric: sent; failed (APNs refused the push); limited (one was
// sent within store::kWakeInterval); dropped (device or customer gone, badge expired). A badge
// that is not delivered keeps its mark, and the mark's wake, pending: nothing is counted then.
enum class WakeOutcome { sent, failed, limited, dropped };
const char* wake_outcome_name(WakeOutcome w) noexcept;

struct PlannedSend {
  store::OutboxRow row;  // the device's newest mark; its other marks were cleared when planned
  // A background push to send after the badge is delivered (one per device however many of its
  // registrations asked), and the marks that asked for it; "" none.
  std::string wake_reason;
  std::vector<store::PendingMark> wake_marks;
};

struct RoundPlan {
  std::vector<PlannedSend> sends;
  store::DispatchWrites outcome;                            // what is decided without sending
  std::vector<std::pair<RowOutcome, std::string>> counted;  // one per row decided here (reason)
  std::vector<std::pair<WakeOutcome, std::string>> wakes_counted;  // (outcome, reason)
};

// Groups the marks per device (the newest registration's is sent), drops marks of inactive
// devices and customers, dead-letters an expired badge. The device's other marks are cleared
// whatever happens to the one sent: it carries the device's whole badge, and a retry of it sends
// the badge current then.
// Wakes: a device whose marks ask for a wake gets one background push after its badge if one of
// them may have one now (store::kWakeInterval); otherwise they end as `limited`, and when the
// device or customer is gone or the badge expired, as `dropped` (RoundPlan::wakes_counted).
store::PendingMark mark(const store::OutboxRow& row);
RoundPlan plan_round(const std::vector<store::OutboxRow>& rows);

struct RetryPolicy {
  int max_attempts = 12;
  std::chrono::milliseconds base{1000};
  std::chrono::milliseconds cap{5 * 60 * 1000};
};

// What an answer means for the customer's queue.
struct CustomerSignal {
  bool pause = false;
  std::string reason;  // Apple's or ours, e.g. "BadCertificate", "TopicDisallowed"
  std::string explanation;
};

// Applies one send's result to `outcome` (the sent row) and says what
// it was; `signal` is set when the customer's queue must pause (the row stays queued).
RowOutcome apply_send_result(const PlannedSend& send, const apns::SendResult& result,
                             const RetryPolicy& policy, std::mt19937_64& rng,
                             store::DispatchWrites& outcome, CustomerSignal& signal);

// The collapse id of every badge: a badge is the device's whole count (the sum over its
// registrations), so the newest one to a device supersedes all before it, whichever account moved
// it. (APNs collapses per device; one id for all our notifications is what that needs.)
inline constexpr std::string_view kBadgeCollapseId = "badge";

}  // namespace mp::dispatch
