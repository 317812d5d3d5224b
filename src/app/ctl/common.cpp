// mailpushctl: errors, the region's database, durations and the audit actor.
#include <charconv>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/ctl/ctl.hpp"

namespace mp::ctl {

int exit_code_for(const Error& e) {
  switch (e.code) {
    case Errc::unavailable:
      return app::kExitDatabaseUnavailable;
    case Errc::conflict:
      return app::kExitSchemaConflict;
    case Errc::invalid_argument:
      return app::kExitConfig;
    case Errc::not_found:
      return app::kExitNotFound;
    default:
      return app::kExitFailure;
  }
}

int fail(const Options& o, const std::string& what, const Error& e) {
  if (o.json_output) {
    std::cout
        << nlohmann::json{{"ok", false}, {"error", e.message}, {"kind", errc_name(e.code)}}.dump(2)
        << "\n";
  } else {
    std::cerr << "mailpushctl " << what << ": " << e.message << "\n";
  }
  return exit_code_for(e);
}

int usage(const std::string& what, const std::string& message) {
  std::cerr << "mailpushctl " << what << ": " << message << "\n";
  return app::kExitUsage;
}

Result<config::RegionConfig> load_region(const Options& o) {
  return config::load_region(o.region_file, {.check_files = false, .overrides = o.overrides});
}

Result<store::ConnectionOptions> database_of(const Options& o, std::string& region) {
  auto cfg = load_region(o);
  if (!cfg) return std::move(cfg).error();
  region = cfg->region;
  return app::connection_options(cfg->database);
}

Result<std::unique_ptr<store::Connection>> connect(const config::RegionConfig& cfg) {
  auto conn_options = app::connection_options(cfg.database);
  if (!conn_options) return std::move(conn_options).error();
  auto conn = std::make_unique<store::Connection>(*conn_options);
  if (auto st = conn->connect(); !st) return std::move(st).error();
  return conn;
}

Result<std::unique_ptr<store::Connection>> connect(const Options& o, std::string& region) {
  auto cfg = load_region(o);
  if (!cfg) return std::move(cfg).error();
  region = cfg->region;
  return connect(*cfg);
}

Result<std::int64_t> count(store::Connection& c, const std::string& sql) {
  auto rows = c.query(sql);
  if (!rows) return std::move(rows).error();
  return rows->empty() ? 0 : rows->front().i64(0);
}

std::optional<std::chrono::seconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t unit = 1;
  switch (text.back()) {
    case 'd':
      unit = 86400;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'm':
      unit = 60;
      break;
    case 's':
      unit = 1;
      break;
    default:
      unit = 0;
  }
  if (unit != 0) text.remove_suffix(1);
  if (unit == 0) unit = 1;
  std::int64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  constexpr std::int64_t kMaxSeconds = 3650LL * 86400;
  if (ec != std::errc() || end != text.data() + text.size() || n < 0 || n > kMaxSeconds / unit)
    return std::nullopt;
  return std::chrono::seconds(n * unit);
}

store::Actor local_actor() {
  const char* user = std::getenv("SUDO_USER");
  if (user == nullptr || *user == '\0') user = std::getenv("USER");
  return {std::string("mailpushctl:") + (user != nullptr && *user != '\0' ? user : "unknown"), ""};
}

Result<store::CustomerRow> customer_named(store::Connection& conn, const std::string& customer_id) {
  auto found = store::find_customer(conn, customer_id);
  if (!found) return std::move(found).error();
  if (!*found) {
    return make_error(Errc::not_found, "no customer " + customer_id +
                                           " in this region (mailpushctl customers list shows "
                                           "them; Customer IDs start with the region's prefix)");
  }
  return std::move(**found);
}

}  // namespace mp::ctl
