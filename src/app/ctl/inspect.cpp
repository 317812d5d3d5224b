// mailpushctl: one customer, its devices, a mailbox's registrations, the outbox and the audit
// log; disabling a customer and sending dead letters again. Tokens are only ever shown
// shortened (apns::display_token), mailbox addresses only as typed by the operator.
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apns/device_token.hpp"
#include "app/ctl/ctl.hpp"
#include "common/crypto.hpp"
#include "keys/region_secret.hpp"
#include "store/admin.hpp"
#include "store/customers.hpp"

namespace mp::ctl {

using nlohmann::json;

namespace {

json or_null(const std::string& s) {
  return s.empty() ? json(nullptr) : json(s);
}

std::string or_never(const std::string& s) {
  return s.empty() ? "never" : s;
}

}  // namespace

int cmd_customers_show(const Options& o, const std::string& customer_id) {
  const std::string what = "customers show";
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, what, conn.error());
  auto customer = customer_named(**conn, customer_id);
  if (!customer) return fail(o, what, customer.error());
  auto detail = store::customer_detail(**conn, *customer);
  if (!detail) return fail(o, what, detail.error());
  auto credentials = store::customer_credentials(**conn, customer->id);
  if (!credentials) return fail(o, what, credentials.error());
  const auto& d = *detail;
  if (o.json_output) {
    json creds = json::array();
    for (const auto& k : *credentials) {
      creds.push_back({{"topic", k.topic},
                       {"development", k.development},
                       {"production", k.production},
                       {"state", k.state},
                       {"not_after", k.not_after},
                       {"seconds_left", k.seconds_left},
                       {"fingerprint_sha256", k.fingerprint_hex},
                       {"last_success_at", or_null(k.last_success_at)},
                       {"last_failure_at", or_null(k.last_failure_at)},
                       {"last_failure_reason", or_null(k.last_failure_reason)}});
    }
    std::cout << json{{"region", region},
                      {"customer_id", d.customer.customer_id},
                      {"display_name", d.customer.display_name},
                      {"app_id", d.customer.app_id},
                      {"state", d.customer.state},
                      {"created_at", d.customer.created_at},
                      {"paused_reason", or_null(d.paused_reason)},
                      {"devices",
                       {{"active_production", d.devices_active_production},
                        {"active_development", d.devices_active_development},
                        {"unregistered", d.devices_unregistered},
                        {"invalid", d.devices_invalid}}},
                      {"mailboxes", d.mailboxes},
                      {"registrations",
                       {{"active", d.registrations_active},
                        {"silent", d.registrations_silent},
                        {"last_callback_at", or_null(d.last_callback_at)}}},
                      {"outbox", {{"queued", d.outbox_queued}, {"dead", d.outbox_dead}}},
                      {"credentials", creds}}
                     .dump(2)
              << "\n";
    return app::kExitOk;
  }
  std::cout << "customer       " << d.customer.customer_id << "  (" << d.customer.display_name
            << ")\n"
            << "state          " << d.customer.state
            << (d.paused_reason.empty() ? "" : "; sending paused: " + d.paused_reason) << "\n"
            << "app id         " << d.customer.app_id << "\n"
            << "created        " << d.customer.created_at << "\n"
            << "devices        " << d.devices_active_production << " production, "
            << d.devices_active_development << " development active; " << d.devices_unregistered
            << " unregistered, " << d.devices_invalid << " invalid\n"
            << "mailboxes      " << d.mailboxes << ", " << d.registrations_active
            << " active registrations, " << d.registrations_silent << " silent\n"
            << "last callback  " << or_never(d.last_callback_at) << "\n"
            << "outbox         " << d.outbox_queued << " queued, " << d.outbox_dead
            << " dead letters\n"
            << "credentials    " << credentials->size() << "\n";
  for (const auto& k : *credentials) {
    std::cout << "  " << std::left << std::setw(9) << k.state << std::setw(28) << k.topic
              << (k.development && k.production ? "development,production"
                  : k.development               ? "development"
                                                : "production")
              << "  until " << k.not_after << "  sha256 " << k.fingerprint_hex.substr(0, 16) << "…"
              << (k.last_failure_reason.empty() ? "" : "  last failure " + k.last_failure_reason)
              << "\n";
  }
  return app::kExitOk;
}

