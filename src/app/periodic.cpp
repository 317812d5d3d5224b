// Implementation of periodic.hpp.
#include "app/periodic.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <utility>

namespace mp::app {
namespace asio = boost::asio;

namespace {

asio::awaitable<void> repeat(Strand strand, const std::atomic<bool>& stopping,
                             std::chrono::steady_clock::duration interval,
                             std::function<asio::awaitable<void>()> step) {
  asio::steady_timer timer(strand);
  while (!stopping.load()) {
    co_await step();
    timer.expires_after(interval);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

}  // namespace

void repeat_on(Strand strand, const std::atomic<bool>& stopping,
               std::chrono::steady_clock::duration interval,
               std::function<asio::awaitable<void>()> step) {
  asio::co_spawn(strand, repeat(strand, stopping, interval, std::move(step)), asio::detached);
}

}  // namespace mp::app
