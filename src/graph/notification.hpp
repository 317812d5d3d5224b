// Microsoft Graph change notifications (DESIGN.md flow 7; ../shared/graph-samples/): the body
// Graph POSTs to a subscription's notificationUrl or lifecycleNotificationUrl, and the
// validation token it sends when a subscription is created. Pure code: bytes in, values out.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mp::graph {

enum class ChangeType { created, updated, deleted, other };
const char* change_type_name(ChangeType type) noexcept;

enum class LifecycleEvent {
  none,  // a change notification
  reauthorization_required,
  subscription_removed,
  missed,
  other,  // a lifecycle event this relay does not know: counted, never fatal
};
const char* lifecycle_event_name(LifecycleEvent event) noexcept;

// One element of `value`. Strings are as Graph sent them (checked UTF-8, bounded).
struct Item {
  std::string subscription_id;
  std::string client_state;  // "" when absent
  std::string tenant_id;     // "" when absent
  // subscriptionExpirationDateTime as Unix seconds (UTC), when present and well formed.
  std::optional<std::int64_t> expires_at;
  ChangeType change = ChangeType::other;
  LifecycleEvent lifecycle = LifecycleEvent::none;
  // The message a change is about: resourceData.id, else the last segment of `resource`. ""
  // when neither names one.
  std::string message_id;
};

struct Notifications {
  std::vector<Item> items;
};

struct ParseLimits {
  std::size_t max_body_bytes = 256 * 1024;
  std::size_t max_depth = 8;      // the documented shape is 4 deep
  std::size_t max_items = 1000;   // elements of `value`
  std::size_t max_string = 2048;  // bytes of any one string kept
  // subscriptionId is a GUID (36 characters) and is stored as a registration's binding (512 at
  // most): a longer one refuses its body rather than failing the batch it would be written in.
  std::size_t max_subscription_id = 128;
};

enum class Refusal {
  too_large,      // over max_body_bytes
  too_deep,       // nesting over max_depth
  invalid_json,   // not JSON in UTF-8 (a number out of range included)
  wrong_shape,    // not {"value":[{…},…]}, a field of the wrong type, or over max_items
  value_too_long  // a string over max_string
};
const char* refusal_name(Refusal refusal) noexcept;  // "too_large", ...

struct ParseError {
  Refusal refusal = Refusal::invalid_json;
  std::string message;  // for the caller and the log; never quotes the body
};

// Parses a changeNotificationCollection. The whole body is refused (nothing of it is used) when
// it is not well-formed JSON of the documented shape; an element with an unknown changeType or
// lifecycleEvent is kept with `other`, for the caller to count and skip.
std::variant<Notifications, ParseError> parse_notifications(std::string_view body,
                                                            const ParseLimits& limits = {});

// "2026-12-12T18:23:45.9356913Z" (fractions and an offset allowed) → Unix seconds; nullopt
// when malformed.
std::optional<std::int64_t> parse_datetime(std::string_view text);

// The message id of a resource path: "Users/{id}/Messages/{message}" or
// "me/messages('{message}')" → the message; "" when it names none.
std::string message_id_of_resource(std::string_view resource);

// The validation token of a request target ("/graph/v1/notify/x?validationToken=…"), URL-decoded
// (`+` is a space). nullopt: the query has no validationToken. A token that is empty, longer than
// `max_bytes`, not UTF-8, or holds a control character or `<`/`>` is refused with a message.
struct TokenError {
  std::string message;
};
std::optional<std::variant<std::string, TokenError>> validation_token(std::string_view target,
                                                                      std::size_t max_bytes = 1024);

}  // namespace mp::graph
