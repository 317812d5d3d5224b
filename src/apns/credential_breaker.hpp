// CredentialBreaker: when a pool may connect and send, as pure state with the clock passed in.
//
// Two things stop a pool from hammering APNs (Apple blocks providers that connect too often):
//   - unreachable APNs (DNS, TCP, timeouts): connection attempts back off exponentially with
//     jitter (reconnect_base doubling up to reconnect_cap); the first attempt is immediate.
//   - a refused credential (TLS handshake refused, 403 BadCertificate*, expired certificate):
//     the breaker opens. Sends fail fast with the reason and nothing connects until
//     open_interval has passed; then one send is let through as the probe (half_open). An APNs
//     answer that is not a credential failure closes the breaker; another credential failure
//     (or a probe that learnt nothing) opens it for another interval. So a revoked certificate
//     costs at most one connection attempt per interval.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>

namespace mp::apns {

enum class BreakerState {
  closed,     // normal: sends go, connections open as needed (after reconnect backoff)
  open,       // the credential was refused: sends fail fast until open_until
  half_open,  // one probe send is trying the credential; the others fail fast
};
const char* breaker_state_name(BreakerState state) noexcept;

struct BreakerConfig {
  std::chrono::milliseconds open_interval{60'000};  // at most one attempt per this, when open
  std::chrono::milliseconds reconnect_base{500};    // after the first failed connect
  std::chrono::milliseconds reconnect_cap{30'000};
};

// Whether a send may go now, and whether it is the breaker's probe.
struct SendAdmission {
  bool admitted = false;
  bool probe = false;
};

class CredentialBreaker {
 public:
  using Clock = std::chrono::steady_clock;
  using TimePoint = Clock::time_point;

  explicit CredentialBreaker(BreakerConfig config = {}) : config_(config) {}

  // A new send asks to go. Open and due (now >= open_until): this send becomes the probe and
  // the breaker goes half_open. Open and not due, or half_open: refused (fail fast).
  SendAdmission admit_send(TimePoint now);
  // A send already admitted asks again (after a backoff, before a new connection): false when
  // the breaker opened meanwhile and it is not the probe.
  bool still_admitted(bool probe) const noexcept { return state_ == BreakerState::closed || probe; }

  // May a connection attempt start now? Closed: after the reconnect backoff. Half-open: only for
  // the probe (the caller knows), once: may_connect is false after connect_started in half_open.
  bool may_connect(TimePoint now) const noexcept;
  // The earliest time may_connect can turn true (for waiting); TimePoint::max() when only a
  // probe send can change it.
  TimePoint next_connect_at() const noexcept;

  void connect_started(TimePoint now);
  void connect_succeeded(TimePoint now);
  // Not reached (resolve, TCP, timeout): the next attempt waits base * 2^(n-1) with equal
  // jitter (half fixed, half drawn from rng), at most reconnect_cap.
  void connect_unreachable(TimePoint now, std::mt19937_64& rng);
  // The credential was refused (handshake, 403, expired): open for open_interval.
  void credential_failed(TimePoint now, std::string reason);
  // APNs answered something else than a credential failure: the credential works.
  void answered(TimePoint now);
  // The probe ended without learning anything (APNs unreachable, retries exhausted): open again
  // for another interval, with the old reason.
  void probe_inconclusive(TimePoint now);

  BreakerState state() const noexcept { return state_; }
  const std::string& reason() const noexcept { return reason_; }  // why it opened
  TimePoint open_until() const noexcept { return open_until_; }
  int consecutive_unreachable() const noexcept { return consecutive_unreachable_; }
  TimePoint reconnect_at() const noexcept { return reconnect_at_; }
  const BreakerConfig& config() const noexcept { return config_; }

 private:
  BreakerConfig config_;
  BreakerState state_ = BreakerState::closed;
  std::string reason_;
  TimePoint open_until_{};
  bool probe_connect_used_ = false;  // half_open: the one attempt of this interval is spent
  int consecutive_unreachable_ = 0;
  TimePoint reconnect_at_{};  // closed: no connect before this
};

}  // namespace mp::apns
