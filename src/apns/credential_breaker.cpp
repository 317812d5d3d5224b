// CredentialBreaker's transitions (see the header for the rules and why).
#include "apns/credential_breaker.hpp"

#include <algorithm>

namespace mp::apns {

const char* breaker_state_name(BreakerState state) noexcept {
  switch (state) {
    case BreakerState::closed:
      return "closed";
    case BreakerState::open:
      return "open";
    case BreakerState::half_open:
      return "half_open";
  }
  return "?";
}

SendAdmission CredentialBreaker::admit_send(TimePoint now) {
  switch (state_) {
    case BreakerState::closed:
      return {true, false};
    case BreakerState::open:
      if (now < open_until_) return {false, false};
      state_ = BreakerState::half_open;
      probe_connect_used_ = false;
      return {true, true};
    case BreakerState::half_open:
      return {false, false};
  }
  return {false, false};
}

bool CredentialBreaker::may_connect(TimePoint now) const noexcept {
  switch (state_) {
    case BreakerState::closed:
      return now >= reconnect_at_;
    case BreakerState::open:
      return false;
    case BreakerState::half_open:
      return !probe_connect_used_;
  }
  return false;
}

CredentialBreaker::TimePoint CredentialBreaker::next_connect_at() const noexcept {
  switch (state_) {
    case BreakerState::closed:
      return reconnect_at_;
    case BreakerState::open:
    case BreakerState::half_open:
      return TimePoint::max();
  }
  return TimePoint::max();
}

void CredentialBreaker::connect_started(TimePoint /*now*/) {
  if (state_ == BreakerState::half_open) probe_connect_used_ = true;
}

void CredentialBreaker::connect_succeeded(TimePoint now) {
  // The handshake passing is not proof enough: APNs may still answer 403 per request. Only an
  // answer closes the breaker (answered()).
  consecutive_unreachable_ = 0;
  reconnect_at_ = now;
}

void CredentialBreaker::connect_unreachable(TimePoint now, std::mt19937_64& rng) {
  ++consecutive_unreachable_;
  const auto base = std::max<std::int64_t>(1, config_.reconnect_base.count());
  const auto cap = std::max(base, config_.reconnect_cap.count());
  std::int64_t delay = base;
  for (int i = 1; i < consecutive_unreachable_ && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  // Equal jitter: never zero (no reconnect storm), spread so pools do not reconnect in step.
  const std::int64_t half = delay / 2;
  const std::int64_t drawn =
      static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(half + 1));
  reconnect_at_ = now + std::chrono::milliseconds(delay - half + drawn);
  if (state_ == BreakerState::half_open) probe_inconclusive(now);
}

void CredentialBreaker::credential_failed(TimePoint now, std::string reason) {
  state_ = BreakerState::open;
  reason_ = std::move(reason);
  open_until_ = now + config_.open_interval;
  probe_connect_used_ = false;
}

void CredentialBreaker::answered(TimePoint /*now*/) {
  if (state_ != BreakerState::closed) {
    state_ = BreakerState::closed;
    reason_.clear();
  }
}

void CredentialBreaker::probe_inconclusive(TimePoint now) {
  if (state_ != BreakerState::half_open) return;
  state_ = BreakerState::open;
  open_until_ = now + config_.open_interval;
  probe_connect_used_ = false;
}

}  // namespace mp::apns