int cmd_customers_set_state(const Options& o, const std::string& customer_id, bool enable,
                            bool yes) {
  const std::string what = enable ? "customers enable" : "customers disable";
  if (!enable && !yes) {
    return usage(what,
                 "disabling stops every badge of " + customer_id +
                     " in this region (queued ones are dropped when due); add --yes to confirm");
  }
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, what, conn.error());
  auto customer = customer_named(**conn, customer_id);
  if (!customer) return fail(o, what, customer.error());
  if (customer->state == "deleted") {
    return fail(o, what,
                make_error(Errc::conflict, customer_id + " was deleted; a deleted customer "
                                                         "cannot be enabled or disabled"));
  }
  const std::string state = enable ? "active" : "disabled";
  auto changed = store::set_customer_state(**conn, customer->id, state, local_actor());
  if (!changed) return fail(o, what, changed.error());
  if (o.json_output) {
    std::cout << json{{"region", region},
                      {"customer_id", customer_id},
                      {"state", state},
                      {"changed", *changed}}
                     .dump(2)
              << "\n";
  } else if (!*changed) {
    std::cout << customer_id << " is already " << state << "\n";
  } else {
    std::cout << customer_id << " is now " << state
              << (enable ? "; badges flow again with the next mail event"
                         : "; no badge is sent for it until `mailpushctl customers enable`")
              << " (every instance picks this up within seconds)\n";
  }
  return app::kExitOk;
}

int cmd_devices_show(const Options& o, const std::string& customer_id,
                     const std::string& token_prefix, std::size_t limit) {
  const std::string what = "devices show";
  std::string prefix;
  for (char c : token_prefix) {
    if (c == ' ' || c == '<' || c == '>') continue;  // as copied from an app's log
    prefix += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, what, conn.error());
  auto customer = customer_named(**conn, customer_id);
  if (!customer) return fail(o, what, customer.error());
  auto devices = store::find_devices(**conn, customer->id, prefix, limit);
  if (!devices) {
    if (devices.error().code == Errc::invalid_argument) return usage(what, devices.error().message);
    return fail(o, what, devices.error());
  }
  if (o.json_output) {
    json out = json::array();
    for (const auto& d : *devices) {
      out.push_back({{"device_id", d.id},
                     {"token", apns::display_token(d.token_hex)},
                     {"environment", d.environment},
                     {"state", d.state},
                     {"invalid_reason", or_null(d.invalid_reason)},
                     {"unregistered_at", or_null(d.unregistered_at)},
                     {"created_at", d.created_at},
                     {"updated_at", d.updated_at},
                     {"registrations_active", d.registrations_active},
                     {"outbox_queued", d.outbox_queued},
                     {"outbox_dead", d.outbox_dead},
                     {"last_dead_reason", or_null(d.last_dead_reason)}});
    }
    std::cout << json{{"region", region}, {"customer_id", customer_id}, {"devices", out}}.dump(2)
              << "\n";
    return devices->empty() ? app::kExitNotFound : app::kExitOk;
  }
  if (devices->empty()) {
    std::cout << "no device of " << customer_id << " has a token starting with " << prefix
              << " (tokens are stored as lowercase hex; the app's log may show base64)\n";
    return app::kExitNotFound;
  }
  for (const auto& d : *devices) {
    std::cout << "device " << d.id << "  " << apns::display_token(d.token_hex) << "  "
              << d.environment << "  " << d.state;
    if (!d.invalid_reason.empty()) std::cout << " (" << d.invalid_reason << ")";
    if (!d.unregistered_at.empty()) std::cout << " since " << d.unregistered_at;
    std::cout << "\n  registered " << d.created_at << ", updated " << d.updated_at << "; "
              << d.registrations_active << " active mailbox registrations; outbox "
              << d.outbox_queued << " queued, " << d.outbox_dead << " dead"
              << (d.last_dead_reason.empty() ? "" : " (last: " + d.last_dead_reason + ")") << "\n";
    if (d.state == "unregistered") {
      std::cout << "  APNs said the app is gone from this device; it becomes active again when "
                   "the app registers.\n";
    } else if (d.state == "invalid") {
      std::cout << "  APNs refused the token; if it is " << d.environment
                << ", check that the app build matches that environment.\n";
    }
  }
  if (devices->size() == limit) std::cout << "(first " << limit << " shown; --limit N for more)\n";
  return app::kExitOk;
}

