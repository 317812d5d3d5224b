// APNs replies turned into the action the dispatcher takes, and the backoff for retries.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace mp::apns {

// How a notification fared with APNs. classify_response gives one answer's outcome (never
// retry_exhausted); ApnsConnectionPool::send gives the whole send's (never retry_later: the pool
// resends those until it delivers or gives up with retry_exhausted).
enum class SendOutcome {
  delivered,          // 200: Apple accepted it; apns_id set
  unregistered,       // 410: stop sending until the device re-registers after unregistered_at
  bad_device_token,   // the token is not valid in this environment: mark it invalid there
  topic_mismatch,     // token or certificate not for this topic: the customer's set-up
  credential_failed,  // 403 (or the pool's breaker is open): pause the customer's queue and
                      // alert; never delete devices
  permanent_payload,  // our request is wrong (or refused by the h2 layer): retrying the same
                      // bytes cannot help; drop it
  retry_exhausted,    // not delivered within the attempts/deadline (or the pool closed): requeue
  retry_later,        // 429, 5xx, Shutdown, IdleTimeout: resend after retry_backoff
};

// Stable snake_case name, for metric labels and log fields: "bad_device_token", ...
const char* send_outcome_name(SendOutcome outcome) noexcept;

struct ResponseAction {
  SendOutcome outcome = SendOutcome::permanent_payload;
  int http_status = 0;
  std::string reason;       // Apple's reason as given ("BadDeviceToken"); empty when none
  std::string explanation;  // what it means and what to do, for logs and `mailpushctl doctor`
  std::string apns_id;      // the apns-id header, to quote to Apple; empty when absent
  // 410 only: when Apple last knew the token was invalid for the topic (its `timestamp`, ms).
  std::optional<std::chrono::system_clock::time_point> unregistered_at;
};

// Apple's reason decides when it is one we know (it is more specific than the status);
// otherwise the status does: 200 delivered, 403 credential, 410 unregistered, 429 and 5xx
// retry, other statuses permanent. Malformed, empty or oversized bodies never throw: the
// status alone decides. Reason and apns-id are kept only as printable ASCII, truncated.
ResponseAction classify_response(int http_status, std::string_view body_json,
                                 std::string_view apns_id_header);

inline constexpr std::chrono::milliseconds kRetryBackoffBase{1000};
inline constexpr std::chrono::milliseconds kRetryBackoffCap{5 * 60 * 1000};

// Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))] ms, both ends included, so
// attempt 1 waits 0..1 s, attempt 2 0..2 s, ..., from attempt 10 on 0..5 min. attempt < 1
// counts as 1. Draws exactly one value from rng and maps it without std::*_distribution (whose
// output differs between standard libraries), so a seeded rng gives the same delays anywhere.
std::chrono::milliseconds retry_backoff(int attempt, std::mt19937_64& rng);

// The same full jitter with another base and cap (base > 0, cap >= base): uniform in
// [0, min(cap, base * 2^(attempt-1))]. Pools take it so tests can back off in milliseconds.
std::chrono::milliseconds retry_backoff(int attempt, std::mt19937_64& rng,
                                        std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap);

}  // namespace mp::apns
