// A pool of database threads, each owning one connection: blocking Connector/C calls run here,
// never on the network threads, and results come back on the caller's executor.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/result.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

struct PoolOptions {
  std::size_t threads = 4;
  std::size_t queue_limit = 10000;  // waiting jobs beyond this are refused with Errc::busy
  // A connection idle longer than this is pinged before use, so a restarted server is noticed
  // before the job's own statements run (and the job then runs on a fresh connection).
  std::chrono::milliseconds ping_after_idle{1000};
};

// Turns an Asio completion handler (possibly move-only, e.g. a coroutine's) into a copyable
// callback that may be called from any thread: it posts the result to the handler's associated
// executor and keeps that executor's work alive until then.
template <class T, class Handler>
std::function<void(Result<T>)> completion_on_handler_executor(Handler handler) {
  auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
  auto shared = std::make_shared<Handler>(std::move(handler));
  return [shared, work](Result<T> result) mutable {
    boost::asio::post(work.get_executor(), [shared, result = std::move(result)]() mutable {
      (*shared)(std::move(result));
    });
    work.reset();
  };
}

struct PoolStats {
  std::size_t threads = 0;
  std::size_t queued = 0;
  std::size_t busy = 0;
  std::uint64_t completed = 0;
  std::uint64_t connection_failures = 0;  // jobs that found no usable connection
  std::uint64_t connects = 0;             // connections opened (first use and after a loss)
  std::uint64_t rejected = 0;
};

class DatabasePool {
 public:
  DatabasePool(ConnectionOptions connection, PoolOptions options);
  ~DatabasePool();
  DatabasePool(const DatabasePool&) = delete;
  DatabasePool& operator=(const DatabasePool&) = delete;

  template <class T>
  using Job = std::function<Result<T>(Connection&)>;

  // Runs `job` on a database thread; completes with Result<T> on the token's associated executor
  // (use boost::asio::use_awaitable from a coroutine). The job is copied: from a coroutine, pass
  // a named Job rather than a lambda, because GCC 12 destroys some temporaries of a co_await
  // expression twice.
  template <class T, class Token>
  auto async_run(const Job<T>& job, Token&& token) {
    return boost::asio::async_initiate<Token, void(Result<T>)>(
        [this](auto handler, Job<T> job) {
          this->template run_then<T>(std::move(job),
                                     completion_on_handler_executor<T>(std::move(handler)));
        },
        token, job);
  }

  // Runs `job`, then `done` with its result on that same database thread (or at once on the
  // calling thread when the pool refuses the job). `done` must be quick and must not block; it
  // hands results on (e.g. posts them to their executors) without touching a third executor.
  template <class T>
  void run_then(Job<T> job, std::function<void(Result<T>)> done) {
    submit([job = std::move(job), done = std::move(done)](Connection* conn, const Error* refused) {
      done(run_job(job, conn, refused));
    });
  }

  // Blocking form for tools and tests. Never call it from a network thread.
  template <class T>
  Result<T> run(Job<T> job) {
    auto promise = std::make_shared<std::promise<Result<T>>>();
    auto future = promise->get_future();
    submit([job = std::move(job), promise](Connection* conn, const Error* refused) {
      promise->set_value(run_job(job, conn, refused));
    });
    return future.get();
  }

  // Refuses new jobs, fails the queued ones, lets running ones finish, joins the threads.
  void stop();
  PoolStats stats() const;
  const ConnectionOptions& connection_options() const noexcept { return connection_; }

 private:
  // A task receives its thread's connection, or null and the reason it cannot run.
  using Task = std::function<void(Connection*, const Error*)>;

  template <class T>
  static Result<T> run_job(const Job<T>& job, Connection* conn, const Error* refused) {
    if (!conn) return *refused;
    try {
      return job(*conn);
    } catch (const std::exception& e) {
      return make_error(Errc::internal, std::string("database job failed: ") + e.what());
    }
  }

  void submit(Task task);
  void worker_loop();
  void note_result(bool ok);

  ConnectionOptions connection_;
  // The server (index in connection_.servers()) the pool's connections last connected to.
  std::shared_ptr<std::atomic<std::size_t>> server_choice_ =
      std::make_shared<std::atomic<std::size_t>>(0);
  PoolOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> queue_;
  bool stopping_ = false;
  PoolStats stats_;
  std::vector<std::thread> threads_;
};

}  // namespace mp::store
