// EWS push callbacks (SOAP 1.1 SendNotification): typed values, the parser, and the replies.
// Pure code: bytes in, values out; no sockets, no database.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.hpp"

namespace mp::ews {

enum class EventType {
  status,
  new_mail,
  created,
  deleted,
  modified,
  moved,
  copied,
  free_busy_changed,
  unknown,  // an element in the Notification we do not know: kept, counted, never fatal
};
inline constexpr std::size_t kEventTypeCount = 9;
static_assert(static_cast<std::size_t>(EventType::unknown) + 1 == kEventTypeCount);

const char* event_type_name(EventType type) noexcept;  // "Status", "NewMail", ..., "Unknown"

struct Event {
  EventType type = EventType::unknown;
  std::string element;  // local name as sent, e.g. "NewMailEvent"
  std::string watermark;
  std::optional<std::string> timestamp;  // absent on StatusEvent
  std::optional<std::string> item_id;    // item events
  std::optional<std::string> folder_id;  // folder events
  std::optional<std::string> parent_folder_id;
  std::optional<std::string> old_item_id;  // Moved/Copied
  std::optional<std::string> old_folder_id;
  std::optional<std::string> old_parent_folder_id;
  std::optional<std::int64_t> unread_count;  // folder ModifiedEvent, Exchange 2010+
};

struct Notification {
  std::string subscription_id;
  std::string previous_watermark;
  bool more_events = false;
  std::vector<Event> events;
  std::size_t unknown_events = 0;
};

struct ResponseMessage {
  std::string response_class;  // "Success", "Warning", "Error"
  std::string response_code;   // "NoError", "ErrorReadEventsFailed", ...
  std::optional<std::string> message_text;
  std::map<std::string, std::string> message_xml_values;  // MessageXml/Value[@Name]
  std::optional<Notification> notification;

  // The subscription this message is about: the Notification's, or MessageXml's on errors.
  std::optional<std::string> subscription_id() const;
};

struct SendNotification {
  std::string server_version;  // RequestServerVersion/@Version, may be empty
  std::vector<ResponseMessage> messages;
};

struct ParseLimits {
  std::size_t max_bytes = 1024 * 1024;
  std::size_t max_depth = 32;
  std::size_t max_elements = 10000;
  // Any one text, attribute value, comment, CDATA section or processing instruction: EWS values
  // (ids, watermarks) are a few hundred bytes.
  std::size_t max_value_bytes = 8 * 1024;
};

// Why a body was refused, for the metric label and the log line (never the body itself).
enum class Refusal {
  too_large,
  doctype,  // DOCTYPE or ENTITY declarations: refused before any parsing
  invalid_utf8,
  too_deep,
  too_many_elements,
  value_too_long,  // one text or attribute value over max_value_bytes
  malformed_xml,
  not_soap,  // well-formed XML, but not a SOAP 1.1 envelope with a SendNotification
};
const char* refusal_name(Refusal r) noexcept;

struct ParseError {
  Refusal refusal;
  std::string message;  // a person can act on it; never quotes the body
};

// Parses by namespace URI, never by prefix. Expected failures are values.
std::variant<SendNotification, ParseError> parse_send_notification(std::string_view body,
                                                                   const ParseLimits& limits = {});

enum class SubscriptionStatus { ok, unsubscribe };

// The SOAP reply Exchange expects: SendNotificationResult/SubscriptionStatus = OK | Unsubscribe.
std::string build_reply(SubscriptionStatus status);
// A SOAP 1.1 Fault (faultcode soap:Client or soap:Server) with a plain reason.
std::string build_fault(std::string_view faultcode, std::string_view reason);

}  // namespace mp::ews
