// Structured logging: one JSON object per line, with a stable dotted event name and fields.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace mp::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

bool parse_level(std::string_view text, Level& out) noexcept;
void set_level(Level level) noexcept;
Level level() noexcept;
bool enabled(Level level) noexcept;

// Fields added to every record (region, instance); set once at start-up.
void set_static_field(const std::string& key, nlohmann::json value);

// Replaces stderr as the destination of complete lines (tests capture output this way).
using Sink = std::function<void(std::string_view line)>;
void set_sink(Sink sink);

// Never pass a secret (password, key, registration secret, full device token) as a field.
void write(Level level, std::string_view event, nlohmann::json fields = nlohmann::json::object());

inline void debug(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  if (enabled(Level::debug)) write(Level::debug, event, std::move(fields));
}
inline void info(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  write(Level::info, event, std::move(fields));
}
inline void warn(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  write(Level::warn, event, std::move(fields));
}
inline void error(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
  write(Level::error, event, std::move(fields));
}

// For lines any client can cause (refused requests): at most `burst` at once and `per_second`
// after that; the lines held back are counted and the next line let through carries the count
// as "suppressed", so a flood costs a few lines a second and still shows its size.
class Throttle {
 public:
  explicit Throttle(double per_second = 5, double burst = 20);
  // Writes the line, or holds it back.
  void write(Level level, std::string_view event, nlohmann::json fields);

 private:
  std::mutex mutex_;
  double per_second_;
  double burst_;
  double tokens_;
  std::int64_t updated_ns_ = 0;
  std::uint64_t suppressed_ = 0;
};

}  // namespace mp::log