int cmd_registrations_show(const Options& o, const std::string& mailbox,
                           const std::string& customer_id) {
  const std::string what = "registrations show";
  auto cfg = load_region(o);
  if (!cfg) return fail(o, what, cfg.error());
  if (!cfg->registration.secret_file) {
    return fail(o, what,
                make_error(Errc::invalid_argument,
                           "the region has no registration.secret_file: mailbox addresses are "
                           "stored as its HMAC, so they cannot be looked up without it"));
  }
  auto secret = keys::RegionSecret::load_file(*cfg->registration.secret_file);
  if (!secret) return fail(o, what, secret.error());
  auto hmac = secret->mailbox_hmac(mailbox);
  if (!hmac) return usage(what, "--mailbox: " + hmac.error().message);
  const std::string& region = cfg->region;
  auto conn = connect(*cfg);
  if (!conn) return fail(o, what, conn.error());
  std::optional<std::int64_t> customer_row;
  if (!customer_id.empty()) {
    auto customer = customer_named(**conn, customer_id);
    if (!customer) return fail(o, what, customer.error());
    customer_row = customer->id;
  }
  auto rows = store::registrations_of_mailbox(**conn, *hmac, customer_row);
  if (!rows) return fail(o, what, rows.error());
  if (o.json_output) {
    json out = json::array();
    for (const auto& r : *rows) {
      out.push_back({{"registration_id", r.registration_id},
                     {"customer_id", r.customer_id},
                     {"mailbox_id", r.mailbox_id},
                     {"unread_count", r.unread_count},
                     {"folder_stated", r.folder_stated},
                     {"device", apns::display_token(r.device_token_hex)},
                     {"device_environment", r.device_environment},
                     {"device_state", r.device_state},
                     {"state", r.state},
                     {"subscription_bound", r.bound},
                     {"superseded_subscriptions", r.superseded_ids},
                     {"status_frequency_minutes", r.status_frequency_minutes},
                     {"last_heard_at", or_null(r.last_heard_at)},
                     {"silent", r.silent},
                     {"created_at", r.created_at}});
    }
    std::cout << json{{"region", region}, {"registrations", out}}.dump(2) << "\n";
    return rows->empty() ? app::kExitNotFound : app::kExitOk;
  }
  if (rows->empty()) {
    std::cout << "no registration for that mailbox in " << region
              << (customer_id.empty() ? "" : " for " + customer_id)
              << ": the app has not registered it here (another region, or registration "
                 "failed on the device)\n";
    return app::kExitNotFound;
  }
  for (const auto& r : *rows) {
    std::cout << "registration " << r.registration_id << "  " << r.customer_id << "  " << r.state
              << "\n  device " << apns::display_token(r.device_token_hex) << " "
              << r.device_environment << " " << r.device_state << "\n  mailbox " << r.mailbox_id
              << ": unread " << r.unread_count
              << (r.folder_stated ? " (of the Inbox the app stated)"
                                  : " (of any folder Exchange reports)")
              << "\n  subscription " << (r.bound ? "bound" : "not bound yet (no callback received)")
              << ", " << r.superseded_ids << " superseded; last heard " << or_never(r.last_heard_at)
              << ", StatusFrequency " << r.status_frequency_minutes << " min"
              << (r.silent ? "  SILENT: Exchange stopped calling; the app must subscribe again"
                           : "")
              << "\n";
  }
  return app::kExitOk;
}

