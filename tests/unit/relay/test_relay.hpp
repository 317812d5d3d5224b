// Builders of EWS callback values and an in-memory CallbackStore with the MariaDB store's rules.
#pragma once

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "ews/send_notification.hpp"
#include "store/callback_store.hpp"

namespace mp::relay::test {

inline ews::Event status_event(std::string watermark) {
  ews::Event e;
  e.type = ews::EventType::status;
  e.element = "StatusEvent";
  e.watermark = std::move(watermark);
  return e;
}

inline ews::Event new_mail_event(std::string watermark) {
  ews::Event e;
  e.type = ews::EventType::new_mail;
  e.element = "NewMailEvent";
  e.watermark = std::move(watermark);
  e.timestamp = "2024-05-01T10:00:00Z";
  e.item_id = "item-" + e.watermark;
  e.parent_folder_id = "inbox";
  return e;
}

inline ews::Event folder_modified_event(std::string watermark,
                                        std::optional<std::int64_t> unread_count) {
  ews::Event e;
  e.type = ews::EventType::modified;
  e.element = "ModifiedEvent";
  e.watermark = std::move(watermark);
  e.timestamp = "2024-05-01T10:00:00Z";
  e.folder_id = "inbox";
  e.parent_folder_id = "root";
  e.unread_count = unread_count;
  return e;
}

// An item ModifiedEvent: ItemId, no FolderId.
inline ews::Event item_modified_event(std::string watermark,
                                      std::optional<std::int64_t> unread_count = std::nullopt) {
  ews::Event e = folder_modified_event(std::move(watermark), unread_count);
  e.folder_id.reset();
  e.item_id = "item-" + e.watermark;
  e.parent_folder_id = "inbox";
  return e;
}

inline ews::ResponseMessage notification_message(std::string subscription_id,
                                                 std::vector<ews::Event> events,
                                                 std::string previous_watermark = "wm-prev") {
  ews::ResponseMessage m;
  m.response_class = "Success";
  m.response_code = "NoError";
  ews::Notification n;
  n.subscription_id = std::move(subscription_id);
  n.previous_watermark = std::move(previous_watermark);
  n.events = std::move(events);
  m.notification = std::move(n);
  return m;
}

// A message with ResponseClass="Error" and no Notification; the id, if any, in MessageXml.
inline ews::ResponseMessage error_message(std::string code,
                                          std::optional<std::string> subscription_id) {
  ews::ResponseMessage m;
  m.response_class = "Error";
  m.response_code = std::move(code);
  m.message_text = "The events couldn't be read.";
  if (subscription_id) m.message_xml_values["SubscriptionId"] = *subscription_id;
  return m;
}

inline ews::SendNotification callback_of(std::vector<ews::ResponseMessage> messages) {
  ews::SendNotification c;
  c.server_version = "Exchange2010_SP2";
  c.messages = std::move(messages);
  return c;
}

// One Success message with the given events.
inline ews::SendNotification callback(std::string subscription_id, std::vector<ews::Event> events,
                                      std::string previous_watermark = "wm-prev") {
  std::vector<ews::ResponseMessage> messages;
  messages.push_back(
      notification_message(std::move(subscription_id), std::move(events), previous_watermark));
  return callback_of(std::move(messages));
}

inline std::string hash_key(std::string_view secret) {
  const Bytes h = sha384(secret);
  return std::string(h.begin(), h.end());
}

// Registrations by secret hash in memory. record() follows mariadb_callback_store.cpp: a bind
// applies only over the binding read earlier (or is a no-op when already bound to that id), and
// a write for a registration that is gone or bound to another id is `stale` and changes nothing.
class FakeCallbackStore final : public store::CallbackStore {
 public:
  static constexpr std::int64_t kUnreadCap = 1000000;  // the MariaDB store's LEAST(…, 1000000)

  // Adds an active registration for `secret`; returns its id (the mailbox id is the same).
  std::int64_t add(std::string_view secret, std::string customer_public_id = "use1-test",
                   std::string caller_cidrs = "",
                   std::optional<std::string> subscription_id = std::nullopt) {
    store::RegistrationRecord r;
    r.id = next_id_++;
    r.customer_id = 7;
    r.mailbox_id = r.id;
    r.customer_public_id = std::move(customer_public_id);
    r.subscription_id = std::move(subscription_id);
    r.caller_cidrs = std::move(caller_cidrs);
    registrations_[hash_key(secret)] = r;
    return r.id;
  }

  // The stored registration (what another instance would read), or null once removed.
  store::RegistrationRecord* find(std::string_view secret) {
    auto it = registrations_.find(hash_key(secret));
    return it == registrations_.end() ? nullptr : &it->second;
  }
  void remove(std::string_view secret) { registrations_.erase(hash_key(secret)); }

  // Another instance bound `subscription_id`; the old binding goes first into `superseded`.
  void rebind(std::string_view secret, std::string subscription_id) {
    auto* r = find(secret);
    if (r == nullptr) return;
    if (r->subscription_id) r->superseded.insert(r->superseded.begin(), *r->subscription_id);
    r->subscription_id = std::move(subscription_id);
  }

