// DispatchStore on MariaDB: each call is one job on the database pool running its namesake in
// outbox.hpp.
#pragma once

#include "store/database_pool.hpp"
#include "store/dispatch_store.hpp"

namespace mp::store {

class MariadbDispatchStore final : public DispatchStore {
 public:
  explicit MariadbDispatchStore(DatabasePool& pool) : pool_(pool) {}

  boost::asio::awaitable<Result<std::vector<OutboxRow>>> read_due_outbox(
      const std::string& owner, std::size_t limit,
      const std::vector<std::int64_t>& paused) override;
  boost::asio::awaitable<Status> apply_dispatch_writes(const DispatchWrites& writes) override;
  boost::asio::awaitable<Result<std::uint64_t>> take_over_outbox(const std::string& owner,
                                                                 std::chrono::seconds lease,
                                                                 std::size_t limit) override;
  boost::asio::awaitable<Result<std::uint64_t>> purge_dead_letters(std::chrono::hours older_than,
                                                                   std::size_t limit) override;
  boost::asio::awaitable<Result<OutboxStats>> outbox_stats() override;
  boost::asio::awaitable<Status> set_customer_paused(
      std::int64_t customer_id, const std::optional<std::string>& reason) override;

 private:
  DatabasePool& pool_;
};

}  // namespace mp::store
