// Per-address limit on failed portal attempts (wrong key, invalid invite, refused certificate):
// guessing keys or grinding the certificate parser costs the guesser, not the region.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace mp::portal {

class FailureLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // `limit` failures per `window` per address; at most `max_addresses` tracked (beyond that,
  // expired entries are dropped first, then the oldest windows).
  FailureLimiter(std::uint32_t limit, std::chrono::seconds window,
                 std::size_t max_addresses = 100000);

  // When the address has used up its failures: how long until it may try again.
  std::optional<std::chrono::seconds> blocked(const std::string& address, Clock::time_point now);
  void record_failure(const std::string& address, Clock::time_point now);
  std::size_t tracked() const;

 private:
  struct Window {
    Clock::time_point start;
    std::uint32_t failures = 0;
  };
  void make_room(Clock::time_point now);

  std::uint32_t limit_;
  std::chrono::seconds window_;
  std::size_t max_addresses_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Window> windows_;
};

}  // namespace mp::portal
