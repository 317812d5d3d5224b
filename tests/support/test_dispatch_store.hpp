// An in-memory store::DispatchStore with the MariaDB store's rules (store/outbox.cpp): a row is a
// pending badge mark (or, once dead, a dead letter); due marks of one owner soonest first, joined
// with their device and customer; a round's writes applied at once, clearing marks by version;
// take-over of the marks of instances marked gone. One thread (the test's io_context).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "store/dispatch_store.hpp"

namespace mp::test {

class FakeDispatchStore final : public store::DispatchStore {
 public:
  using Clock = std::chrono::steady_clock;

  struct Customer {
    std::string public_id;
    std::string state = "active";
    std::optional<std::string> paused_reason;  // customers.paused_reason
  };
  struct Device {
    std::int64_t customer_id = 0;
    std::string token_hex;
    std::string environment = "production";
    std::string state = "active";
    std::optional<std::chrono::system_clock::time_point> unregistered_at;
    std::string invalid_reason;
  };
  struct Row {
    std::int64_t id = 0;
    std::int64_t version = 1;  // moves with every event (bump)
    std::string owner;
    std::int64_t customer_id = 0;
    std::int64_t device_id = 0;
    std::int64_t badge = 0;
    int attempts = 0;
    std::string state = "queued";  // queued | dead
    Clock::time_point created;
    Clock::time_point next_attempt;
    std::string last_error;
    std::string wake_reason;   // a background push is pending ("" none)
    bool wake_allowed = true;  // none was sent within store::kWakeInterval
  };

  // Returns the customer's row id.
  std::int64_t add_customer(std::string public_id, std::string state = "active");
  // Returns the device's id; its token is 64 hex digits made from the id unless given.
  std::int64_t add_device(std::int64_t customer_id, std::string environment = "production",
                          std::string token_hex = "");
  // Queues a badge for the device, owned by `owner`, due now, first queued `waited` ago; returns
  // the row id (ids grow).
  std::int64_t queue(const std::string& owner, std::int64_t device_id, std::int64_t badge,
                     std::chrono::seconds waited = std::chrono::seconds(0));
  // An event moved the mark after a round read it: a clear of the version read leaves it.
  void bump(std::int64_t id, std::int64_t badge);

  // The mark asks for a wake too (a Graph lifecycle event, an expiry, a silence).
  void wake(std::int64_t id, std::string reason, bool allowed = true);
  // Every WakeDone the dispatcher wrote, in order.
  const std::vector<store::WakeDone>& wakes_written() const { return wakes_written_; }

  // What the tables hold now.
  const Row* row(std::int64_t id) const;  // null once deleted
  Device& device(std::int64_t id) { return devices_.at(id); }
  Customer& customer(std::int64_t id) { return customers_.at(id); }
  std::size_t rows() const { return rows_.size(); }
  std::size_t queued() const;

  // The instance `owner` stopped (or its lease ran out): take_over_outbox moves its rows.
  void owner_gone(const std::string& owner) { gone_.insert(owner); }
  // The next `n` result writes fail with Errc::unavailable (the database went away).
  void fail_next_writes(int n) { failing_writes_ = n; }

  // What the dispatcher asked.
  std::size_t reads() const { return reads_; }
  std::size_t writes_applied() const { return writes_applied_; }
  std::size_t write_attempts() const { return write_attempts_; }
  const std::vector<std::int64_t>& last_paused_filter() const { return last_paused_; }
  // Every set_customer_paused call, in order: customer row id and reason (none: resumed).
  const std::vector<std::pair<std::int64_t, std::optional<std::string>>>& pause_calls() const {
    return pause_calls_;
  }

  boost::asio::awaitable<Result<std::vector<store::OutboxRow>>> read_due_outbox(
      const std::string& owner, std::size_t limit,
      const std::vector<std::int64_t>& paused) override;
  boost::asio::awaitable<Status> apply_dispatch_writes(
      const store::DispatchWrites& writes) override;
  boost::asio::awaitable<Result<std::uint64_t>> take_over_outbox(const std::string& owner,
                                                                 std::chrono::seconds lease,
                                                                 std::size_t limit) override;
  boost::asio::awaitable<Result<std::uint64_t>> purge_dead_letters(std::chrono::hours older_than,
                                                                   std::size_t limit) override;
  boost::asio::awaitable<Result<store::OutboxStats>> outbox_stats() override;
  boost::asio::awaitable<Status> set_customer_paused(
      std::int64_t customer_id, const std::optional<std::string>& reason) override;

 private:
  std::map<std::int64_t, Customer> customers_;
  std::map<std::int64_t, Device> devices_;
  std::map<std::int64_t, Row> rows_;
  std::set<std::string> gone_;
  std::int64_t next_id_ = 1;
  int failing_writes_ = 0;
  std::size_t reads_ = 0;
  std::size_t writes_applied_ = 0;
  std::size_t write_attempts_ = 0;
  std::vector<std::int64_t> last_paused_;
  std::vector<std::pair<std::int64_t, std::optional<std::string>>> pause_calls_;
  std::vector<store::WakeDone> wakes_written_;
};

}  // namespace mp::test
