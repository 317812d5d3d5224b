// Tests of DatabasePool: results on the caller's executor, limits, shutdown, and reconnection
// after the MariaDB server restarts (a private server, so the rest of the suite is undisturbed).
#include "store/database_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <future>
#include <thread>

#include "test_env.hpp"

namespace mp::store {
namespace {

Result<std::int64_t> select_one(Connection& c) {
  auto rows = c.query("SELECT 1");
  if (!rows) return std::move(rows).error();
  return (*rows)[0].i64(0);
}

// Polls `done` for up to 30 s: completions arrive on other threads.
template <class F>
bool wait_until(F done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(DatabasePool, CompletesOnTheCallersExecutorNotTheDatabaseThread) {
  test::ScratchDatabase db;
  DatabasePool pool(db.options(), {.threads = 2, .queue_limit = 100});
  boost::asio::io_context ioc;
  std::thread::id job_thread, completion_thread;
  Result<std::int64_t> got = make_error(Errc::internal, "not run");
  boost::asio::co_spawn(
      ioc,
      [&]() -> boost::asio::awaitable<void> {
        const DatabasePool::Job<std::int64_t> job = [&](Connection& c) {
          job_thread = std::this_thread::get_id();
          return select_one(c);
        };
        got = co_await pool.async_run(job, boost::asio::use_awaitable);
        completion_thread = std::this_thread::get_id();
      },
      boost::asio::detached);
  ioc.run();
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, 1);
  EXPECT_EQ(completion_thread, std::this_thread::get_id());
  EXPECT_NE(job_thread, std::this_thread::get_id());
}

TEST(DatabasePool, RunsManyJobsOnFewConnections) {
  test::ScratchDatabase db;
  DatabasePool pool(db.options(), {.threads = 3, .queue_limit = 10000});
  std::atomic<int> ok{0}, done{0};
  for (int i = 0; i < 500; ++i) {
    // A plain handler completes on the system executor.
    pool.async_run<std::int64_t>(select_one, [&](Result<std::int64_t> r) {
      if (r.ok()) ++ok;
      ++done;
    });
  }
  ASSERT_TRUE(wait_until([&] { return done.load() == 500; }));
  EXPECT_EQ(ok.load(), 500);
  // A job's handler may run before its worker has counted it: the count catches up.
  EXPECT_TRUE(wait_until([&] { return pool.stats().completed == 500u; })) << pool.stats().completed;
  const auto s = pool.stats();
  EXPECT_LE(s.connects, 3u);
}

TEST(DatabasePool, RefusesWorkBeyondTheQueueLimit) {
  test::ScratchDatabase db;
  DatabasePool pool(db.options(), {.threads = 1, .queue_limit = 2});
  std::promise<void> release;
  auto gate = release.get_future().share();
  std::atomic<int> busy{0}, done{0};
  // One job blocks the only thread, two wait, the rest are refused at once.
  for (int i = 0; i < 6; ++i) {
    pool.async_run<int>(
        [gate](Connection&) -> Result<int> {
          gate.wait();
          return 0;
        },
        [&](Result<int> r) {
          if (!r.ok() && r.error().code == Errc::busy) ++busy;
          ++done;
        });
    if (i == 0) {
      while (pool.stats().busy == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  ASSERT_TRUE(wait_until([&] { return busy.load() == 3; }));
  release.set_value();
  ASSERT_TRUE(wait_until([&] { return done.load() == 6; }));
  EXPECT_EQ(busy.load(), 3);
  EXPECT_EQ(pool.stats().rejected, 3u);
}

TEST(DatabasePool, TurnsExceptionsIntoErrorsAndFailsQueuedJobsOnStop) {
  test::ScratchDatabase db;
  DatabasePool pool(db.options(), {.threads = 1, .queue_limit = 10});
  auto thrown = pool.run<int>([](Connection&) -> Result<int> { throw std::runtime_error("boom"); });
  ASSERT_FALSE(thrown.ok());
  EXPECT_EQ(thrown.error().code, Errc::internal);
  EXPECT_NE(thrown.error().message.find("boom"), std::string::npos);
  pool.stop();
  auto after = pool.run<int>([](Connection&) -> Result<int> { return 1; });
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, Errc::unavailable);
}

TEST(DatabasePool, ReconnectsAfterTheServerRestarts) {
  test::PrivateMariadb server;
  server.start();
  DatabasePool pool(
      server.options(),
      {.threads = 2, .queue_limit = 100, .ping_after_idle = std::chrono::milliseconds(0)});
  ASSERT_TRUE(pool.run<std::int64_t>(select_one).ok());

  server.stop();
  auto down = pool.run<std::int64_t>(select_one);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.error().code, Errc::unavailable) << down.error().message;

  server.start();
  // Every thread's connection died with the server; each job must still succeed first time.
  for (int i = 0; i < 6; ++i) {
    auto up = pool.run<std::int64_t>(select_one);
    ASSERT_TRUE(up.ok()) << "attempt " << i << ": " << up.error().message;
  }
}

TEST(DatabasePool, AJobThatLosesItsConnectionFailsAndTheNextOneReconnects) {
  test::PrivateMariadb server;
  server.start();
  // No ping before use: the job itself meets the dead connection.
  DatabasePool pool(server.options(),
                    {.threads = 1, .queue_limit = 100, .ping_after_idle = std::chrono::hours(1)});
  ASSERT_TRUE(pool.run<std::int64_t>(select_one).ok());
  server.stop();
  server.start();
  auto lost = pool.run<std::int64_t>(select_one);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.error().code, Errc::unavailable);
  auto again = pool.run<std::int64_t>(select_one);
  ASSERT_TRUE(again.ok()) << again.error().message;
}

Result<std::int64_t> server_port(Connection& c) {
  auto rows = c.query("SELECT @@port");
  if (!rows) return std::move(rows).error();
  return (*rows)[0].i64(0);
}

// Two servers in one failover list, as a Galera cluster's nodes would be: a private one first
// (started here), the suite's shared one second, with the same account and password.
struct TwoServers {
  ConnectionOptions shared = test::shared_server_options();
  test::PrivateMariadb first;
  ConnectionOptions failover;

