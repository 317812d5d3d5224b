// Tests of CredentialBreaker (open, fail fast, one probe per interval, close on an answer,
// reconnect backoff) and of retry_backoff with a pool's own base and cap; no sockets, the clock
// is a value.
#include "apns/credential_breaker.hpp"

#include <gtest/gtest.h>

#include <random>

#include "apns/response.hpp"

namespace mp::apns {
namespace {

using namespace std::chrono_literals;
using TimePoint = CredentialBreaker::TimePoint;

const TimePoint t0 = TimePoint{} + 1000h;

BreakerConfig config() {
  BreakerConfig c;
  c.open_interval = 1s;
  c.reconnect_base = 100ms;
  c.reconnect_cap = 1600ms;
  return c;
}

TEST(CredentialBreaker, ClosedAdmitsEverythingAndConnectsAtOnce) {
  CredentialBreaker b(config());
  EXPECT_EQ(b.state(), BreakerState::closed);
  for (int i = 0; i < 3; ++i) {
    const auto a = b.admit_send(t0);
    EXPECT_TRUE(a.admitted);
    EXPECT_FALSE(a.probe);
  }
  EXPECT_TRUE(b.may_connect(t0));
  EXPECT_TRUE(b.still_admitted(false));
}

TEST(CredentialBreaker, CredentialFailureFailsFastUntilTheIntervalPasses) {
  CredentialBreaker b(config());
  b.credential_failed(t0, "BadCertificate");
  EXPECT_EQ(b.state(), BreakerState::open);
  EXPECT_EQ(b.reason(), "BadCertificate");
  EXPECT_FALSE(b.still_admitted(false));
  EXPECT_FALSE(b.admit_send(t0).admitted);
  EXPECT_FALSE(b.admit_send(t0 + 999ms).admitted);
  EXPECT_FALSE(b.may_connect(t0 + 10s));  // only a probe send may connect
  EXPECT_EQ(b.next_connect_at(), TimePoint::max());
}

TEST(CredentialBreaker, OneProbePerIntervalAndOneConnectionAttempt) {
  CredentialBreaker b(config());
  b.credential_failed(t0, "TlsHandshakeRefused");
  const auto probe = b.admit_send(t0 + 1s);
  EXPECT_TRUE(probe.admitted);
  EXPECT_TRUE(probe.probe);
  EXPECT_EQ(b.state(), BreakerState::half_open);
  // Others fail fast while the probe runs.
  EXPECT_FALSE(b.admit_send(t0 + 1s).admitted);
  EXPECT_TRUE(b.still_admitted(true));
  EXPECT_FALSE(b.still_admitted(false));
  // The probe gets exactly one connection attempt.
  EXPECT_TRUE(b.may_connect(t0 + 1s));
  b.connect_started(t0 + 1s);
  EXPECT_FALSE(b.may_connect(t0 + 1s));
  // Refused again: open for another interval.
  b.credential_failed(t0 + 1100ms, "TlsHandshakeRefused");
  EXPECT_EQ(b.state(), BreakerState::open);
  EXPECT_EQ(b.open_until(), t0 + 2100ms);
  EXPECT_FALSE(b.admit_send(t0 + 2s).admitted);
  EXPECT_TRUE(b.admit_send(t0 + 2100ms).probe);
}

TEST(CredentialBreaker, ConnectionAttemptsAtMostOnePerInterval) {
  // Sends arrive every 10 ms for 10 s; the credential is always refused at the handshake.
  CredentialBreaker b(config());
  b.credential_failed(t0, "TlsHandshakeRefused");
  int attempts = 0;
  for (auto now = t0; now < t0 + 10s; now += 10ms) {
    const auto a = b.admit_send(now);
    if (!a.admitted) continue;
    if (b.may_connect(now)) {
      b.connect_started(now);
      ++attempts;
      b.credential_failed(now + 5ms, "TlsHandshakeRefused");
    }
  }
  EXPECT_GE(attempts, 9);
  EXPECT_LE(attempts, 10);
}

TEST(CredentialBreaker, AnAnswerClosesIt) {
  CredentialBreaker b(config());
  b.credential_failed(t0, "BadCertificate");
  ASSERT_TRUE(b.admit_send(t0 + 1s).probe);
  b.answered(t0 + 1s);
  EXPECT_EQ(b.state(), BreakerState::closed);
  EXPECT_TRUE(b.reason().empty());
  EXPECT_TRUE(b.admit_send(t0 + 1s).admitted);
}

TEST(CredentialBreaker, ConnectingIsNotProofEnough) {
  CredentialBreaker b(config());
  b.credential_failed(t0, "BadCertificate");
  ASSERT_TRUE(b.admit_send(t0 + 1s).probe);
  b.connect_started(t0 + 1s);
  b.connect_succeeded(t0 + 1s);  // TLS passed, but APNs may still answer 403
  EXPECT_EQ(b.state(), BreakerState::half_open);
}

TEST(CredentialBreaker, InconclusiveProbeOpensAgainWithTheOldReason) {
  CredentialBreaker b(config());
  b.credential_failed(t0, "BadCertificate");
  ASSERT_TRUE(b.admit_send(t0 + 1s).probe);
  b.probe_inconclusive(t0 + 1500ms);
  EXPECT_EQ(b.state(), BreakerState::open);
  EXPECT_EQ(b.reason(), "BadCertificate");
  EXPECT_EQ(b.open_until(), t0 + 2500ms);
  b.probe_inconclusive(t0 + 3s);  // not half open: no change
  EXPECT_EQ(b.open_until(), t0 + 2500ms);
}

TEST(CredentialBreaker, UnreachableProbeEndsTheProbe) {
  CredentialBreaker b(config());
  std::mt19937_64 rng(7);
  b.credential_failed(t0, "TlsHandshakeRefused");
  ASSERT_TRUE(b.admit_send(t0 + 1s).probe);
  b.connect_started(t0 + 1s);
  b.connect_unreachable(t0 + 1s, rng);
  EXPECT_EQ(b.state(), BreakerState::open);
}

TEST(CredentialBreaker, ReconnectBackoffDoublesWithEqualJitterUpToTheCap) {
  CredentialBreaker b(config());
  std::mt19937_64 rng(42);
  auto now = t0;
  long long expected_max = 100;
  for (int failure = 1; failure <= 8; ++failure) {
    b.connect_started(now);
    b.connect_unreachable(now, rng);
    EXPECT_EQ(b.consecutive_unreachable(), failure);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(b.reconnect_at() - now);
    EXPECT_GE(wait.count(), expected_max - expected_max / 2) << "failure " << failure;
    EXPECT_LE(wait.count(), expected_max) << "failure " << failure;
    EXPECT_FALSE(b.may_connect(now));
    EXPECT_TRUE(b.may_connect(b.reconnect_at()));
    EXPECT_EQ(b.next_connect_at(), b.reconnect_at());
    now = b.reconnect_at();
    expected_max = std::min<long long>(expected_max * 2, 1600);
  }
  // Unreachable is not a credential failure: sends are still admitted.
  EXPECT_EQ(b.state(), BreakerState::closed);
  EXPECT_TRUE(b.admit_send(now).admitted);
  b.connect_succeeded(now);
  EXPECT_EQ(b.consecutive_unreachable(), 0);
  EXPECT_TRUE(b.may_connect(now));
}

TEST(RetryBackoffScaled, BoundsGrowthAndCap) {
  std::mt19937_64 rng(3);
  for (int attempt = 1; attempt <= 12; ++attempt) {
    const long long upper = std::min<long long>(10LL << (attempt - 1), 200);
    long long seen_max = 0;
    for (int i = 0; i < 2000; ++i) {
      const long long ms = retry_backoff(attempt, rng, 10ms, 200ms).count();
      EXPECT_GE(ms, 0);
      EXPECT_LE(ms, upper);
      seen_max = std::max(seen_max, ms);
    }
    EXPECT_GT(seen_max, upper * 9 / 10) << "attempt " << attempt;
  }
}

TEST(RetryBackoffScaled, DefaultOverloadIsTheSameFunction) {
  for (int attempt : {1, 2, 5, 9, 10, 40}) {
    std::mt19937_64 a(11), b(11);
    EXPECT_EQ(retry_backoff(attempt, a),
              retry_backoff(attempt, b, kRetryBackoffBase, kRetryBackoffCap));
  }
}

TEST(RetryBackoffScaled, DegenerateBaseAndCap) {
  std::mt19937_64 rng(5);
  EXPECT_LE(retry_backoff(3, rng, 0ms, 0ms).count(), 1);
  EXPECT_LE(retry_backoff(3, rng, 50ms, 10ms).count(), 50);  // cap below base: base wins
}

}  // namespace
}  // namespace mp::apns