int cmd_outbox_stats(const Options& o) {
  const std::string what = "outbox stats";
  auto cfg = load_region(o);
  if (!cfg) return fail(o, what, cfg.error());
  const std::string& region = cfg->region;
  auto conn = connect(*cfg);
  if (!conn) return fail(o, what, conn.error());
  auto b = store::outbox_breakdown(**conn, cfg->dispatch.lease);
  if (!b) return fail(o, what, b.error());
  if (o.json_output) {
    json customers = json::array(), owners = json::array(), reasons = json::array();
    for (const auto& c : b->customers) {
      customers.push_back({{"customer_id", c.customer_id},
                           {"queued", c.queued},
                           {"dead", c.dead},
                           {"oldest_queued_seconds", c.oldest_queued_seconds},
                           {"paused_reason", or_null(c.paused_reason)}});
    }
    for (const auto& w : b->owners)
      owners.push_back({{"instance", w.owner}, {"queued", w.queued}, {"alive", w.alive}});
    for (const auto& r : b->dead_reasons)
      reasons.push_back({{"reason", r.reason}, {"dead", r.dead}});
    std::cout << json{{"region", region},
                      {"queued", b->queued},
                      {"retrying", b->retrying},
                      {"dead", b->dead},
                      {"oldest_queued_seconds", b->oldest_queued_seconds},
                      {"customers", customers},
                      {"owners", owners},
                      {"dead_reasons", reasons}}
                     .dump(2)
              << "\n";
    return app::kExitOk;
  }
  std::cout << b->queued << " queued (" << b->retrying << " after a failed attempt), oldest "
            << b->oldest_queued_seconds << " s; " << b->dead << " dead letters\n";
  if (!b->owners.empty()) {
    std::cout << "queued by instance:\n";
    for (const auto& w : b->owners) {
      std::cout << "  " << std::left << std::setw(40) << w.owner << std::setw(10) << w.queued
                << (w.alive ? "alive"
                            : "NOT ALIVE: a live instance takes these over after the lease")
                << "\n";
    }
  }
  if (!b->customers.empty()) {
    std::cout << "by customer:\n";
    for (const auto& c : b->customers) {
      std::cout << "  " << std::left << std::setw(28) << c.customer_id << c.queued << " queued"
                << (c.queued > 0 ? " (oldest " + std::to_string(c.oldest_queued_seconds) + " s)"
                                 : "")
                << ", " << c.dead << " dead"
                << (c.paused_reason.empty() ? "" : "  paused: " + c.paused_reason) << "\n";
    }
  }
  if (!b->dead_reasons.empty()) {
    std::cout << "dead letters by reason:\n";
    for (const auto& r : b->dead_reasons)
      std::cout << "  " << std::left << std::setw(32) << r.reason << r.dead << "\n";
    std::cout << "After fixing the cause, `mailpushctl outbox retry-dead --reason R --yes` "
                 "queues them again with the current badge.\n";
  }
  return app::kExitOk;
}

int cmd_outbox_retry_dead(const Options& o, const std::string& customer_id,
                          const std::string& reason, std::size_t limit, bool yes) {
  const std::string what = "outbox retry-dead";
  if (!yes) {
    return usage(what,
                 "this queues dead letters again (with the badge as it is now); add --yes to "
                 "confirm, and --customer / --reason to narrow it");
  }
  auto cfg = load_region(o);
  if (!cfg) return fail(o, what, cfg.error());
  const std::string& region = cfg->region;
  auto conn = connect(*cfg);
  if (!conn) return fail(o, what, conn.error());
  store::RetryDeadFilter filter;
  filter.limit = limit;
  if (!reason.empty()) filter.reason = reason;
  if (!customer_id.empty()) {
    auto customer = customer_named(**conn, customer_id);
    if (!customer) return fail(o, what, customer.error());
    filter.customer_row_id = customer->id;
  }
  auto result = store::retry_dead_letters(**conn, filter, local_actor());
  if (!result) return fail(o, what, result.error());
  if (o.json_output) {
    std::cout << json{{"region", region},
                      {"requeued", result->requeued},
                      {"left_dead", result->left_dead}}
                     .dump(2)
              << "\n";
  } else {
    std::cout << result->requeued << " dead letters queued again";
    if (result->left_dead > 0) {
      std::cout << "; " << result->left_dead
                << " left dead because their device or customer is no longer active";
    }
    std::cout << "\n";
    if (result->requeued == limit) std::cout << "(limit " << limit << " reached; run it again)\n";
  }
  return app::kExitOk;
}

int cmd_audit_tail(const Options& o, std::size_t limit) {
  const std::string what = "audit tail";
  std::string region;
  auto conn = connect(o, region);
  if (!conn) return fail(o, what, conn.error());
  auto rows = store::tail_audit(**conn, limit);
  if (!rows) return fail(o, what, rows.error());
  if (o.json_output) {
    json out = json::array();
    for (const auto& a : *rows) {
      json detail = json::parse(a.detail, nullptr, false);
      out.push_back({{"id", a.id},
                     {"at", a.at},
                     {"actor", a.actor},
                     {"action", a.action},
                     {"customer_id", or_null(a.customer)},
                     {"source_address", or_null(a.source_address)},
                     {"detail", detail.is_discarded() ? json(a.detail) : detail}});
    }
    std::cout << json{{"region", region}, {"audit", out}}.dump(2) << "\n";
    return app::kExitOk;
  }
  for (const auto& a : *rows) {
    std::cout << a.at << "  " << std::left << std::setw(28) << a.actor << std::setw(24) << a.action
              << std::setw(24) << (a.customer.empty() ? "-" : a.customer)
              << (a.source_address.empty() ? "" : a.source_address + "  ") << a.detail << "\n";
  }
  return app::kExitOk;
}

}  // namespace mp::ctl
