// mailpushctl: the operators' tool. Each subcommand reads the region file, talks to the region's
// database, prints text (or JSON with --json) and exits with a code scripts can rely on.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "app/region_runtime.hpp"
#include "common/crypto.hpp"
#include "common/log.hpp"
#include "common/version.hpp"
#include "keys/envelope.hpp"
#include "keys/key_ring.hpp"
#include "store/customers.hpp"
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

// "30d", "12h", "90m", "3600s" or a plain number of seconds.
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
  if (ec != std::errc() || end != text.data() + text.size() || n < 0 || n > 3650LL * 86400)
    return std::nullopt;
  return std::chrono::seconds(n * unit);
}

// The operator running the tool, for the audit log.
mp::store::Actor local_actor() {
  const char* user = std::getenv("SUDO_USER");
  if (user == nullptr || *user == '\0') user = std::getenv("USER");
  return {std::string("mailpushctl:") + (user != nullptr && *user != '\0' ? user : "unknown"), ""};
}

// Connects to the region's database for a subcommand; `region` gets the region's name.
mp::Result<std::unique_ptr<mp::store::Connection>> connect(const Options& o, std::string& region) {
  auto conn_options = database_of(o, region);
  if (!conn_options) return std::move(conn_options).error();
  auto conn = std::make_unique<mp::store::Connection>(*conn_options);
  if (auto st = conn->connect(); !st) return std::move(st).error();
  return conn;
}

// A one-time onboarding code for a customer's administrator: shown once, stored as SHA-384.
int cmd_customers_invite(const Options& o, const std::string& valid_for, const std::string& note) {
  const auto duration = parse_duration(valid_for);
  if (!duration || *duration < std::chrono::minutes(5) || *duration > std::chrono::days(30)) {
    std::cerr << "mailpushctl customers invite: --valid-for must be 5m to 30d, e.g. 7d\n";
    return mp::app::kExitUsage;
  }
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, "customers invite", conn.error());
  const std::string code = mp::random_token("inv_", 24);
  auto id = mp::store::create_invite(**conn, mp::sha384(code), *duration, local_actor(), note);
  if (!id) return fail(o, "customers invite", id.error());
  if (o.json_output) {
    std::cout << json{{"region", region},
                      {"invite_id", *id},
                      {"code", code},
                      {"valid_for_seconds", duration->count()}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << "Invite " << *id << " for region " << region << ", valid for " << valid_for
              << ", usable once:\n\n  " << code
              << "\n\nGive it to the customer's administrator over a trusted channel; it is "
                 "not shown again.\n";
  }
  return mp::app::kExitOk;
}

int cmd_customers_list(const Options& o) {
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, "customers list", conn.error());
  auto customers = mp::store::list_customers(**conn);
  if (!customers) return fail(o, "customers list", customers.error());
  if (o.json_output) {
    json out = json::array();
    for (const auto& c : *customers) {
      out.push_back({{"customer_id", c.customer_id},
                     {"display_name", c.display_name},
                     {"app_id", c.app_id},
                     {"state", c.state},
                     {"created_at", c.created_at}});
    }
    std::cout << json{{"region", region}, {"customers", out}}.dump(2) << "\n";
    return mp::app::kExitOk;
  }
  std::cout << customers->size() << " customers in " << region << "\n";
  for (const auto& c : *customers) {
    std::cout << "  " << std::left << std::setw(28) << c.customer_id << std::setw(10) << c.state
              << std::setw(32) << c.app_id << c.display_name << "\n";
  }
  return mp::app::kExitOk;
}

// Credentials by expiry: what will stop sending soon, and what already has.
int cmd_certs_list(const Options& o, const std::string& within) {
  std::optional<std::int64_t> within_seconds;
  if (!within.empty()) {
    const auto d = parse_duration(within);
    if (!d) {
      std::cerr << "mailpushctl certs list: --expiring-within must be like 30d, 12h or 3600\n";
      return mp::app::kExitUsage;
    }
    within_seconds = d->count();
  }
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, "certs list", conn.error());
  auto creds = mp::store::list_credentials(**conn, within_seconds);
  if (!creds) return fail(o, "certs list", creds.error());
  const auto days_left = [](const mp::store::CredentialRow& k) {
    // Whole days left, rounded down; negative once expired.
    return k.seconds_left >= 0 ? k.seconds_left / 86400 : -((-k.seconds_left + 86399) / 86400);
  };
  const auto environments = [](const mp::store::CredentialRow& k) {
    return std::string(k.development && k.production ? "development,production"
                       : k.development               ? "development"
                                                     : "production");
  };
  if (o.json_output) {
    json out = json::array();
    for (const auto& k : *creds) {
      out.push_back({{"customer_id", k.customer_id},
                     {"topic", k.topic},
                     {"environments", environments(k)},
                     {"state", k.state},
                     {"not_after", k.not_after},
                     {"days_left", days_left(k)},
                     {"fingerprint_sha256", k.fingerprint_hex},
                     {"last_success_at",
                      k.last_success_at.empty() ? json(nullptr) : json(k.last_success_at)}});
    }
    std::cout << json{{"region", region}, {"credentials", out}}.dump(2) << "\n";
    return mp::app::kExitOk;
  }
  std::cout << creds->size() << " credentials" << (within.empty() ? "" : " ending within " + within)
            << " in " << region << "\n";
  for (const auto& k : *creds) {
    const auto days = days_left(k);
    std::cout << "  " << std::left << std::setw(28) << k.customer_id << std::setw(32) << k.topic
              << std::setw(24) << environments(k) << k.not_after << "  "
              << (days < 0 ? "EXPIRED " + std::to_string(-days) + " days ago"
                           : std::to_string(days) + " days left")
              << (days >= 0 && days < 30 ? "  (renew now)" : "") << "\n";
  }
  return mp::app::kExitOk;
}

