// A token bucket per key with bounded memory: the registration API's calls per customer, the
// listener's new connections and refusals per address, callbacks per registration and customer.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace mp {

class TokenBucketLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // Each key may spend `per_minute` calls at once and regains them at per_minute / 60 a
  // second. At most `max_keys` buckets are kept: a full bucket is the same as none, so those go
  // first; when every bucket is in use, the longest idle ones go.
  explicit TokenBucketLimiter(std::uint32_t per_minute, std::size_t max_keys = 100000);
  // Bursts of `burst` calls, regained at `per_second`.
  TokenBucketLimiter(double burst, double per_second, std::size_t max_keys);

  // How long until `key` may call again, or nullopt when it may now. Spends nothing.
  std::optional<std::chrono::seconds> blocked(const std::string& key, Clock::time_point now);
  // Spends one call of `key`: nullopt when it had one, else how long until it has.
  std::optional<std::chrono::seconds> take(const std::string& key, Clock::time_point now);

  std::size_t tracked() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point updated;
  };
  void refill(Bucket& b, Clock::time_point now) const;
  std::chrono::seconds wait_for_one(const Bucket& b) const;
  void make_room(Clock::time_point now);

  double capacity_;
  double per_second_;
  std::size_t max_keys_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace mp
