// Events a second over the last completed quarter second or more: cheap enough to call per event,
// for decisions that only need to tell a low rate from a high one. Not thread-safe: callers hold
// their own lock or strand.
#pragma once

#include <chrono>
#include <cstddef>

namespace mp {

class RateMeter {
 public:
  using Clock = std::chrono::steady_clock;

  // Counts `n` events now; the rate moves once a quarter second has passed since it last did.
  void add(std::size_t n, Clock::time_point now = Clock::now()) noexcept {
    count_ += n;
    if (now - since_ < std::chrono::milliseconds(250)) return;
    const std::chrono::duration<double> took = now - since_;
    per_second_ = static_cast<double>(count_) / took.count();
    count_ = 0;
    since_ = now;
  }
  double per_second() const noexcept { return per_second_; }

 private:
  double per_second_ = 0;
  std::size_t count_ = 0;
  Clock::time_point since_ = Clock::now();
};

}  // namespace mp
