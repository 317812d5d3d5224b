// graph-sim's rules, without sockets: how Microsoft Graph addresses an endpoint (the URL), what it
// posts (change notifications, lifecycle events, the validation token), how it retries (exponential
// backoff) and how it judges an endpoint by its answer times (slow over 3 s, drop over 10 s).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace graph_sim {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// An https URL as a subscription holds it: https://host[:port]/path[?query].
struct Url {
  std::string host;
  std::uint16_t port = 443;
  std::string target;             // path and query, "/" at least
  std::string authority() const;  // host[:port] as the Host header carries it
};
// Nothing for a URL that is not https, has user info, a fragment, or a bad port.
std::optional<Url> parse_https_url(std::string_view url);

// application/x-www-form-urlencoded percent-encoding of a query value (space as %20).
std::string percent_encode(std::string_view text);

// The token Graph posts on validation: printable, with spaces and punctuation that must be
// URL-decoded by the endpoint, unique per request.
std::string make_validation_token(std::mt19937_64& rng);

// A lower-case RFC 4122 version 4 id, as Graph's subscription ids are.
std::string make_uuid(std::mt19937_64& rng);

// A subscription as Graph keeps it (the fields a notification carries).
struct Subscription {
  std::string id;
  std::string resource;
  std::string change_type;
  std::string notification_url;
  std::string lifecycle_url;  // may be empty
  std::string client_state;
  std::string tenant_id;
  std::string user_id;
  std::string expiration;  // ISO 8601, as subscriptionExpirationDateTime
  std::string label;       // the caller's name for it (graph-sim only)
};

struct Change {
  std::string change_type;  // created | updated | deleted
  std::string message_id;
};

// {"value":[…]}: one change notification per change, in Graph's documented shape.
std::string notification_body(const Subscription& s, const std::vector<Change>& changes);
// {"value":[…]}: one lifecycle event (reauthorizationRequired | subscriptionRemoved | missed).
std::string lifecycle_body(const Subscription& s, std::string_view event);
bool is_lifecycle_event(std::string_view event);
bool is_change_type(std::string_view change_type);

// ISO 8601 UTC with seven fractional digits, as Graph writes subscriptionExpirationDateTime.
std::string iso8601(std::chrono::system_clock::time_point t);

// Before attempt `attempt` (2, 3, …): base × 2^(attempt-2), capped, with ±20 % jitter; a
// Retry-After the endpoint sent (seconds) is honoured up to the cap.
milliseconds retry_delay(unsigned attempt, milliseconds base, milliseconds cap,
                         std::optional<std::chrono::seconds> retry_after, std::mt19937_64& rng);

// Graph's judgement of an endpoint from the answers of a time window: more than 10 % over 3 s →
// slow (its notifications are delayed); more than 15 % over 10 s (timeouts included) → drop
// (its notifications are dropped). A state, once entered, lasts `penalty`.
enum class EndpointClass { ok, slow, drop };
std::string_view to_string(EndpointClass c);

struct ClassifierLimits {
  milliseconds slow_after{3000};
  milliseconds drop_after{10000};
  double slow_share = 0.10;
  double drop_share = 0.15;
  milliseconds window{std::chrono::minutes(10)};
  std::size_t min_answers = 20;  // no judgement on fewer answers
  milliseconds penalty{std::chrono::minutes(10)};
};

class EndpointClassifier {
 public:
  explicit EndpointClassifier(ClassifierLimits limits = {}) : limits_(limits) {}
  // One answer (or timeout: pass the drop threshold or more) at `now`.
  void record(Clock::time_point now, milliseconds answer);
  EndpointClass state(Clock::time_point now) const;
  std::size_t answers() const { return samples_.size(); }
  std::size_t over_slow() const { return over_slow_; }
  std::size_t over_drop() const { return over_drop_; }

 private:
  void expire(Clock::time_point now);

  struct Sample {
    Clock::time_point at;
    bool slow, drop;
  };
  ClassifierLimits limits_;
  std::deque<Sample> samples_;
  std::size_t over_slow_ = 0, over_drop_ = 0;  // within the window
  EndpointClass state_ = EndpointClass::ok;
  Clock::time_point state_until_{};
  static constexpr std::size_t kMaxSamples = 100'000;
};

// Answer times for a report: p50, p99, max (milliseconds) from microsecond samples.
struct Percentiles {
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
};
Percentiles percentiles(std::vector<std::uint32_t> samples_us);

}  // namespace graph_sim
