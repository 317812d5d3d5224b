// The dispatcher's jobs on the database pool.
#include "store/mariadb_dispatch_store.hpp"

#include <boost/asio/use_awaitable.hpp>

namespace mp::store {
namespace asio = boost::asio;

namespace {

// A Status job as a Result<bool> one, the form every job of the pool has.
DatabasePool::Job<bool> status_job(std::function<Status(Connection&)> run) {
  return [run = std::move(run)](Connection& c) -> Result<bool> {
    if (auto st = run(c); !st) return std::move(st).error();
    return true;
  };
}

Status to_status(Result<bool> done) {
  if (!done) return std::move(done).error();
  return {};
}

}  // namespace

asio::awaitable<Result<std::vector<OutboxRow>>> MariadbDispatchStore::read_due_outbox(
    const std::string& owner, std::size_t limit, const std::vector<std::int64_t>& paused) {
  // Copies: the job may outlive a frame destroyed by a forced stop.
  const DatabasePool::Job<std::vector<OutboxRow>> job = [owner, limit, paused](Connection& c) {
    return store::read_due_outbox(c, owner, limit, paused);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Status> MariadbDispatchStore::apply_dispatch_writes(const DispatchWrites& writes) {
  // By reference, as the round's writes can be large: the dispatcher keeps them until it ends.
  const DatabasePool::Job<bool> job =
      status_job([&writes](Connection& c) { return store::apply_dispatch_writes(c, writes); });
  co_return to_status(co_await pool_.async_run(job, asio::use_awaitable));
}

asio::awaitable<Result<std::uint64_t>> MariadbDispatchStore::take_over_outbox(
    const std::string& owner, std::chrono::seconds lease, std::size_t limit) {
  const DatabasePool::Job<std::uint64_t> job = [owner, lease, limit](Connection& c) {
    return store::take_over_outbox(c, owner, lease, limit);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::uint64_t>> MariadbDispatchStore::purge_dead_letters(
    std::chrono::hours older_than, std::size_t limit) {
  const DatabasePool::Job<std::uint64_t> job = [older_than, limit](Connection& c) {
    return store::purge_dead_letters(c, older_than, limit);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<OutboxStats>> MariadbDispatchStore::outbox_stats() {
  const DatabasePool::Job<OutboxStats> job = [](Connection& c) { return store::outbox_stats(c); };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Status> MariadbDispatchStore::set_customer_paused(
    std::int64_t customer_id, const std::optional<std::string>& reason) {
  const DatabasePool::Job<bool> job = status_job([customer_id, reason](Connection& c) {
    return store::set_customer_paused(c, customer_id, reason);
  });
  co_return to_status(co_await pool_.async_run(job, asio::use_awaitable));
}

}  // namespace mp::store
