// The listener's rules as pure functions: what a callback means for its registration, and how
// its events change the mailbox's unread count.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ews/send_notification.hpp"
#include "store/callback_store.hpp"
#include "store/registration_counts.hpp"

namespace mp::relay {

// A callback's facts that matter for its registration.
struct CallbackSummary {
  std::optional<std::string> subscription_id;  // the first message's (Notification or MessageXml)
  bool has_notification = false;               // false: only error messages (e.g. ReadEventsFailed)
  std::string watermark;                       // newest event watermark, else PreviousWatermark
  // The events that may move the registration's unread count, in order (the store applies them
  // with the registration's folder); empty: the count does not change.
  std::vector<store::CountEvent> count_events;
  std::size_t events = 0;
  std::size_t foreign_messages = 0;      // messages about another subscription id: ignored
  std::vector<std::string> error_codes;  // ResponseCodes of messages that are not Success
};

CallbackSummary summarize(const ews::SendNotification& callback);

// The event as a count event: a folder ModifiedEvent with UnreadCount is a truth, a NewMailEvent
// a new item (remembered by its ItemId's digest, by its watermark's without one); nullopt for
// the others.
std::optional<store::CountEvent> count_event(const ews::Event& e);

struct BindingDecision {
  bool unsubscribe = false;                     // the id was superseded: end that subscription
  bool bind = false;                            // first sight of an id, or the app resubscribed
  std::optional<std::string> expected_current;  // with bind: the id being replaced
};

BindingDecision decide_binding(const store::RegistrationRecord& registration,
                               std::string_view subscription_id);

// Callback secrets are URL-safe base64 or hex of at least 128 bits, at most 128 characters.
bool plausible_secret(std::string_view secret) noexcept;

}  // namespace mp::relay
