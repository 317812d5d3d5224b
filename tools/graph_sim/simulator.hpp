// graph-sim's Graph: subscriptions created only after their URLs pass validation, change
// notifications and lifecycle events delivered with retries and backoff, each answer timed and
// the endpoint judged as Graph judges it, open-loop load runs over many subscriptions, and the
// figures (stats, per-subscription counts, the last deliveries). One thread: no locks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "https_client.hpp"
#include "sim_rules.hpp"

namespace graph_sim {

struct SimOptions {
  milliseconds validation_timeout{10'000};  // Graph: the validation answer within 10 s
  milliseconds answer_timeout{10'000};      // a notification unanswered this long is retried
  milliseconds retry_base{1'000};
  milliseconds retry_cap{60'000};
  unsigned max_attempts = 5;  // Graph retries for hours; the sim gives up sooner
  milliseconds slow_delay{std::chrono::minutes(10)};  // how long a slow endpoint's sends wait
  ClassifierLimits classifier;
  std::size_t max_subscriptions = 1'000'000;
  std::size_t deliveries_kept = 10'000;
};

// The outcome of one delivery (a batch of changes or a lifecycle event), over all its attempts.
struct Delivery {
  std::uint64_t seq = 0;
  std::string subscription_id;
  std::string kind;     // notification | lifecycle
  std::string outcome;  // delivered | given_up | dropped (endpoint judged "drop") | removed
  unsigned attempts = 0;
  unsigned last_status = 0;  // 0: no answer
  std::string last_error;
  double answer_ms = 0;  // the last attempt's answer time
  std::size_t items = 0;
  Clock::time_point first_sent{};  // when the first attempt went out (its connection taken)
  nlohmann::json to_json() const;
};

// A control-API answer: an HTTP status and a JSON body.
struct Reply {
  int status = 200;
  nlohmann::json body;
};

class Simulator {
 public:
  Simulator(boost::asio::io_context& io, HttpsClient& client, SimOptions options,
            std::uint64_t seed);

  // Arguments are the caller's named values, alive until the coroutine ends.
  // POST /v1.0/subscriptions: Graph's subscription JSON (camelCase); 201 with the subscription,
  // or 400 as Graph answers (an invalid field, or the validation of a URL failed).
  boost::asio::awaitable<Reply> create(const nlohmann::json& request);
  // Many at once, `concurrency` validations in flight: {"created":[ids…],"failed":[…]}.
  boost::asio::awaitable<Reply> create_many(const nlohmann::json& request);
  Reply remove(const std::string& id);
  Reply list() const;
  // A batch of changes to one subscription's notification URL; waits for its outcome.
  boost::asio::awaitable<Reply> notify(const std::string& id, const nlohmann::json& request);
  // A lifecycle event to the lifecycle URL (the notification URL when it has none).
  boost::asio::awaitable<Reply> lifecycle(const std::string& id, const nlohmann::json& request);
  // A load run over all subscriptions, each batch to a random one with new message ids: open loop
  // ("mode":"open", `rate` batches a second for `seconds`) or closed loop ("mode":"closed",
  // `concurrency` senders back to back for `seconds`: the endpoint's capacity). Answers with the
  // run's figures once every delivery ended (or the drain limit passed).
  boost::asio::awaitable<Reply> load(const nlohmann::json& request);

  nlohmann::json stats() const;
  nlohmann::json deliveries(std::uint64_t since, std::size_t limit) const;
  void reset();

 private:
  struct Entry {
    Subscription sub;
    Url notify, lifecycle;
    std::uint64_t items_sent = 0, items_accepted = 0, lifecycle_sent = 0, lifecycle_accepted = 0;
  };
  struct Validation {
    bool ok = false;
    std::string reason;
    double answer_ms = 0;
  };
  struct RunFigures;

  boost::asio::awaitable<Validation> validate(const Url& url);
  // Coroutines take references to named values of their caller, which waits for them: GCC 12
  // destroys a temporary inside a co_await expression twice.
  boost::asio::awaitable<Delivery> deliver(const std::string& id, const std::string& kind,
                                           const Url& url, const std::string& body,
                                           std::size_t items, RunFigures* run);
  void keep(const Delivery& d);
  EndpointClassifier& classifier(const Url& url);

  boost::asio::io_context& io_;
  HttpsClient& client_;
  SimOptions options_;
  std::mt19937_64 rng_;
  std::map<std::string, Entry> subs_;
  std::map<std::string, EndpointClassifier> endpoints_;
  std::deque<Delivery> kept_;
  std::uint64_t next_seq_ = 1;
  std::uint64_t next_message_ = 1;  // message ids are unique over all subscriptions
  bool load_running_ = false;

  struct Totals {
    std::uint64_t validations_ok = 0, validations_failed = 0;
    std::uint64_t delivered = 0, given_up = 0, dropped = 0, in_flight = 0;
    std::uint64_t attempts = 0, retries = 0, over_slow = 0, over_drop = 0;
    std::map<std::string, std::uint64_t> answers;  // "202", "503", "timeout", "error"
    std::vector<std::uint32_t> answer_us;          // the first 200,000
    std::vector<std::uint32_t> validation_us;      // likewise
  } totals_;
};

}  // namespace graph_sim
