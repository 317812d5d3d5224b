// mailpushctl: the operators' tool. Each subcommand reads the region file, talks to the region's
// database, prints text (or JSON with --json) and exits with a code scripts can rely on.
#include <CLI/CLI.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "app/region_runtime.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "store/mariadb.hpp"
#include "store/migrations.hpp"
#include "store/registrations.hpp"

namespace {

using mp::app::ExitCode;
using nlohmann::json;

struct Options {
  std::string region_file;
  std::vector<std::string> overrides;
  bool json_output = false;
};

int exit_code_for(const mp::Error& e) {
  switch (e.code) {
    case mp::Errc::unavailable:
      return mp::app::kExitDatabaseUnavailable;
    case mp::Errc::conflict:
      return mp::app::kExitSchemaConflict;
    case mp::Errc::invalid_argument:
      return mp::app::kExitConfig;
    default:
      return mp::app::kExitFailure;
  }
}

int fail(const Options& o, const std::string& what, const mp::Error& e) {
  if (o.json_output) {
    std::cout << json{{"ok", false}, {"error", e.message}, {"kind", mp::errc_name(e.code)}}.dump(2)
              << "\n";
  } else {
    std::cerr << "mailpushctl " << what << ": " << e.message << "\n";
  }
  return exit_code_for(e);
}

// Loads the region (without requiring the listener's TLS files) and connects to its database.
mp::Result<mp::store::ConnectionOptions> database_of(const Options& o, std::string& region) {
  auto cfg =
      mp::config::load_region(o.region_file, {.check_files = false, .overrides = o.overrides});
  if (!cfg) return std::move(cfg).error();
  region = cfg->region;
  return mp::app::connection_options(cfg->database);
}

std::string join_versions(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

int cmd_migrate(const Options& o) {
  std::string region;
  auto conn_options = database_of(o, region);
  if (!conn_options) return fail(o, "migrate", conn_options.error());
  mp::store::Connection conn(*conn_options);
  if (auto st = conn.connect(); !st) return fail(o, "migrate", st.error());
  auto report = mp::store::migrate(conn);
  if (!report) return fail(o, "migrate", report.error());
  if (o.json_output) {
    std::cout << json{{"ok", true},
                      {"region", region},
                      {"from_version", report->from_version},
                      {"to_version", report->to_version},
                      {"applied", report->applied}}
                     .dump(2)
              << "\n";
  } else if (report->applied.empty()) {
    std::cout << "schema of " << conn_options->describe() << " is up to date at version "
              << report->to_version << "\n";
  } else {
    std::cout << "migrated " << conn_options->describe() << " from version " << report->from_version
              << " to " << report->to_version << " (applied " << join_versions(report->applied)
              << ")\n";
  }
  return mp::app::kExitOk;
}

mp::Result<std::int64_t> count(mp::store::Connection& c, const std::string& sql) {
  auto rows = c.query(sql);
  if (!rows) return std::move(rows).error();
  return rows->empty() ? 0 : rows->front().i64(0);
}

int cmd_status(const Options& o) {
  std::string region;
  auto conn_options = database_of(o, region);
  if (!conn_options) return fail(o, "status", conn_options.error());
  json out{{"region", region}, {"database", {{"target", conn_options->describe()}}}};
  mp::store::Connection conn(*conn_options);
  if (auto st = conn.connect(); !st) {
    out["database"]["reachable"] = false;
    out["database"]["error"] = st.error().message;
    if (o.json_output)
      std::cout << out.dump(2) << "\n";
    else
      std::cout << "region    " << region << "\ndatabase  " << st.error().message << "\n";
    return exit_code_for(st.error());
  }
  out["database"]["reachable"] = true;
  out["database"]["server_version"] = conn.server_version();
  auto state = mp::store::read_schema_state(conn);
  if (!state) return fail(o, "status", state.error());
  out["schema"] = {{"current_version", state->current_version},
                   {"known_version", state->known_version},
                   {"pending", state->pending},
                   {"problems", state->problems}};

  if (state->current_version >= 1) {
    const std::pair<const char*, const char*> counts[] = {
        {"customers", "SELECT COUNT(*) FROM customers WHERE state <> 'deleted'"},
        {"credentials_active", "SELECT COUNT(*) FROM credentials WHERE state = 'active'"},
        {"devices_active", "SELECT COUNT(*) FROM devices WHERE state = 'active'"},
        {"registrations_active", "SELECT COUNT(*) FROM registrations WHERE state = 'active'"},
        {"outbox_queued", "SELECT COUNT(*) FROM outbox WHERE state = 'queued'"},
        {"outbox_dead", "SELECT COUNT(*) FROM outbox WHERE state = 'dead'"},
    };
    for (const auto& [name, sql] : counts) {
      auto n = count(conn, sql);
      if (!n) return fail(o, "status", n.error());
      out["counts"][name] = *n;
    }
  }
  if (state->current_version >= 2) {
    auto rows = conn.query(
        "SELECT instance_id, host_name, version, DATE_FORMAT(started_at, '%Y-%m-%dT%H:%i:%sZ'), "
        "DATE_FORMAT(heartbeat_at, '%Y-%m-%dT%H:%i:%sZ'), "
        "TIMESTAMPDIFF(SECOND, heartbeat_at, UTC_TIMESTAMP(6)), stopped_at IS NOT NULL "
        "FROM instances WHERE heartbeat_at > UTC_TIMESTAMP(6) - INTERVAL 1 DAY ORDER BY "
        "heartbeat_at DESC");
    if (!rows) return fail(o, "status", rows.error());
    out["instances"] = json::array();
    for (const auto& r : *rows) {
      const bool stopped = r.i64(6) != 0;
      const bool alive = !stopped && r.i64(5) <= 30;  // heartbeats come every 10 s
      out["instances"].push_back({{"id", r.text(0)},
                                  {"host", r.text(1)},
                                  {"version", r.text(2)},
                                  {"started_at", r.text(3)},
                                  {"heartbeat_at", r.text(4)},
                                  {"state", stopped ? "stopped"
                                            : alive ? "alive"
                                                    : "silent"}});
    }
  }

  const std::string problem = mp::app::readiness_problem(*state);
  out["ready"] = problem.empty();
  if (o.json_output) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "region     " << region << "\n"
              << "database   " << conn_options->describe() << ": reachable, MariaDB "
              << conn.server_version() << "\n"
              << "schema     version " << state->current_version << " of " << state->known_version;
    if (!problem.empty()) std::cout << " -- " << problem;
    std::cout << "\n";
    if (out.contains("counts")) {
      const auto& c = out["counts"];
      std::cout << "customers  " << c["customers"] << " (" << c["credentials_active"]
                << " active credentials)\n"
                << "devices    " << c["devices_active"] << " active, " << c["registrations_active"]
                << " active registrations\n"
                << "outbox     " << c["outbox_queued"] << " queued, " << c["outbox_dead"]
                << " dead\n";
    }
    if (out.contains("instances")) {
      std::cout << "instances  " << out["instances"].size() << " seen in the last day\n";
      for (const auto& i : out["instances"]) {
        std::cout << "  " << i["id"].get<std::string>() << "  " << i["state"].get<std::string>()
                  << "  heartbeat " << i["heartbeat_at"].get<std::string>() << "  version "
                  << i["version"].get<std::string>() << "\n";
      }
    }
  }
  if (state->newer_than_binary() || !state->problems.empty()) return mp::app::kExitSchemaConflict;
  if (!state->pending.empty()) return mp::app::kExitMigrationPending;
  return mp::app::kExitOk;
}

// Registrations whose Exchange subscription went quiet: the app must subscribe again.
int cmd_subscriptions(const Options& o, bool silent_only, std::size_t limit) {
  std::string region;
  auto conn_options = database_of(o, region);
  if (!conn_options) return fail(o, "subscriptions", conn_options.error());
  mp::store::Connection conn(*conn_options);
  if (auto st = conn.connect(); !st) return fail(o, "subscriptions", st.error());
  auto silent = mp::store::count_silent_subscriptions(conn);
  if (!silent) return fail(o, "subscriptions", silent.error());
  auto active = count(conn, "SELECT COUNT(*) FROM registrations WHERE state = 'active'");
  if (!active) return fail(o, "subscriptions", active.error());
  std::vector<mp::store::SilentSubscription> list;
  if (silent_only) {
    auto rows = mp::store::list_silent_subscriptions(conn, limit);
    if (!rows) return fail(o, "subscriptions", rows.error());
    list = std::move(*rows);
  }
  if (o.json_output) {
    json out{{"region", region}, {"active", *active}, {"silent_count", *silent}};
    if (silent_only) {
      out["silent"] = json::array();
      for (const auto& s : list) {
        out["silent"].push_back(
            {{"registration_id", s.registration_id},
             {"customer_id", s.customer_id},
             {"device", s.device},
             {"environment", s.environment},
             {"last_heard_at", s.last_heard_at.empty() ? json(nullptr) : json(s.last_heard_at)},
             {"status_frequency_minutes", s.status_frequency_minutes},
             {"silent_seconds", s.silent_seconds}});
      }
    }
    std::cout << out.dump(2) << "\n";
    return mp::app::kExitOk;
  }
  std::cout << *active << " active subscriptions, " << *silent
            << " silent (not heard from for over 2 x their StatusFrequency)\n";
  if (silent_only && !list.empty()) {
    std::cout << "registration  customer              device               env          last heard "
                 "           silent for\n";
    for (const auto& s : list) {
      std::cout << s.registration_id << "  " << s.customer_id << "  " << s.device << "  "
                << s.environment << "  " << (s.last_heard_at.empty() ? "never" : s.last_heard_at)
                << "  " << s.silent_seconds / 60 << " min (frequency " << s.status_frequency_minutes
                << " min)\n";
    }
    if (list.size() == limit) std::cout << "(first " << limit << " shown; --limit N for more)\n";
    std::cout << "Each needs the app to subscribe again; if many are silent at once, check that "
                 "Exchange can reach the listener (firewall, proxy, certificate).\n";
  }
  return mp::app::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{
      "mailpushctl: operate a mailpush region.\n"
      "Exit codes: 0 ok, 1 failure, 2 usage, 3 database unreachable, 4 schema conflict,\n"
      "5 migrations pending (status), 78 configuration invalid.",
      "mailpushctl"};
  Options o;
  cli.add_option("--region", o.region_file, "Region configuration file, e.g. regions/dev.json")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--set", o.overrides, "Override a setting: --set database.port=3310 (repeatable)");
  cli.add_flag("--json", o.json_output, "Print JSON instead of text");
  cli.set_version_flag("--version", mp::version_line("mailpushctl"));
  cli.require_subcommand(1);
  auto* migrate = cli.add_subcommand(
      "migrate", "Apply pending schema migrations (idempotent; refuses a newer schema)");
  auto* status = cli.add_subcommand(
      "status", "Show the database, schema version, instances and queue of the region");
  auto* subscriptions = cli.add_subcommand(
      "subscriptions", "Count subscriptions; --silent lists those Exchange has stopped calling");
  bool silent_only = false;
  std::size_t limit = 100;
  subscriptions->add_flag("--silent", silent_only,
                          "List registrations not heard from for over 2 x their StatusFrequency");
  subscriptions->add_option("--limit", limit, "At most this many rows")
      ->check(CLI::Range(1, 100000));
  // Logs of the library code go to stderr as JSON; keep the tool's own output readable.
  mp::log::set_level(mp::log::Level::warn);
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);
    return rc == 0 ? 0 : mp::app::kExitUsage;
  }
  if (migrate->parsed()) return cmd_migrate(o);
  if (status->parsed()) return cmd_status(o);
  if (subscriptions->parsed()) return cmd_subscriptions(o, silent_only, limit);
  return mp::app::kExitUsage;
}
