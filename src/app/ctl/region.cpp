// mailpushctl: the region's schema, status, subscriptions, customers, credentials and keys.
#include <iomanip>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "app/ctl/ctl.hpp"
#include "common/crypto.hpp"
#include "keys/envelope.hpp"
#include "keys/key_ring.hpp"
#include "store/customers.hpp"
#include "store/migrations.hpp"
#include "store/outbox.hpp"
#include "store/registrations.hpp"

namespace mp::ctl {

using nlohmann::json;

namespace {

std::string join_versions(const std::vector<int>& v) {
  std::string s;
  for (int x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

}  // namespace

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

namespace {

// The counts of `mailpushctl status` that the schema at `state` has the columns for.
Result<json> status_counts(mp::store::Connection& conn, const mp::store::SchemaState& state) {
  json counts = json::object();
  if (state.current_version >= 1) {
    const std::pair<const char*, const char*> queries[] = {
        {"customers", "SELECT COUNT(*) FROM customers WHERE state <> 'deleted'"},
        {"credentials_active", "SELECT COUNT(*) FROM credentials WHERE state = 'active'"},
        {"devices_active", "SELECT COUNT(*) FROM devices WHERE state = 'active'"},
        {"registrations_active", "SELECT COUNT(*) FROM registrations WHERE state = 'active'"},
        {"outbox_queued", "SELECT COUNT(*) FROM registrations WHERE badge_owner IS NOT NULL"},
        {"outbox_dead", "SELECT COUNT(*) FROM outbox WHERE state = 'dead'"},
    };
    for (const auto& [name, sql] : queries) {
      auto n = count(conn, sql);
      if (!n) return std::move(n).error();
      counts[name] = *n;
    }
    if (state.current_version >= 7) {
      // Listener URLs from before capabilities (limits.refuse_untagged_secrets: see there).
      auto n = count(conn,
                     "SELECT COUNT(*) FROM registrations WHERE state = 'active' AND "
                     "secret_tagged = 0");
      if (!n) return std::move(n).error();
      counts["registrations_untagged"] = *n;
    }
    auto outbox = mp::store::outbox_stats(conn);
    if (!outbox) return std::move(outbox).error();
    counts["outbox_oldest_queued_seconds"] = outbox->oldest_queued_seconds;
    auto expiry = conn.query(
        "SELECT COALESCE(SUM(k.not_after <= UTC_TIMESTAMP()), 0), COALESCE(SUM(k.not_after > "
        "UTC_TIMESTAMP() AND k.not_after <= UTC_TIMESTAMP() + INTERVAL 30 DAY), 0) FROM "
        "credentials k JOIN customers c ON c.id = k.customer_id WHERE c.state = 'active' AND "
        "k.state IN ('active', 'expired')");
    if (!expiry) return std::move(expiry).error();
    counts["credentials_expired"] = expiry->empty() ? 0 : expiry->front().i64(0);
    counts["credentials_expiring_30d"] = expiry->empty() ? 0 : expiry->front().i64(1);
  }
  if (state.current_version >= 6) {  // silent_after arrived with migration 6
    auto silent = mp::store::count_silent_subscriptions(conn);
    if (!silent) return std::move(silent).error();
    counts["subscriptions_silent"] = *silent;
  }
  return counts;
}

// The instances that sent a heartbeat in the last day, alive, silent or stopped.
Result<json> status_instances(mp::store::Connection& conn) {
  auto rows = conn.query(
      "SELECT instance_id, host_name, version, DATE_FORMAT(started_at, '%Y-%m-%dT%H:%i:%sZ'), "
      "DATE_FORMAT(heartbeat_at, '%Y-%m-%dT%H:%i:%sZ'), "
      "TIMESTAMPDIFF(SECOND, heartbeat_at, UTC_TIMESTAMP(6)), stopped_at IS NOT NULL "
      "FROM instances WHERE heartbeat_at > UTC_TIMESTAMP(6) - INTERVAL 1 DAY ORDER BY "
      "heartbeat_at DESC");
  if (!rows) return std::move(rows).error();
  json instances = json::array();
  for (const auto& r : *rows) {
    const bool stopped = r.i64(6) != 0;
    const bool alive = !stopped && r.i64(5) <= 30;  // heartbeats come every 10 s
    instances.push_back({{"id", r.text(0)},
                         {"host", r.text(1)},
                         {"version", r.text(2)},
                         {"started_at", r.text(3)},
                         {"heartbeat_at", r.text(4)},
                         {"state", stopped ? "stopped"
                                   : alive ? "alive"
                                           : "silent"}});
  }
  return instances;
}

void print_status_text(const json& out, const std::string& region, const std::string& target,
                       const std::string& server_version, const mp::store::SchemaState& state,
                       const std::string& problem) {
  std::cout << "region     " << region << "\n"
            << "database   " << target << ": reachable, MariaDB " << server_version << "\n"
            << "schema     version " << state.current_version << " of " << state.known_version;
  if (!problem.empty()) std::cout << " -- " << problem;
  std::cout << "\n";
  if (out.contains("counts")) {
    const auto& c = out["counts"];
    std::cout << "customers  " << c["customers"] << " (" << c["credentials_active"]
              << " active credentials)\n"
              << "devices    " << c["devices_active"] << " active, " << c["registrations_active"]
              << " active registrations";
    if (c.contains("registrations_untagged")) {
      std::cout << " (" << c["registrations_untagged"]
                << " with listener URLs from before capabilities)";
    }
    std::cout << "\n"
              << "outbox     " << c["outbox_queued"] << " queued (oldest "
              << c["outbox_oldest_queued_seconds"] << " s), " << c["outbox_dead"]
              << " dead letters\n"
              << "certs      " << c["credentials_expired"] << " expired, "
              << c["credentials_expiring_30d"] << " ending within 30 days"
              << (c["credentials_expired"] > 0 || c["credentials_expiring_30d"] > 0
                      ? "  (mailpushctl certs expiring)"
                      : "")
              << "\n";
    if (c.contains("subscriptions_silent")) {
      std::cout << "silent     " << c["subscriptions_silent"] << " of " << c["registrations_active"]
                << " subscriptions"
                << (c["subscriptions_silent"] > 0 ? "  (mailpushctl subscriptions --silent)" : "")
                << "\n";
    }
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

}  // namespace

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
  auto counts = status_counts(conn, *state);
  if (!counts) return fail(o, "status", counts.error());
  if (!counts->empty()) out["counts"] = std::move(*counts);
  if (state->current_version >= 2) {
    auto instances = status_instances(conn);
    if (!instances) return fail(o, "status", instances.error());
    out["instances"] = std::move(*instances);
  }

  const std::string problem = mp::app::readiness_problem(*state);
  out["ready"] = problem.empty();
  if (o.json_output) {
    std::cout << out.dump(2) << "\n";
  } else {
    print_status_text(out, region, conn_options->describe(), conn.server_version(), *state,
                      problem);
  }
  if (state->newer_than_binary() || !state->problems.empty()) return mp::app::kExitSchemaConflict;
  if (!state->pending.empty()) return mp::app::kExitMigrationPending;
  return mp::app::kExitOk;
}

namespace {

// `mailpushctl subscriptions --graph`: Graph subscriptions by expiry.
int graph_subscriptions(const Options& o, mp::store::Connection& conn, const std::string& region,
                        std::size_t limit) {
  auto counts = mp::store::count_graph_subscriptions(conn);
  if (!counts) return fail(o, "subscriptions", counts.error());
  auto list = mp::store::list_graph_subscriptions(conn, limit);
  if (!list) return fail(o, "subscriptions", list.error());
  const auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  if (o.json_output) {
    json out{{"region", region},
             {"graph_active", counts->active},
             {"graph_expired", counts->expired},
             {"graph_expiring_1d", counts->expiring_1d},
             {"graph_never_notified", counts->never_notified},
             {"graph", json::array()}};
    for (const auto& g : *list) {
      out["graph"].push_back({{"registration_id", g.registration_id},
                              {"customer_id", g.customer_id},
                              {"device", g.device},
                              {"environment", g.environment},
                              {"expires_at", or_null(g.expires_at)},
                              {"last_notified_at", or_null(g.last_heard_at)},
                              {"wake_pending", or_null(g.wake_pending)},
                              {"wake_sent_at", or_null(g.wake_sent_at)}});
    }
    std::cout << out.dump(2) << "\n";
    return mp::app::kExitOk;
  }
  std::cout << counts->active << " active Graph subscriptions: " << counts->expired
            << " past their expiry, " << counts->expiring_1d << " expiring within a day, "
            << counts->never_notified << " never notified (expiry unknown)\n";
  if (!list->empty()) {
    std::cout << "registration  customer  device  env  expires  last notified  wake\n";
    for (const auto& g : *list) {
      std::cout << g.registration_id << "  " << g.customer_id << "  " << g.device << "  "
                << g.environment << "  " << (g.expires_at.empty() ? "unknown" : g.expires_at)
                << "  " << (g.last_heard_at.empty() ? "never" : g.last_heard_at) << "  "
                << (!g.wake_pending.empty()  ? "pending: " + g.wake_pending
                    : g.wake_sent_at.empty() ? std::string("-")
                                             : "sent " + g.wake_sent_at)
                << "\n";
    }
    if (list->size() == limit) std::cout << "(first " << limit << " shown; --limit N for more)\n";
    std::cout << "A Graph subscription is the app's: it renews it before it expires. The relay "
                 "wakes the app a day before (background push); one past its expiry needs the "
                 "app opened.\n";
  }
  return mp::app::kExitOk;
}

}  // namespace

// Registrations whose Exchange subscription went quiet: the app must subscribe again.
int cmd_subscriptions(const Options& o, bool silent_only, bool graph_only, std::size_t limit) {
  std::string region;
  auto conn_options = database_of(o, region);
  if (!conn_options) return fail(o, "subscriptions", conn_options.error());
  mp::store::Connection conn(*conn_options);
  if (auto st = conn.connect(); !st) return fail(o, "subscriptions", st.error());
  if (graph_only) return graph_subscriptions(o, conn, region, limit);
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
int cmd_certs_list(const Options& o, const std::string& within, bool found_is_problem) {
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
    return found_is_problem && !creds->empty() ? mp::app::kExitProblemsFound : mp::app::kExitOk;
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
  if (found_is_problem && !creds->empty()) {
    std::cout << "Each customer renews by uploading a new certificate in the portal (same App ID); "
                 "their devices are kept.\n";
    return mp::app::kExitProblemsFound;
  }
  return mp::app::kExitOk;
}

// Which KEK wraps how many credentials: the old key may leave the key file at 0.
int cmd_kek(const Options& o, bool rotate) {
  const char* what = rotate ? "kek rotate" : "kek status";
  auto cfg = load_region(o);
  if (!cfg) return fail(o, what, cfg.error());
  if (!cfg->portal.kek_file) {
    return fail(o, what,
                mp::make_error(mp::Errc::invalid_argument,
                               "the region has no portal.kek_file: nothing is sealed with a key"));
  }
  auto ring = mp::keys::KeyRing::load_file(*cfg->portal.kek_file);
  if (!ring) return fail(o, what, ring.error());
  const std::string& region = cfg->region;
  auto conn = connect(*cfg);
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

}  // namespace mp::ctl
