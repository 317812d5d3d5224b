// Implementation of the listener's pure rules.
#include "relay/callback_rules.hpp"

#include <algorithm>

namespace mp::relay {

std::optional<store::CountEvent> count_event(const ews::Event& e) {
  if (e.type == ews::EventType::modified && e.unread_count && e.folder_id) {
    return store::CountEvent{store::CountEvent::Kind::truth,
                             std::clamp<std::int64_t>(*e.unread_count, 0, store::kMaxUnreadCount),
                             store::count_folder_id(*e.folder_id), ""};
  }
  if (e.type == ews::EventType::new_mail) {
    return store::CountEvent{
        store::CountEvent::Kind::new_item, 0,
        store::count_folder_id(e.parent_folder_id.value_or("")),
        store::item_digest(e.item_id ? *e.item_id : "watermark:" + e.watermark)};
  }
  return std::nullopt;
}

CallbackSummary summarize(const ews::SendNotification& callback) {
  CallbackSummary s;
  const std::string* previous_watermark = nullptr;
  const std::string* newest_watermark = nullptr;
  for (const auto& m : callback.messages) {
    if (m.response_class != "Success") s.error_codes.push_back(m.response_code);
    const auto id = m.subscription_id();
    if (!s.subscription_id && id) s.subscription_id = id;
    if (!m.notification) continue;
    if (id != s.subscription_id) {
      ++s.foreign_messages;
      continue;
    }
    s.has_notification = true;
    if (!previous_watermark) previous_watermark = &m.notification->previous_watermark;
    for (const auto& e : m.notification->events) {
      ++s.events;
      if (!e.watermark.empty()) newest_watermark = &e.watermark;
      if (auto c = count_event(e)) s.count_events.push_back(std::move(*c));
    }
  }
  if (newest_watermark) {
    s.watermark = *newest_watermark;
  } else if (previous_watermark) {
    s.watermark = *previous_watermark;
  }
  return s;
}

BindingDecision decide_binding(const store::RegistrationRecord& registration,
                               std::string_view subscription_id) {
  if (!registration.subscription_id) return {false, true, std::nullopt};
  if (*registration.subscription_id == subscription_id) return {};
  const auto& old = registration.superseded;
  if (std::find(old.begin(), old.end(), subscription_id) != old.end())
    return {true, false, std::nullopt};
  // An id never seen before is the app's new subscription (Exchange opens each with a StatusEvent).
  return {false, true, registration.subscription_id};
}

bool plausible_secret(std::string_view secret) noexcept {
  if (secret.size() < 22 || secret.size() > 128) return false;
  return std::all_of(secret.begin(), secret.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
  });
}

}  // namespace mp::relay
