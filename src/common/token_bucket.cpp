// TokenBucketLimiter: refill on access, no timers.
#include "common/token_bucket.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mp {

TokenBucketLimiter::TokenBucketLimiter(std::uint32_t per_minute, std::size_t max_keys)
    : capacity_(std::max<std::uint32_t>(1, per_minute)),
      per_second_(capacity_ / 60.0),
      max_keys_(std::max<std::size_t>(1, max_keys)) {}

TokenBucketLimiter::TokenBucketLimiter(double burst, double per_second, std::size_t max_keys)
    : capacity_(std::max(1.0, burst)),
      per_second_(std::max(1e-6, per_second)),
      max_keys_(std::max<std::size_t>(1, max_keys)) {}

void TokenBucketLimiter::refill(Bucket& b, Clock::time_point now) const {
  if (now <= b.updated) return;
  const double elapsed = std::chrono::duration<double>(now - b.updated).count();
  b.tokens = std::min(capacity_, b.tokens + elapsed * per_second_);
  b.updated = now;
}

std::chrono::seconds TokenBucketLimiter::wait_for_one(const Bucket& b) const {
  const double missing = 1.0 - b.tokens;
  // (The epsilon keeps 10.000000001 s, a rounding artefact, from becoming 11.)
  const auto seconds = static_cast<std::int64_t>(std::ceil(missing / per_second_ - 1e-6));
  return std::chrono::seconds(std::max<std::int64_t>(1, seconds));
}

std::optional<std::chrono::seconds> TokenBucketLimiter::blocked(const std::string& key,
                                                                Clock::time_point now) {
  std::lock_guard lock(mutex_);
  const auto it = buckets_.find(key);
  if (it == buckets_.end()) return std::nullopt;
  refill(it->second, now);
  if (it->second.tokens >= 1.0) return std::nullopt;
  return wait_for_one(it->second);
}

std::optional<std::chrono::seconds> TokenBucketLimiter::take(const std::string& key,
                                                             Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_keys_) make_room(now);
    it = buckets_.emplace(key, Bucket{capacity_, now}).first;
  }
  Bucket& b = it->second;
  refill(b, now);
  if (b.tokens < 1.0) return wait_for_one(b);
  b.tokens -= 1.0;
  return std::nullopt;
}

std::size_t TokenBucketLimiter::tracked() const {
  std::lock_guard lock(mutex_);
  return buckets_.size();
}

void TokenBucketLimiter::make_room(Clock::time_point now) {
  // A bucket that has refilled completely says nothing a missing one does not.
  // (Read without refilling: `updated` is also the last use, which orders the eviction below.)
  std::erase_if(buckets_, [&](const auto& entry) {
    const double elapsed = std::chrono::duration<double>(now - entry.second.updated).count();
    return entry.second.tokens + std::max(0.0, elapsed) * per_second_ >= capacity_;
  });
  if (buckets_.size() < max_keys_) return;
  // Every bucket is in use: forget the older half (by last use), which lifts their limits
  // early rather than letting memory grow.
  std::vector<Clock::time_point> used;
  used.reserve(buckets_.size());
  for (const auto& [key, b] : buckets_) used.push_back(b.updated);
  auto middle = used.begin() + static_cast<std::ptrdiff_t>(used.size() / 2);
  std::nth_element(used.begin(), middle, used.end());
  const auto cut = *middle;
  std::erase_if(buckets_, [&](const auto& entry) { return entry.second.updated <= cut; });
}

}  // namespace mp
