// Implementation of the dispatcher's pure rules.
#include "dispatch/dispatch_plan.hpp"

#include <map>

namespace mp::dispatch {

const char* row_outcome_name(RowOutcome r) noexcept {
  switch (r) {
    case RowOutcome::delivered:
      return "delivered";
    case RowOutcome::superseded:
      return "superseded";
    case RowOutcome::device_inactive:
      return "device_inactive";
    case RowOutcome::customer_inactive:
      return "customer_inactive";
    case RowOutcome::unregistered:
      return "unregistered";
    case RowOutcome::bad_device_token:
      return "bad_device_token";
    case RowOutcome::retry:
      return "retry";
    case RowOutcome::dead:
      return "dead";
    case RowOutcome::paused:
      return "paused";
  }
  return "unknown";
}

const char* wake_outcome_name(WakeOutcome w) noexcept {
  switch (w) {
    case WakeOutcome::sent:
      return "sent";
    case WakeOutcome::failed:
      return "failed";
    case WakeOutcome::limited:
      return "limited";
    case WakeOutcome::dropped:
      break;
  }
  return "dropped";
}

store::PendingMark mark(const store::OutboxRow& row) {
  return {row.id, row.version};
}

RoundPlan plan_round(const std::vector<store::OutboxRow>& rows) {
  RoundPlan plan;
  std::map<std::int64_t, std::vector<const store::OutboxRow*>> by_device;
  for (const auto& r : rows) by_device[r.device_id].push_back(&r);
  for (auto& entry : by_device) {
    auto& group = entry.second;  // not a structured binding: clang 14 cannot capture those
    const store::OutboxRow* newest = group.front();
    for (const auto* r : group) {
      if (r->id > newest->id) newest = r;
    }
    std::vector<store::PendingMark> older;
    for (const auto* r : group) {
      if (r != newest) older.push_back(mark(*r));
    }
    // The group's wakes: one background push for the device if any of them may have one now.
    std::vector<const store::OutboxRow*> wakes;
    const store::OutboxRow* allowed = nullptr;
    for (const auto* r : group) {
      if (r->wake_reason.empty()) continue;
      wakes.push_back(r);
      if (r->wake_allowed && allowed == nullptr) allowed = r;
    }
    auto drop_wakes = [&](WakeOutcome why) {
      for (const auto* r : wakes) {
        plan.outcome.wakes.push_back({mark(*r), false});
        plan.wakes_counted.emplace_back(why, r->wake_reason);
      }
    };
    auto remove_all = [&](RowOutcome why, const std::string& reason) {
      for (const auto* r : group) {
        plan.outcome.remove.push_back(mark(*r));
        plan.counted.emplace_back(why, reason);
      }
      drop_wakes(WakeOutcome::dropped);
    };
    if (newest->customer_state != "active") {
      remove_all(RowOutcome::customer_inactive, newest->customer_state);
      continue;
    }
    if (newest->device_state != "active") {
      remove_all(RowOutcome::device_inactive, newest->device_state);
      continue;
    }
    for (const auto& m : older) {
      plan.outcome.remove.push_back(m);
      plan.counted.emplace_back(RowOutcome::superseded, "");
    }
    if (newest->expired) {
      plan.outcome.dead.push_back({mark(*newest), "Expired"});
      plan.counted.emplace_back(RowOutcome::dead, "Expired");
      drop_wakes(WakeOutcome::dropped);
      continue;
    }
    PlannedSend send{*newest, {}, {}};
    if (allowed != nullptr) {
      send.wake_reason = allowed->wake_reason;
      for (const auto* r : wakes) send.wake_marks.push_back(mark(*r));
    } else {
      drop_wakes(WakeOutcome::limited);
    }
    plan.sends.push_back(std::move(send));
  }
  return plan;
}

RowOutcome apply_send_result(const PlannedSend& send, const apns::SendResult& result,
                             const RetryPolicy& policy, std::mt19937_64& rng,
                             store::DispatchWrites& outcome, CustomerSignal& signal) {
  const store::OutboxRow& row = send.row;
  using apns::SendOutcome;
  switch (result.outcome) {
    case SendOutcome::delivered:
      outcome.remove.push_back(mark(row));
      return RowOutcome::delivered;
    case SendOutcome::unregistered:
      outcome.remove.push_back(mark(row));
      outcome.devices.push_back({row.device_id, true, result.unregistered_at, "Unregistered"});
      return RowOutcome::unregistered;
    case SendOutcome::bad_device_token:
      outcome.remove.push_back(mark(row));
      outcome.devices.push_back({row.device_id, false, std::nullopt,
                                 result.reason.empty() ? "BadDeviceToken" : result.reason});
      return RowOutcome::bad_device_token;
    case SendOutcome::topic_mismatch:
      if (result.reason == "DeviceTokenNotForTopic") {
        // The token belongs to another app: this device, not the customer, is wrong.
        outcome.remove.push_back(mark(row));
        outcome.devices.push_back({row.device_id, false, std::nullopt, result.reason});
        return RowOutcome::bad_device_token;
      }
      // TopicDisallowed and the like: the certificate does not fit the app; every row of the
      // customer would fail the same way.
      signal = {true, result.reason.empty() ? "TopicMismatch" : result.reason, result.explanation};
      return RowOutcome::paused;
    case SendOutcome::credential_failed:
      signal = {true, result.reason.empty() ? "CredentialFailed" : result.reason,
                result.explanation};
      return RowOutcome::paused;
    case SendOutcome::permanent_payload:
      outcome.dead.push_back(
          {mark(row),
           "Refused: " + (result.reason.empty() ? std::string("payload") : result.reason)});
      return RowOutcome::dead;
    case SendOutcome::retry_exhausted:
    case SendOutcome::retry_later:  // a send never ends with it; requeued like retry_exhausted
      break;
  }
  if (result.reason == "PoolClosed") return RowOutcome::paused;  // shutting down: stays queued
  if (row.attempts + 1 >= policy.max_attempts) {
    outcome.dead.push_back({mark(row), "TooManyAttempts: " + result.reason});
    return RowOutcome::dead;
  }
  outcome.retry.push_back({row.id,
                           apns::retry_backoff(row.attempts + 1, rng, policy.base, policy.cap),
                           result.reason.empty() ? "RetryExhausted" : result.reason});
  return RowOutcome::retry;
}

}  // namespace mp::dispatch
