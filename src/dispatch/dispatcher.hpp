// The dispatcher (flow 5 of DESIGN.md): reads this instance's due outbox rows in rounds, sends
// the newest badge of each device through the customer's credential for the device's
// environment, and applies every answer to the outbox, the device and the customer's queue in
// one transaction per round.
//
// Rounds run one after another on one strand; the sends of a round run concurrently on the
// customers' connection pools. A round starts when the callback store committed new rows
// (wake()), when a retry falls due (poll), or at once after a full round. Rows of other instances
// whose lease ran out are taken over every lease/2. A failed result write leaves the rows queued:
// they are sent again, and since a badge is an absolute count a duplicate changes nothing.
//
// The outbox is a store::DispatchStore and APNs a BadgeSender: MariaDB and the connection pools
// in the daemon, in-memory fakes in the unit tests.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>

#include "common/rate_meter.hpp"
#include "credentials/credential_registry.hpp"
#include "dispatch/badge_sender.hpp"
#include "dispatch/dispatch_plan.hpp"
#include "store/dispatch_store.hpp"

namespace mp::dispatch {

struct DispatcherOptions {
  std::string owner;  // this instance's id (outbox rows it writes carry it)
  std::size_t batch = 500;
  std::chrono::seconds ttl{3600};
  std::chrono::seconds lease{30};
  std::chrono::milliseconds poll{200};
  // Woken by a commit at a low rate (under 2,000 badges a second), the next round waits this long
  // for more: each round would otherwise send and clear one or two badges in a transaction of
  // its own. Under load rounds follow each other at once. 0: never.
  std::chrono::milliseconds gather{0};
  std::chrono::seconds pause_probe{300};
  RetryPolicy retry;
  std::chrono::seconds stats_interval{10};
  std::chrono::hours dead_letter_retention{24 * 7};  // then dead letters are deleted
};

class Dispatcher {
 public:
  // The customer's usable credential (null: none), by public Customer ID.
  using CredentialLookup =
      std::function<std::shared_ptr<const credentials::LoadedCredential>(const std::string&)>;

  // `store` and `sender` outlive the dispatcher.
  Dispatcher(boost::asio::io_context& ioc, store::DispatchStore& store, BadgeSender& sender,
             CredentialLookup credentials, DispatcherOptions options,
             prometheus::Registry& registry);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  void start();
  // New rows were committed: start a round soon. Any thread; cheap when called often.
  void wake();
  // Finishes the round in flight (its sends and its result write), closes the pools, then
  // calls `done` on the dispatcher's strand. Any thread.
  void stop(std::function<void()> done);

 private:
  struct Paused {
    std::string customer_public_id;
    std::string fingerprint;  // of the credential that failed ("" when there was none)
    std::chrono::steady_clock::time_point since;
    std::string reason;
  };

  boost::asio::awaitable<void> run();
  boost::asio::awaitable<std::size_t> round();
  // The sends of one round still running, and the timer the round waits on.
  struct RoundSends {
    RoundSends(const boost::asio::strand<boost::asio::io_context::executor_type>& strand,
               std::size_t n)
        : done(strand, std::chrono::steady_clock::time_point::max()), pending(n) {}
    boost::asio::steady_timer done;  // cancelled when the last send ends
    std::size_t pending;
  };
  boost::asio::awaitable<void> send_one(PlannedSend send, store::DispatchWrites& outcome,
                                        std::shared_ptr<RoundSends> sends);
  boost::asio::awaitable<void> housekeeping();
  boost::asio::awaitable<void> pause(std::int64_t customer_id, const std::string& public_id,
                                     const std::string& fingerprint, const CustomerSignal& signal);
  boost::asio::awaitable<void> resume_paused();
  void count(RowOutcome r, std::size_t n = 1);
  void count_wake(WakeOutcome w, const std::string& reason);
  // The wake of a device whose badge APNs just accepted: a background push; its WakeDone.
  boost::asio::awaitable<void> send_wake(const PlannedSend& send,
                                         const apns::ApnsCredential& credential,
                                         const std::string& topic, store::DispatchWrites& outcome);

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  store::DispatchStore& store_;
  BadgeSender& sender_;
  CredentialLookup credentials_;
  DispatcherOptions options_;
  std::mt19937_64 rng_;

  boost::asio::steady_timer wake_timer_;
  std::atomic<bool> wake_pending_{false};
  bool gathering_ = false;  // on the strand: the wake timer runs the gather wait (wake() keeps it)
  // Below this many marks a second a woken round gathers first (options_.gather).
  static constexpr double kGatherBelowPerSecond = 2000;
  RateMeter marks_rate_;  // marks read a second
  bool stopping_ = false;
  bool running_ = false;
  std::function<void()> on_stopped_;

  std::map<std::int64_t, Paused> paused_;  // by customer row id
  std::chrono::steady_clock::time_point next_takeover_{};
  std::chrono::steady_clock::time_point next_stats_{};
  bool db_down_logged_ = false;

  std::array<prometheus::Counter*, kRowOutcomeCount> results_{};
  prometheus::Family<prometheus::Counter>& dead_reasons_;
  prometheus::Family<prometheus::Counter>& wakes_;  // by reason and result
  prometheus::Histogram& delay_;
  prometheus::Histogram& round_rows_;
  prometheus::Gauge& paused_gauge_;
  prometheus::Gauge& queued_gauge_;
  prometheus::Gauge& dead_gauge_;
  prometheus::Gauge& oldest_gauge_;
  prometheus::Counter& taken_over_;
  prometheus::Counter& result_write_failures_;
};

}  // namespace mp::dispatch
