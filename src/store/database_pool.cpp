// Worker threads of DatabasePool: take a job, make sure the thread's connection is alive, run it.
#include "store/database_pool.hpp"

#include <mysql.h>

#include "common/log.hpp"

namespace mp::store {

DatabasePool::DatabasePool(ConnectionOptions connection, PoolOptions options)
    : connection_(std::move(connection)), options_(options) {
  if (options_.threads == 0) options_.threads = 1;
  stats_.threads = options_.threads;
  // Creates the library's global state before several threads use it.
  Connection warmup(connection_);
  threads_.reserve(options_.threads);
  for (std::size_t i = 0; i < options_.threads; ++i)
    threads_.emplace_back([this] { worker_loop(); });
}

DatabasePool::~DatabasePool() {
  stop();
}

void DatabasePool::submit(Task task) {
  Error refused;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) {
      refused = make_error(Errc::unavailable, "database pool is shutting down");
    } else if (queue_.size() >= options_.queue_limit) {
      ++stats_.rejected;
      refused = make_error(Errc::busy, "database queue is full (" +
                                           std::to_string(options_.queue_limit) + " waiting jobs)");
    } else {
      queue_.push_back(std::move(task));
      wake_.notify_one();
      return;
    }
  }
  task(nullptr, &refused);
}

void DatabasePool::stop() {
  std::deque<Task> abandoned;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    abandoned.swap(queue_);
  }
  wake_.notify_all();
  const Error refused = make_error(Errc::unavailable, "database pool is shutting down");
  for (auto& task : abandoned) task(nullptr, &refused);
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

PoolStats DatabasePool::stats() const {
  std::lock_guard lock(mutex_);
  PoolStats s = stats_;
  s.queued = queue_.size();
  return s;
}

void DatabasePool::note_result(bool ok) {
  std::lock_guard lock(mutex_);
  --stats_.busy;
  ++stats_.completed;
  if (!ok) ++stats_.connection_failures;
}

void DatabasePool::worker_loop() {
  mysql_thread_init();
  Connection conn(connection_);
  conn.share_server_choice(server_choice_);
  std::string last_server;  // to log when this thread's connection moves to another node
  auto last_used = std::chrono::steady_clock::now();
  for (;;) {
    Task task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) break;  // stopping and nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
      ++stats_.busy;
    }

    // An idle connection may have died with a server restart: find out before the job runs.
    const auto now = std::chrono::steady_clock::now();
    if (conn.connected() && now - last_used > options_.ping_after_idle && !conn.ping()) {
      log::warn("db.connection_lost",
                {{"database", connection_.describe()}, {"server", conn.server()}});
      conn.close();
    }
    if (!conn.connected()) {
      if (auto st = conn.connect(); !st) {
        task(nullptr, &st.error());
        note_result(false);
        continue;
      }
      if (!last_server.empty() && conn.server() != last_server) {
        log::warn(
            "db.failover",
            {{"database", connection_.describe()}, {"from", last_server}, {"to", conn.server()}});
      }
      last_server = conn.server();
      std::lock_guard lock(mutex_);
      ++stats_.connects;
    }

    bool ok = true;
    task(&conn, nullptr);
    if (conn.broken()) {
      ok = false;
      log::warn("db.connection_lost",
                {{"database", connection_.describe()}, {"server", conn.server()}});
      conn.close();
    }
    last_used = std::chrono::steady_clock::now();
    note_result(ok);
  }
  conn.close();
  mysql_thread_end();
}

}  // namespace mp::store
