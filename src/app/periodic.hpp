// Background work that repeats: run a step, wait, run it again, until the process stops.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <functional>

namespace mp::app {

using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;

// Runs `step` on `strand` at once and then `interval` after each run ends, until `stopping` is
// set (checked before each run). Steps of one strand never overlap. `stopping` must outlive the
// io_context's run.
void repeat_on(Strand strand, const std::atomic<bool>& stopping,
               std::chrono::steady_clock::duration interval,
               std::function<boost::asio::awaitable<void>()> step);

}  // namespace mp::app