  TwoServers() {
    test::write_file(first.password_file(), shared.password);
    first.start();
    failover = shared;
    failover.database.clear();
    failover.hosts = {{"127.0.0.1", first.port()}, {shared.host, shared.port}};
  }
};

TEST(DatabasePool, FailsOverToTheNextServerAndStaysThere) {
  TwoServers servers;
  auto& [shared, first, o] = servers;
  DatabasePool pool(
      o, {.threads = 2, .queue_limit = 100, .ping_after_idle = std::chrono::milliseconds(0)});
  for (int i = 0; i < 4; ++i) {
    auto port = pool.run<std::int64_t>(server_port);
    ASSERT_TRUE(port.ok()) << port.error().message;
    EXPECT_EQ(*port, first.port());
  }

  first.stop();
  // The connection found dead before the job (ping) moves to the next server: no job fails.
  for (int i = 0; i < 4; ++i) {
    auto port = pool.run<std::int64_t>(server_port);
    ASSERT_TRUE(port.ok()) << "attempt " << i << ": " << port.error().message;
    EXPECT_EQ(*port, shared.port);
  }

  // The first server back: connections stay where they are (no flapping back and forth), and
  // one that reconnects starts with the server that worked last.
  first.start();
  for (int i = 0; i < 4; ++i) {
    auto port = pool.run<std::int64_t>(server_port);
    ASSERT_TRUE(port.ok()) << port.error().message;
    EXPECT_EQ(*port, shared.port);
  }
  Connection c(o);
  ASSERT_TRUE(c.connect().ok());
  EXPECT_EQ(*server_port(c), first.port());  // a new connection starts at the top of the list
}

TEST(DatabasePool, AConnectionThatSawNoFailureFollowsThePoolToTheNextServer) {
  // A pool's thread may run no job while its server is down; when it reconnects after the server
  // came back it must join the others on the server they moved to, not return to its own last
  // one (which split a pool over two nodes, and made the test above fail now and then).
  TwoServers servers;
  auto& [shared, first, o] = servers;
  auto choice = std::make_shared<std::atomic<std::size_t>>(0);
  Connection busy(o);
  Connection idle(o);
  busy.share_server_choice(choice);
  idle.share_server_choice(choice);
  ASSERT_TRUE(busy.connect().ok());
  ASSERT_TRUE(idle.connect().ok());
  EXPECT_EQ(*server_port(idle), first.port());

  first.stop();
  busy.close();
  ASSERT_TRUE(busy.connect().ok());
  EXPECT_EQ(*server_port(busy), shared.port);

  first.start();
  idle.close();  // as the pool does when the ping before a job fails
  ASSERT_TRUE(idle.connect().ok());
  EXPECT_EQ(*server_port(idle), shared.port) << "the idle connection went back to the first server";

  Connection alone(o);  // no shared choice: its own history only
  ASSERT_TRUE(alone.connect().ok());
  EXPECT_EQ(*server_port(alone), first.port());
}

}  // namespace
}  // namespace mp::store
