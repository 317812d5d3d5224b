// The periodic malloc_trim of mailpushd (why glibc and not jemalloc: bench/README.md, "Idle
// connection memory").
#include "app/memory.hpp"

#include <malloc.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdio>

#include "common/log.hpp"

namespace mp::app {

namespace asio = boost::asio;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerAllocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool kSanitizerAllocator = true;
#else
constexpr bool kSanitizerAllocator = false;
#endif
#else
constexpr bool kSanitizerAllocator = false;
#endif

std::size_t resident_kib() {
  std::size_t size = 0;
  std::size_t resident = 0;
  if (FILE* statm = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(statm, "%zu %zu", &size, &resident) != 2) resident = 0;
    std::fclose(statm);
  }
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) / 1024;
}

}  // namespace

void trim_freed_memory(asio::io_context& ioc, const std::atomic<bool>& stopping,
                       std::chrono::milliseconds interval) {
  if constexpr (kSanitizerAllocator) return;
  auto strand = asio::make_strand(ioc);
  asio::co_spawn(
      strand,
      [strand, &stopping, interval]() -> asio::awaitable<void> {
        asio::steady_timer timer(strand);
        while (!stopping.load()) {
          timer.expires_after(interval);
          co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
          // Every arena, not only the top of the heap: a burst's freed connections sit in the
          // middle of the network threads' arenas. The walk holds each arena's lock; its cost is
          // in bench/README.md ("Idle connection memory").
          const std::size_t before = resident_kib();
          ::malloc_trim(0);
          const std::size_t after = resident_kib();
          if (before >= after + 1024) {
            log::debug("daemon.memory_trimmed",
                       {{"rss_kib_before", before}, {"rss_kib_after", after}});
          }
        }
      },
      asio::detached);
}

}  // namespace mp::app
