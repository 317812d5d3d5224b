// Building APNs badge requests without a JSON library: the body is one of two fixed shapes.
#include "apns/request.hpp"

#include <algorithm>

#include "apns/device_token.hpp"
#include "common/text.hpp"

namespace mp::apns {
namespace {

Error refuse_request(std::string message) {
  return make_error(Errc::invalid_argument, "APNs request refused: " + std::move(message));
}

bool is_topic_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-';
}

// Apple's bundle id rule: letters, digits, '-' and '.', as dot-separated non-empty parts.
Status check_topic(std::string_view topic) {
  if (topic.empty()) {
    return refuse_request(
        "the topic (apns-topic) is empty; it must be the app's bundle id, as in the "
        "push certificate");
  }
  if (topic.size() > kMaxTopicChars) {
    return refuse_request("the topic is " + std::to_string(topic.size()) +
                          " characters; a bundle id is at most " + std::to_string(kMaxTopicChars));
  }
  if (const auto bad = std::find_if_not(topic.begin(), topic.end(), is_topic_char);
      bad != topic.end()) {
    // The position, not the text: a wrong field may hold anything, even control characters.
    return refuse_request("character " + std::to_string(bad - topic.begin() + 1) +
                          " of the topic is not a letter, digit, '.' or '-'; it must be the app's "
                          "bundle id");
  }
  if (topic.front() == '.' || topic.back() == '.' || topic.find("..") != std::string_view::npos) {
    return refuse_request(
        "the topic has an empty part between dots; it must be the app's bundle id");
  }
  return {};
}

// HTTP/2 forbids control characters in field values and nghttp2 refuses edge whitespace.
Status check_collapse_id(std::string_view id) {
  if (id.empty()) return refuse_request("the collapse id is empty; leave it unset instead");
  if (id.size() > kMaxCollapseIdBytes) {
    return refuse_request("the collapse id is " + std::to_string(id.size()) +
                          " bytes; APNs allows at most " + std::to_string(kMaxCollapseIdBytes));
  }
  if (has_ascii_control(id) || id.front() == ' ' || id.back() == ' ') {
    return refuse_request("the collapse id has a control character or a leading/trailing space");
  }
  return {};
}

}  // namespace

std::string badge_payload(int badge, bool content_available) {
  std::string body = R"({"aps":{"badge":)";
  body += std::to_string(badge);
  body += content_available ? R"(,"content-available":1}})" : "}}";
  return body;
}

Result<ApnsRequest> build_request(const BadgeNotification& n) {
  if (!is_normalized_device_token(n.device_token_hex)) {
    // Not echoed: a caller that skipped normalisation may hold a raw token here.
    return refuse_request("the device token is not normalised lowercase hex (" +
                          std::to_string(n.device_token_hex.size()) +
                          " characters); pass it through normalize_device_token first");
  }
  if (Status topic = check_topic(n.topic); !topic) return std::move(topic).error();
  if (n.badge < 0) {
    return refuse_request("the badge is " + std::to_string(n.badge) +
                          "; it must be 0 (clear) or more");
  }
  if (n.background && n.priority != 5) {
    return refuse_request("the priority of a background push is " + std::to_string(n.priority) +
                          "; APNs accepts only 5 for them");
  }
  if (n.priority != 10 && n.priority != 5) {
    return refuse_request("the priority is " + std::to_string(n.priority) +
                          "; APNs accepts 10 (send now) or 5 (when convenient for the device)");
  }
  const auto expiration =
      std::chrono::floor<std::chrono::seconds>(n.expires.time_since_epoch()).count();
  if (expiration < 0) {
    return refuse_request(
        "the expiry is before 1970; use the epoch (0) for 'deliver once or drop'");
  }
  if (n.collapse_id) {
    if (Status id = check_collapse_id(*n.collapse_id); !id) return std::move(id).error();
  }

  ApnsRequest request;
  request.path = "/3/device/" + n.device_token_hex;
  request.headers.reserve(5);
  request.headers.emplace_back("apns-topic", n.topic);
  request.headers.emplace_back("apns-push-type", n.background ? "background" : "alert");
  request.headers.emplace_back("apns-priority", std::to_string(n.priority));
  request.headers.emplace_back("apns-expiration", std::to_string(expiration));
  if (n.collapse_id) request.headers.emplace_back("apns-collapse-id", *n.collapse_id);
  request.body = n.background ? std::string(R"({"aps":{"content-available":1}})")
                              : badge_payload(n.badge, n.content_available);
  if (request.body.size() > kMaxPayloadBytes) {  // cannot happen with an int badge; kept as a guard
    return make_error(Errc::internal, "APNs payload of " + std::to_string(request.body.size()) +
                                          " bytes exceeds " + std::to_string(kMaxPayloadBytes));
  }
  return request;
}

}  // namespace mp::apns