  // A registration's unread count (badges belong to registrations).
  std::int64_t unread(std::int64_t registration_id) const {
    auto it = counts_.find(registration_id);
    return it == counts_.end() ? 0 : it->second.unread;
  }
  void set_unread(std::int64_t registration_id, std::int64_t n) {
    counts_[registration_id].unread = n;
  }

  boost::asio::awaitable<Result<std::optional<store::RegistrationRecord>>> find_registration(
      const Bytes& secret_hash) override {
    ++lookups;
    if (fail_next_lookup) {
      Error e = std::move(*fail_next_lookup);
      fail_next_lookup.reset();
      co_return e;
    }
    auto it = registrations_.find(std::string(secret_hash.begin(), secret_hash.end()));
    if (it == registrations_.end()) co_return std::optional<store::RegistrationRecord>{};
    co_return std::optional<store::RegistrationRecord>{it->second};
  }

  boost::asio::awaitable<Result<store::ActiveRegistrationPage>> active_registrations(
      std::int64_t after_id, std::size_t limit) override {
    ++pages;
    if (fail_next_page) {
      Error e = std::move(*fail_next_page);
      fail_next_page.reset();
      co_return e;
    }
    std::map<std::int64_t, store::ActiveRegistration> by_id;
    for (const auto& [key, r] : registrations_) {
      if (r.id > after_id) by_id[r.id] = {key, r};
    }
    store::ActiveRegistrationPage out;
    for (auto& [id, a] : by_id) {
      if (out.registrations.size() == limit) break;
      a.record.superseded.clear();
      out.next_after = id;
      out.registrations.push_back(std::move(a));
    }
    out.done = out.registrations.size() < limit;
    co_return out;
  }

  boost::asio::awaitable<Result<store::WriteOutcome>> record(
      const store::CallbackWrite& write) override {
    attempts.push_back(write);
    if (before_next_record) {
      auto hook = std::move(before_next_record);
      before_next_record = nullptr;
      hook(*this);
    }
    if (fail_next_record) {
      Error e = std::move(*fail_next_record);
      fail_next_record.reset();
      co_return e;
    }
    co_return apply(std::move(write));
  }

  // As write_heard: last_heard_at moves forward for registrations still bound to the
  // subscription heard; the others' ids come back.
  boost::asio::awaitable<Result<std::vector<std::int64_t>>> record_heard(
      const std::vector<store::Heard>& heard) override {
    heard_calls.push_back(heard);
    if (fail_next_heard) {
      Error e = std::move(*fail_next_heard);
      fail_next_heard.reset();
      co_return e;
    }
    std::vector<std::int64_t> changed;
    for (const auto& h : heard) {
      auto* r = by_id(h.registration_id);
      if (r == nullptr || r->subscription_id != h.subscription_id) {
        changed.push_back(h.registration_id);
        continue;
      }
      auto& at = last_heard_[h.registration_id];
      at = std::max(at, h.heard_at);
    }
    co_return changed;
  }

  // The stored last-heard time (UTC seconds) written by record_heard, 0 when none.
  std::int64_t last_heard(std::int64_t registration_id) const {
    auto it = last_heard_.find(registration_id);
    return it == last_heard_.end() ? 0 : it->second;
  }

  // Observations and switches for the tests.
  std::vector<std::vector<store::Heard>> heard_calls;  // every record_heard() call
  std::optional<Error> fail_next_heard;
  int lookups = 0;
  int pages = 0;  // active_registrations() calls
  std::optional<Error> fail_next_page;
  std::vector<store::CallbackWrite> attempts;  // every record() call, in order
  std::vector<store::CallbackWrite> recorded;  // the ones that committed
  std::optional<Error> fail_next_lookup;
  std::optional<Error> fail_next_record;
  // Runs once at the start of the next record(), before it looks at the registration.
  std::function<void(FakeCallbackStore&)> before_next_record;

 private:
  store::RegistrationRecord* by_id(std::int64_t id) {
    for (auto& [key, r] : registrations_) {
      if (r.id == id) return &r;
    }
    return nullptr;
  }

  store::WriteOutcome apply(store::CallbackWrite w) {
    auto* r = by_id(w.registration_id);
    if (r == nullptr) return store::WriteOutcome::stale;
    if (w.bind) {
      if (r->subscription_id == w.expected_current) {
        if (w.expected_current) r->superseded.insert(r->superseded.begin(), *w.expected_current);
        r->subscription_id = w.subscription_id;
      } else if (r->subscription_id != w.subscription_id) {
        return store::WriteOutcome::stale;
      }
    }
    if (r->subscription_id != w.subscription_id) return store::WriteOutcome::stale;
    if (!w.count_events.empty()) {
      // The rules the store's SQL is tested against (registration_counts_test), for a
      // registration without a folder.
      counts_[r->id] = store::apply_count_events(counts_[r->id], "", w.count_events);
    }
    recorded.push_back(std::move(w));
    return store::WriteOutcome::recorded;
  }

  std::int64_t next_id_ = 101;
  std::map<std::string, store::RegistrationRecord> registrations_;  // by sha384(secret) bytes
  std::map<std::int64_t, store::CountState>
      counts_;  // by registration id                  // by registration id
  std::map<std::int64_t, std::int64_t> last_heard_;  // by registration id
};

}  // namespace mp::relay::test