// Which KEK wraps how many credentials: the old key may leave the key file at 0.
int cmd_kek(const Options& o, bool rotate) {
  const char* what = rotate ? "kek rotate" : "kek status";
  auto cfg =
      mp::config::load_region(o.region_file, {.check_files = false, .overrides = o.overrides});
  if (!cfg) return fail(o, what, cfg.error());
  if (!cfg->portal.kek_file) {
    return fail(o, what,
                mp::make_error(mp::Errc::invalid_argument,
                               "the region has no portal.kek_file: nothing is sealed with a key"));
  }
  auto ring = mp::keys::KeyRing::load_file(*cfg->portal.kek_file);
  if (!ring) return fail(o, what, ring.error());
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, what, conn.error());
  auto rows = mp::store::all_wrapped_keys(**conn);
  if (!rows) return fail(o, what, rows.error());

  std::size_t rewrapped = 0, current = 0, failed = 0;
  std::map<std::string, std::size_t> by_kek;
  for (const auto& row : *rows) {
    if (!rotate || row.kek_id == ring->active_id()) {
      ++by_kek[row.kek_id];
      if (row.kek_id == ring->active_id()) ++current;
      continue;
    }
    auto next = mp::keys::rewrap(*ring, {row.kek_id, row.wrapped_data_key, ""});
    if (!next) {
      ++failed;
      ++by_kek[row.kek_id];
      std::cerr << "mailpushctl kek rotate: credential " << row.credential_id << ": "
                << next.error().message << "\n";
      continue;
    }
    auto updated =
        mp::store::update_wrapped_key(**conn, row.credential_id, row.kek_id,
                                      {row.credential_id, next->kek_id, next->wrapped_data_key});
    if (!updated) return fail(o, what, updated.error());
    ++by_kek[*updated ? next->kek_id : row.kek_id];
    if (*updated) ++rewrapped;
  }
  if (rotate) {
    const json detail = {{"active_kek", ring->active_id()},
                         {"rewrapped", rewrapped},
                         {"already_current", current},
                         {"failed", failed}};
    if (auto st = mp::store::write_audit(**conn, local_actor(), "kek.rotate", std::nullopt,
                                         detail.dump());
        !st) {
      return fail(o, what, st.error());
    }
  }
  if (o.json_output) {
    json out{{"region", region}, {"active_kek", ring->active_id()}, {"credentials_by_kek", by_kek}};
    if (rotate) out.update({{"rewrapped", rewrapped}, {"failed", failed}});
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "active key " << ring->active_id() << "; credentials by key:\n";
    for (const auto& [kek, n] : by_kek) {
      std::cout << "  " << kek << "  " << n << (ring->has(kek) ? "" : "  (NOT in the key file)")
                << "\n";
    }
    if (rotate) std::cout << rewrapped << " re-wrapped, " << failed << " failed\n";
    const bool only_active =
        by_kek.size() <= 1 && (by_kek.empty() || by_kek.count(ring->active_id()));
    std::cout << (only_active ? "Keys other than the active one can now be removed from the key "
                                "file (keep a backup)."
                              : "Older keys are still in use: keep them in the key file.")
              << "\n";
  }
  return failed == 0 ? mp::app::kExitOk : mp::app::kExitFailure;
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
  auto* customers = cli.add_subcommand("customers", "Customers of the region and their onboarding");
  customers->require_subcommand(1);
  auto* invite = customers->add_subcommand(
      "invite", "Issue a one-time code that lets a customer's administrator create the customer");
  std::string valid_for = "7d";
  std::string note;
  invite->add_option("--valid-for", valid_for, "How long the code works: 5m to 30d")
      ->capture_default_str();
  invite->add_option("--note", note, "Who it is for (kept in the database and audit log)");
  auto* customers_list = customers->add_subcommand("list", "List customers and their state");
  auto* certs = cli.add_subcommand("certs", "Customers' APNs certificates");
  certs->require_subcommand(1);
  auto* certs_list =
      certs->add_subcommand("list", "List active and expired certificates, soonest expiry first");
  std::string within;
  certs_list->add_option("--expiring-within", within,
                         "Only those ending within this time (30d, 12h, ...); expired included");
  auto* kek = cli.add_subcommand("kek", "The region's key-encryption keys (portal.kek_file)");
  kek->require_subcommand(1);
  auto* kek_rotate = kek->add_subcommand(
      "rotate",
      "Re-wrap every credential's data key under the key file's active key (after "
      "scripts/make-kek.sh --add); the sealed material is not touched");
  auto* kek_status = kek->add_subcommand("status", "How many credentials each key wraps");
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
  if (invite->parsed()) return cmd_customers_invite(o, valid_for, note);
  if (customers_list->parsed()) return cmd_customers_list(o);
  if (certs_list->parsed()) return cmd_certs_list(o, within);
  if (kek_rotate->parsed()) return cmd_kek(o, true);
  if (kek_status->parsed()) return cmd_kek(o, false);
  return mp::app::kExitUsage;
}
