// APNs requests for contentless badge notifications: path, headers and the tiny JSON body.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace mp::apns {

inline constexpr std::size_t kMaxPayloadBytes = 4096;
inline constexpr std::size_t kMaxCollapseIdBytes = 64;
inline constexpr std::size_t kMaxTopicChars = 255;

struct BadgeNotification {
  std::string device_token_hex;  // as normalize_device_token returns it
  std::string topic;             // the bundle id the customer's certificate is for
  int badge = 0;                 // >= 0; 0 clears the badge
  bool content_available = false;
  // Epoch (time_point{}) sends apns-expiration 0: APNs tries once and then drops it.
  std::chrono::system_clock::time_point expires{};
  std::optional<std::string> collapse_id;  // APNs keeps only the newest of one id per device
  int priority = 10;                       // 10 immediately, 5 when it suits the device
  // A background push instead of a badge: {"aps":{"content-available":1}}, apns-push-type
  // background, priority 5 (Apple refuses 10 for these); `badge` is not sent.
  bool background = false;
};

struct ApnsRequest {
  std::string path;  // "/3/device/<hex>"
  // In this order: apns-topic, apns-push-type, apns-priority, apns-expiration,
  // apns-collapse-id (only when set). Pseudo-headers are the h2 client's business.
  std::vector<std::pair<std::string, std::string>> headers;
  // {"aps":{"badge":N}}, {"aps":{"badge":N,"content-available":1}}, or for a background push
  // {"aps":{"content-available":1}}
  std::string body;
};

// Checks every field (token, topic charset, badge, priority, expiry, collapse id) and builds
// the request; errors are Errc::invalid_argument with a reason that never holds the token.
Result<ApnsRequest> build_request(const BadgeNotification& notification);

// Just the body, for callers that already hold the headers of a connection.
std::string badge_payload(int badge, bool content_available);

}  // namespace mp::apns
