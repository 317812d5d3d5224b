// What the dispatcher reads and writes (store/outbox.hpp): its due outbox rows, the results of a
// round, take-over of gone instances' rows, dead-letter upkeep, the outbox figures and paused
// customers. MariadbDispatchStore is the store; tests use an in-memory one.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "store/outbox.hpp"

namespace mp::store {

// Each function is its namesake in outbox.hpp. Arguments are references: callers co_await at
// once and keep them alive meanwhile.
class DispatchStore {
 public:
  virtual ~DispatchStore() = default;
  virtual boost::asio::awaitable<Result<std::vector<OutboxRow>>> read_due_outbox(
      const std::string& owner, std::size_t limit, const std::vector<std::int64_t>& paused) = 0;
  virtual boost::asio::awaitable<Status> apply_dispatch_writes(const DispatchWrites& writes) = 0;
  virtual boost::asio::awaitable<Result<std::uint64_t>> take_over_outbox(const std::string& owner,
                                                                         std::chrono::seconds lease,
                                                                         std::size_t limit) = 0;
  virtual boost::asio::awaitable<Result<std::uint64_t>> purge_dead_letters(
      std::chrono::hours older_than, std::size_t limit) = 0;
  virtual boost::asio::awaitable<Result<OutboxStats>> outbox_stats() = 0;
  virtual boost::asio::awaitable<Status> set_customer_paused(
      std::int64_t customer_id, const std::optional<std::string>& reason) = 0;
};

}  // namespace mp::store
