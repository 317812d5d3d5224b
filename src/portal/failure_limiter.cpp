// A fixed window per address: simple, bounded, and enough against guessing at human scale.
#include "portal/failure_limiter.hpp"

#include <algorithm>
#include <vector>

namespace mp::portal {

FailureLimiter::FailureLimiter(std::uint32_t limit, std::chrono::seconds window,
                               std::size_t max_addresses)
    : limit_(std::max<std::uint32_t>(1, limit)),
      window_(window),
      max_addresses_(std::max<std::size_t>(1, max_addresses)) {}

std::optional<std::chrono::seconds> FailureLimiter::blocked(const std::string& address,
                                                            Clock::time_point now) {
  std::lock_guard lock(mutex_);
  const auto it = windows_.find(address);
  if (it == windows_.end()) return std::nullopt;
  if (now - it->second.start >= window_) {
    windows_.erase(it);
    return std::nullopt;
  }
  if (it->second.failures < limit_) return std::nullopt;
  const auto left = std::chrono::ceil<std::chrono::seconds>(it->second.start + window_ - now);
  return std::max(left, std::chrono::seconds(1));
}

void FailureLimiter::record_failure(const std::string& address, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = windows_.find(address);
  if (it != windows_.end() && now - it->second.start >= window_) {
    it->second = Window{now, 0};
  }
  if (it == windows_.end()) {
    if (windows_.size() >= max_addresses_) make_room(now);
    it = windows_.emplace(address, Window{now, 0}).first;
  }
  ++it->second.failures;
}

std::size_t FailureLimiter::tracked() const {
  std::lock_guard lock(mutex_);
  return windows_.size();
}

void FailureLimiter::make_room(Clock::time_point now) {
  std::erase_if(windows_, [&](const auto& w) { return now - w.second.start >= window_; });
  if (windows_.size() < max_addresses_) return;
  // Still full: forget the older half of the windows that are not blocking anyone, so that a
  // flood of fresh addresses cannot lift the blocks already in place.
  std::vector<Clock::time_point> starts;
  starts.reserve(windows_.size());
  for (const auto& [address, w] : windows_) {
    if (w.failures < limit_) starts.push_back(w.start);
  }
  if (!starts.empty()) {
    auto middle = starts.begin() + static_cast<std::ptrdiff_t>(starts.size() / 2);
    std::nth_element(starts.begin(), middle, starts.end());
    const auto cut = *middle;
    std::erase_if(windows_, [&](const auto& w) {
      return w.second.failures < limit_ && w.second.start <= cut;
    });
  }
  // Only blocked windows left: the oldest go first.
  while (windows_.size() >= max_addresses_) {
    auto oldest = std::min_element(
        windows_.begin(), windows_.end(),
        [](const auto& a, const auto& b) { return a.second.start < b.second.start; });
    windows_.erase(oldest);
  }
}

}  // namespace mp::portal
