// JSON-lines logger: a whole line is built first, then written with one call under a lock.
#include "common/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace mp::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::info)};

struct State {
  std::mutex mutex;
  nlohmann::json static_fields = nlohmann::json::object();
  Sink sink;
};

State& state() {
  static State s;
  return s;
}

const char* level_name(Level level) {
  switch (level) {
    case Level::debug:
      return "debug";
    case Level::info:
      return "info";
    case Level::warn:
      return "warn";
    case Level::error:
      return "error";
  }
  return "info";
}

std::string utc_timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto secs = time_point_cast<seconds>(now);
  const auto millis = duration_cast<milliseconds>(now - secs).count();
  const std::time_t t = system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(millis));
  return buf;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n <= 0) return;  // nowhere left to report a logging failure
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

bool parse_level(std::string_view text, Level& out) noexcept {
  if (text == "debug")
    out = Level::debug;
  else if (text == "info")
    out = Level::info;
  else if (text == "warn")
    out = Level::warn;
  else if (text == "error")
    out = Level::error;
  else
    return false;
  return true;
}

void set_level(Level level) noexcept {
  g_level.store(static_cast<int>(level));
}
Level level() noexcept {
  return static_cast<Level>(g_level.load());
}
bool enabled(Level l) noexcept {
  return static_cast<int>(l) >= g_level.load();
}

void set_static_field(const std::string& key, nlohmann::json value) {
  std::lock_guard lock(state().mutex);
  state().static_fields[key] = std::move(value);
}

void set_sink(Sink sink) {
  std::lock_guard lock(state().mutex);
  state().sink = std::move(sink);
}

void write(Level l, std::string_view event, nlohmann::json fields) {
  if (!enabled(l)) return;
  nlohmann::json record = nlohmann::json::object();
  record["ts"] = utc_timestamp();
  record["level"] = level_name(l);
  record["event"] = event;
  State& s = state();
  std::lock_guard lock(s.mutex);
  for (const auto& [k, v] : s.static_fields.items()) record[k] = v;
  if (fields.is_object()) {
    for (auto& [k, v] : fields.items()) record[k] = std::move(v);
  } else if (!fields.is_null()) {
    record["detail"] = std::move(fields);
  }
  // Replace invalid UTF-8 rather than throw: a log line must never take the process down.
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  if (s.sink) {
    s.sink(line);
  } else {
    write_all(STDERR_FILENO, line);
  }
}

Throttle::Throttle(double per_second, double burst)
    : per_second_(per_second), burst_(burst), tokens_(burst) {}

void Throttle::write(Level level, std::string_view event, nlohmann::json fields) {
  if (!enabled(level)) return;
  std::uint64_t held_back = 0;
  {
    std::lock_guard lock(mutex_);
    const std::int64_t now = std::chrono::steady_clock::now().time_since_epoch().count();
    if (updated_ns_ != 0) {
      tokens_ =
          std::min(burst_, tokens_ + static_cast<double>(now - updated_ns_) * 1e-9 * per_second_);
    }
    updated_ns_ = now;
    if (tokens_ < 1) {
      ++suppressed_;
      return;
    }
    tokens_ -= 1;
    held_back = suppressed_;
    suppressed_ = 0;
  }
  if (held_back > 0) fields["suppressed"] = held_back;
  log::write(level, event, std::move(fields));
}

}  // namespace mp::log
