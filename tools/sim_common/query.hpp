// What the simulators' control APIs share: a count from a request's query string.
#pragma once

#include <charconv>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sim_common {

// The value of `key` in a query string "a=1&b=2", parsed as a count; `fallback` when absent;
// std::invalid_argument when it is not a whole number.
inline std::uint64_t query_count(std::string_view query, std::string_view key,
                                 std::uint64_t fallback) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const auto eq = pair.find('=');
    if (eq == std::string_view::npos || pair.substr(0, eq) != key) continue;
    const std::string_view v = pair.substr(eq + 1);
    std::uint64_t out = 0;
    const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (ec != std::errc{} || ptr != v.data() + v.size()) {
      throw std::invalid_argument(std::string(key) + ": want a count");
    }
    return out;
  }
  return fallback;
}

}  // namespace sim_common
