// A dispatch::BadgeSender that answers from a script per device token (200 when none is left)
// and can hold every send on the wire until released. One thread (the test's io_context).
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dispatch/badge_sender.hpp"

namespace mp::dispatch::test {

inline apns::SendResult answer(apns::SendOutcome outcome, std::string reason = "",
                               int http_status = 0) {
  apns::SendResult r;
  r.outcome = outcome;
  r.reason = std::move(reason);
  r.http_status = http_status;
  return r;
}

class ScriptedBadgeSender final : public BadgeSender {
 public:
  struct Sent {
    std::string customer;
    std::string fingerprint;
    apns::ApnsEnvironment environment = apns::ApnsEnvironment::production;
    apns::BadgeNotification notification;
    std::chrono::steady_clock::time_point at;  // when the dispatcher sent it
  };

  // The next answers to sends to `token_hex`, in order.
  void script(const std::string& token_hex, apns::SendResult result) {
    scripts_[token_hex].push_back(std::move(result));
  }
  // Sends wait (on the wire, as far as the dispatcher knows) until release().
  void hold() { held_ = true; }
  void release() {
    held_ = false;
    if (gate_) gate_->cancel();
  }

  const std::vector<Sent>& sent() const { return sent_; }
  std::size_t sent_to(const std::string& token_hex) const {
    std::size_t n = 0;
    for (const auto& s : sent_) n += s.notification.device_token_hex == token_hex ? 1 : 0;
    return n;
  }
  std::size_t in_flight() const { return in_flight_; }
  int closes() const { return closes_; }

  boost::asio::awaitable<apns::SendResult> send(
      const std::string& customer, const apns::ApnsCredential& credential,
      const apns::BadgeNotification& notification) override {
    sent_.push_back({customer, credential.fingerprint, credential.environment, notification,
                     std::chrono::steady_clock::now()});
    ++in_flight_;
    if (!gate_) {
      gate_.emplace(co_await boost::asio::this_coro::executor,
                    std::chrono::steady_clock::time_point::max());
    }
    while (held_) co_await gate_->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    --in_flight_;
    auto& queue = scripts_[notification.device_token_hex];
    if (queue.empty()) co_return answer(apns::SendOutcome::delivered, "", 200);
    apns::SendResult r = std::move(queue.front());
    queue.pop_front();
    co_return r;
  }

  boost::asio::awaitable<void> close() override {
    ++closes_;
    co_return;
  }

 private:
  std::map<std::string, std::deque<apns::SendResult>> scripts_;
  std::vector<Sent> sent_;
  bool held_ = false;
  std::optional<boost::asio::steady_timer> gate_;
  std::size_t in_flight_ = 0;
  int closes_ = 0;
};

}  // namespace mp::dispatch::test
