// Classification of APNs replies by Apple's documented reasons, then by HTTP status.
#include "apns/response.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <nlohmann/json.hpp>

#include "common/text.hpp"

namespace mp::apns {
namespace {

// Apple's error bodies are tens of bytes; a larger one is not APNs talking and is not parsed.
constexpr std::size_t kMaxBodyBytes = 4096;
constexpr std::size_t kMaxReasonChars = 64;
constexpr std::size_t kMaxApnsIdChars = 128;

struct KnownReason {
  std::string_view reason;
  SendOutcome outcome;
  std::string_view explanation;
};

using K = SendOutcome;

// Apple's reason list for the HTTP/2 provider API ("Handling notification responses from APNs").
constexpr std::array kKnownReasons{
    // 400
    KnownReason{"BadCollapseId", K::permanent_payload,
                "the apns-collapse-id header is too long (over 64 bytes)"},
    KnownReason{"BadDeviceToken", K::bad_device_token,
                "APNs does not know this token in this environment, often a sandbox/production "
                "mix-up (a development build's token sent to production or the reverse) or a "
                "token that is not the device's; mark the device invalid for this environment "
                "and have the app register again"},
    KnownReason{"BadExpirationDate", K::permanent_payload, "the apns-expiration value is bad"},
    KnownReason{"BadMessageId", K::permanent_payload, "the apns-id value is bad"},
    KnownReason{"BadPriority", K::permanent_payload, "the apns-priority value is bad"},
    KnownReason{"BadTopic", K::topic_mismatch,
                "the apns-topic is not valid; it must be the bundle id of the certificate"},
    KnownReason{"DeviceTokenNotForTopic", K::topic_mismatch,
                "the device token belongs to another app than the topic; check that the app "
                "registered with this customer's bundle id"},
    KnownReason{"DuplicateHeaders", K::permanent_payload, "a request header was repeated"},
    KnownReason{"IdleTimeout", K::retry_later,
                "APNs closed an idle connection; resend on a fresh connection"},
    KnownReason{"InvalidPushType", K::permanent_payload, "the apns-push-type value is bad"},
    KnownReason{"MissingDeviceToken", K::permanent_payload, "the request path has no device token"},
    KnownReason{"MissingTopic", K::topic_mismatch,
                "APNs needs an apns-topic for this certificate (it covers several topics); "
                "check the customer's configured bundle id"},
    KnownReason{"PayloadEmpty", K::permanent_payload, "the request body was empty"},
    KnownReason{"TopicDisallowed", K::topic_mismatch,
                "APNs does not allow pushing to this topic with this certificate; check the "
                "certificate's topics against the customer's bundle id"},
    // 403
    KnownReason{"BadCertificate", K::credential_failed,
                "APNs refused the client certificate; the customer must upload a valid push "
                "certificate"},
    KnownReason{"BadCertificateEnvironment", K::credential_failed,
                "the certificate is for the other APNs environment (development vs production); "
                "use the matching host or upload the right certificate"},
    KnownReason{"ExpiredProviderToken", K::credential_failed,
                "the provider credential has expired; the customer must renew it"},
    KnownReason{"Forbidden", K::credential_failed, "APNs forbids this action with this credential"},
    KnownReason{"InvalidProviderToken", K::credential_failed,
                "the provider credential is not valid for this team or key"},
    KnownReason{"MissingProviderToken", K::credential_failed,
                "APNs saw no usable credential (no client certificate reached it?)"},
    // 404, 405
    KnownReason{"BadPath", K::permanent_payload, "the request path is wrong"},
    KnownReason{"MethodNotAllowed", K::permanent_payload, "only POST is allowed"},
    // 410
    KnownReason{"Unregistered", K::unregistered,
                "the app is no longer registered for pushes on this device (uninstalled or "
                "pushes turned off); stop until it registers again"},
    KnownReason{"ExpiredToken", K::unregistered,
                "the device token has expired; stop until the app registers again"},
    // 413
    KnownReason{"PayloadTooLarge", K::permanent_payload,
                "the payload is larger than APNs allows (4096 bytes)"},
    // 429
    KnownReason{"TooManyProviderTokenUpdates", K::retry_later,
                "the provider credential was updated too often; retry later"},
    KnownReason{"TooManyRequests", K::retry_later,
                "too many requests to this device token in a short time; retry later"},
    // 500, 503
    KnownReason{"InternalServerError", K::retry_later, "APNs had an internal error; retry later"},
    KnownReason{"ServiceUnavailable", K::retry_later, "APNs is unavailable; retry later"},
    KnownReason{"Shutdown", K::retry_later,
                "the APNs server is shutting down this connection; resend on a new one"},
};

const KnownReason* find_reason(std::string_view reason) noexcept {
  const auto it = std::find_if(kKnownReasons.begin(), kKnownReasons.end(),
                               [reason](const KnownReason& k) { return k.reason == reason; });
  return it == kKnownReasons.end() ? nullptr : &*it;
}

struct ByStatus {
  SendOutcome outcome;
  std::string explanation;
};

ByStatus classify_status(int status) {
  const std::string s = "HTTP " + std::to_string(status);
  switch (status) {
    case 200:
      return {K::delivered, "APNs accepted the notification"};
    case 403:
      return {K::credential_failed, s + ": APNs refused the certificate or credential"};
    case 410:
      return {K::unregistered, s + ": the device token is no longer active"};
    case 429:
      return {K::retry_later, s + ": too many requests; retry later"};
    default:
      break;
  }
  if (status >= 500 && status <= 599) {
    return {K::retry_later, s + ": APNs server error; retry later"};
  }
  if (status >= 400 && status <= 499) {
    return {K::permanent_payload, s + ": APNs refused the request; it is not retried"};
  }
  // Not a status APNs sends (a proxy in the way?); retrying blindly could loop forever.
  return {K::permanent_payload, s + " is not an APNs reply (a proxy in the way?); not retried"};
}

std::optional<std::chrono::system_clock::time_point> ms_to_time_point(std::int64_t ms) {
  using std::chrono::milliseconds;
  using std::chrono::system_clock;
  constexpr auto kMaxMs =
      std::chrono::duration_cast<milliseconds>(system_clock::duration::max()).count();
  if (ms < 0 || ms > kMaxMs) return std::nullopt;
  return system_clock::time_point(
      std::chrono::duration_cast<system_clock::duration>(milliseconds(ms)));
}

// Apple sends a JSON number; a numeric string is accepted too, anything else is ignored.
std::optional<std::chrono::system_clock::time_point> parse_timestamp(const nlohmann::json& v) {
  if (v.is_number_unsigned()) {
    const auto ms = v.get<std::uint64_t>();
    if (ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::nullopt;
    }
    return ms_to_time_point(static_cast<std::int64_t>(ms));
  }
  if (v.is_number_integer()) return ms_to_time_point(v.get<std::int64_t>());
  if (v.is_number_float()) {
    const double ms = v.get<double>();
    if (!(ms >= 0 && ms < 9.2e18)) return std::nullopt;  // also refuses NaN
    return ms_to_time_point(static_cast<std::int64_t>(ms));
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > 18 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    return ms_to_time_point(std::stoll(s));
  }
  return std::nullopt;
}

}  // namespace

const char* send_outcome_name(SendOutcome outcome) noexcept {
  switch (outcome) {
    case K::delivered:
      return "delivered";
    case K::unregistered:
      return "unregistered";
    case K::bad_device_token:
      return "bad_device_token";
    case K::topic_mismatch:
      return "topic_mismatch";
    case K::credential_failed:
      return "credential_failed";
    case K::permanent_payload:
      return "permanent_payload";
    case K::retry_exhausted:
      return "retry_exhausted";
    case K::retry_later:
      return "retry_later";
  }
  return "?";
}

ResponseAction classify_response(int http_status, std::string_view body_json,
                                 std::string_view apns_id_header) {
  ResponseAction action;
  action.http_status = http_status;
  action.apns_id = printable_ascii(apns_id_header, kMaxApnsIdChars);
  if (http_status == 200) {
    action.outcome = K::delivered;
    action.explanation = "APNs accepted the notification";
    return action;
  }

  nlohmann::json body;  // null unless the body parses to something
  if (!body_json.empty() && body_json.size() <= kMaxBodyBytes) {
    body = nlohmann::json::parse(body_json, nullptr, /*allow_exceptions=*/false);
  }
  if (body.is_object()) {
    if (const auto it = body.find("reason"); it != body.end() && it->is_string()) {
      action.reason = printable_ascii(it->get_ref<const std::string&>(), kMaxReasonChars);
    }
  }

  if (const KnownReason* known = find_reason(action.reason)) {
    action.outcome = known->outcome;
    action.explanation = std::string(known->explanation);
  } else {
    ByStatus by_status = classify_status(http_status);
    action.outcome = by_status.outcome;
    action.explanation = std::move(by_status.explanation);
    if (!action.reason.empty()) action.explanation += " (reason not in Apple's documented list)";
  }

  if (action.outcome == K::unregistered && body.is_object()) {
    if (const auto it = body.find("timestamp"); it != body.end()) {
      action.unregistered_at = parse_timestamp(*it);
    }
  }
  return action;
}

std::chrono::milliseconds retry_backoff(int attempt, std::mt19937_64& rng) {
  return retry_backoff(attempt, rng, kRetryBackoffBase, kRetryBackoffCap);
}

std::chrono::milliseconds retry_backoff(int attempt, std::mt19937_64& rng,
                                        std::chrono::milliseconds base_ms,
                                        std::chrono::milliseconds cap_ms) {
  const int doublings = std::clamp(attempt, 1, 32) - 1;
  const std::int64_t base = std::max<std::int64_t>(1, base_ms.count());
  const std::int64_t cap = std::max(base, cap_ms.count());
  // Doubling stops once the cap is reached, so the shift cannot overflow.
  std::int64_t upper = base;
  for (int i = 0; i < doublings && upper < cap; ++i) upper *= 2;
  upper = std::min(upper, cap);
  const std::uint64_t draw = rng();
  // Modulo bias is below 1e-13 for a bound of 300,001 values out of 2^64.
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(draw % static_cast<std::uint64_t>(upper + 1)));
}

}  // namespace mp::apns
