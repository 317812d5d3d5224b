// mailpushctl: the operators' tool. Each subcommand reads the region file, talks to the region's
// database (and, for doctor and certs test, to APNs and the public listener), prints text (or
// JSON with --json) and exits with a code scripts can rely on. The subcommands live in ctl/.
#include <CLI/CLI.hpp>

#include "app/ctl/ctl.hpp"
#include "common/log.hpp"
#include "common/version.hpp"

namespace {

using namespace mp::ctl;

constexpr const char* kDescription =
    "mailpushctl: operate a mailpush region.\n"
    "Every command takes --region FILE (the region's JSON file, as mailpushd does) and --json.\n"
    "Start with `mailpushctl --region FILE doctor` when something is wrong.\n\n"
    "Exit codes: 0 ok, 1 failure, 2 usage, 3 database unreachable, 4 schema conflict,\n"
    "5 migrations pending (status), 6 not found, 7 problems found (doctor, certs test,\n"
    "certs expiring), 78 configuration invalid.";

// Every subcommand of mailpushctl and the values its options are parsed into (several share
// customer_id and yes).
struct Commands {
  CLI::App* migrate = nullptr;
  CLI::App* status = nullptr;
  CLI::App* doctor = nullptr;
  CLI::App* subscriptions = nullptr;
  CLI::App* invite = nullptr;
  CLI::App* customers_list = nullptr;
  CLI::App* customers_show = nullptr;
  CLI::App* customers_disable = nullptr;
  CLI::App* customers_enable = nullptr;
  CLI::App* certs_list = nullptr;
  CLI::App* certs_expiring = nullptr;
  CLI::App* certs_test = nullptr;
  CLI::App* devices_show = nullptr;
  CLI::App* registrations_show = nullptr;
  CLI::App* outbox_stats = nullptr;
  CLI::App* outbox_retry = nullptr;
  CLI::App* audit_tail = nullptr;
  CLI::App* kek_rotate = nullptr;
  CLI::App* kek_status = nullptr;
  DoctorOptions doctor_options;
  std::int64_t timeout_ms = 5000;
  std::string listener_ca;
  bool silent_only = false;
  bool graph_only = false;
  std::size_t limit = 100;
  std::string valid_for = "7d";
  std::string note;
  std::string customer_id;
  bool yes = false;
  std::string within;
  std::string expiring_within = "30d";
  std::string environment;
  std::string token_prefix;
  std::size_t device_limit = 20;
  std::string mailbox;
  std::string reason;
  std::size_t retry_limit = 10000;
  std::size_t audit_limit = 50;
};

void add_doctor(CLI::App& cli, Commands& c) {
  c.doctor = cli.add_subcommand(
      "doctor",
      "Check everything support cases needed, each with a verdict and what to do: region file, "
      "APNs names and ports, each certificate's TLS handshake and environment (a test push to a "
      "made-up token, which APNs answers BadDeviceToken), the public listener, device tokens, "
      "expiring certificates, silent subscriptions, the outbox. Exit 7 when a check fails");
  c.doctor->add_option("--customer", c.doctor_options.customer_id,
                       "Check only this customer: its certificate, devices, subscriptions and "
                       "expiry (APNs, listener and outbox checks stay region-wide)");
  c.doctor
      ->add_option("--max-certs", c.doctor_options.max_credentials,
                   "Test at most this many certificates")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  c.doctor->add_option("--timeout-ms", c.timeout_ms, "Bound of each network check")
      ->capture_default_str()
      ->check(CLI::Range(100, 120000));
  c.doctor->add_flag("--skip-listener", c.doctor_options.skip_listener,
                     "Do not check the public listener URL");
  c.doctor->add_option("--listener-port", c.doctor_options.listener_port,
                       "Public port of the listener when a load balancer maps it (default: "
                       "listener.port)");
  c.doctor
      ->add_option("--listener-ca", c.listener_ca,
                   "Trust this CA file for the listener check instead of the system store")
      ->check(CLI::ExistingFile);
}

void add_subscriptions(CLI::App& cli, Commands& c) {
  c.subscriptions = cli.add_subcommand(
      "subscriptions",
      "Count subscriptions; --silent lists those Exchange has stopped calling, --graph the Graph "
      "ones by expiry");
  c.subscriptions->add_flag("--silent", c.silent_only,
                            "List registrations not heard from for over 2 x their StatusFrequency");
  c.subscriptions->add_flag(
      "--graph", c.graph_only,
      "List Graph subscriptions (Exchange Online), the soonest to expire first");
  c.subscriptions->add_option("--limit", c.limit, "At most this many rows")
      ->check(CLI::Range(1, 100000));
}

void add_customers(CLI::App& cli, Commands& c) {
  auto* customers = cli.add_subcommand("customers", "Customers of the region and their onboarding");
  customers->require_subcommand(1);
  c.invite = customers->add_subcommand(
      "invite", "Issue a one-time code that lets a customer's administrator create the customer");
  c.invite->add_option("--valid-for", c.valid_for, "How long the code works: 5m to 30d")
      ->capture_default_str();
  c.invite->add_option("--note", c.note, "Who it is for (kept in the database and audit log)");
  c.customers_list = customers->add_subcommand("list", "List customers and their state");
  c.customers_show = customers->add_subcommand(
      "show", "One customer: state, devices, registrations, outbox, certificates");
  c.customers_show->add_option("customer_id", c.customer_id, "Customer ID, e.g. use1-k3j9x2")
      ->required();
  c.customers_disable = customers->add_subcommand(
      "disable", "Stop sending for a customer (kept; `customers enable` undoes it)");
  c.customers_disable->add_option("customer_id", c.customer_id, "Customer ID")->required();
  c.customers_disable->add_flag("--yes", c.yes, "Confirm");
  c.customers_enable = customers->add_subcommand("enable", "Send for a disabled customer again");
  c.customers_enable->add_option("customer_id", c.customer_id, "Customer ID")->required();
}

void add_certs(CLI::App& cli, Commands& c) {
  auto* certs = cli.add_subcommand("certs", "Customers' APNs certificates");
  certs->require_subcommand(1);
  c.certs_list =
      certs->add_subcommand("list", "List active and expired certificates, soonest expiry first");
  c.certs_list->add_option("--expiring-within", c.within,
                           "Only those ending within this time (30d, 12h, ...); expired included");
  c.certs_expiring = certs->add_subcommand(
      "expiring", "Certificates expired or ending within --within (default 30d); exit 7 if any");
  c.certs_expiring->add_option("--within", c.expiring_within, "Window, e.g. 30d, 7d, 24h")
      ->capture_default_str();
  c.certs_test = certs->add_subcommand(
      "test",
      "Connect to APNs with a customer's certificate and send a test push to a made-up token "
      "(APNs answers BadDeviceToken when certificate, environment and topic are right)");
  c.certs_test->add_option("customer_id", c.customer_id, "Customer ID")->required();
  c.certs_test->add_option("--environment", c.environment,
                           "development or production (default: every one it serves)");
}

void add_devices_and_registrations(CLI::App& cli, Commands& c) {
  auto* devices = cli.add_subcommand("devices", "Devices of a customer");
  devices->require_subcommand(1);
  c.devices_show = devices->add_subcommand(
      "show", "Devices whose token starts with a prefix (tokens are shown shortened)");
  c.devices_show->add_option("customer_id", c.customer_id, "Customer ID")->required();
  c.devices_show
      ->add_option("token_prefix", c.token_prefix,
                   "At least the first 4 hex characters of the token")
      ->required();
  c.devices_show->add_option("--limit", c.device_limit, "At most this many devices")
      ->check(CLI::Range(1, 1000));
  auto* registrations = cli.add_subcommand("registrations", "Mailbox registrations");
  registrations->require_subcommand(1);
  c.registrations_show = registrations->add_subcommand(
      "show",
      "A mailbox's registrations, looked up through the region secret's HMAC (addresses are "
      "never stored)");
  c.registrations_show->add_option("--mailbox", c.mailbox, "The SMTP address")->required();
  c.registrations_show->add_option("--customer", c.customer_id, "Only this customer's");
}

void add_outbox(CLI::App& cli, Commands& c) {
  auto* outbox = cli.add_subcommand("outbox", "Notifications waiting for APNs, and dead letters");
  outbox->require_subcommand(1);
  c.outbox_stats =
      outbox->add_subcommand("stats", "Queued and dead, by customer, by instance and by reason");
  c.outbox_retry = outbox->add_subcommand(
      "retry-dead", "Queue dead letters again with the badge as it is now (audited)");
  c.outbox_retry->add_option("--customer", c.customer_id, "Only this customer's");
  c.outbox_retry->add_option("--reason", c.reason, "Only those that died with this reason");
  c.outbox_retry->add_option("--limit", c.retry_limit, "At most this many")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c.outbox_retry->add_flag("--yes", c.yes, "Confirm");
}

void add_audit(CLI::App& cli, Commands& c) {
  auto* audit = cli.add_subcommand("audit", "The audit log of customer and operator actions");
  audit->require_subcommand(1);
  c.audit_tail = audit->add_subcommand("tail", "The newest entries");
  c.audit_tail->add_option("-n,--lines", c.audit_limit, "How many")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
}

void add_kek(CLI::App& cli, Commands& c) {
  auto* kek = cli.add_subcommand("kek", "The region's key-encryption keys (portal.kek_file)");
  kek->require_subcommand(1);
  c.kek_rotate = kek->add_subcommand(
      "rotate",
      "Re-wrap every credential's data key under the key file's active key (after "
      "scripts/make-kek.sh --add); the sealed material is not touched");
  c.kek_status = kek->add_subcommand("status", "How many credentials each key wraps");
}

// Runs the one subcommand that was parsed.
int run_parsed(const Options& o, Commands& c) {
  if (c.migrate->parsed()) return cmd_migrate(o);
  if (c.status->parsed()) return cmd_status(o);
  if (c.doctor->parsed()) {
    c.doctor_options.timeout = std::chrono::milliseconds(c.timeout_ms);
    if (!c.listener_ca.empty()) c.doctor_options.listener_ca = c.listener_ca;
    return cmd_doctor(o, c.doctor_options);
  }
  if (c.subscriptions->parsed()) return cmd_subscriptions(o, c.silent_only, c.graph_only, c.limit);
  if (c.invite->parsed()) return cmd_customers_invite(o, c.valid_for, c.note);
  if (c.customers_list->parsed()) return cmd_customers_list(o);
  if (c.customers_show->parsed()) return cmd_customers_show(o, c.customer_id);
  if (c.customers_disable->parsed()) return cmd_customers_set_state(o, c.customer_id, false, c.yes);
  if (c.customers_enable->parsed()) return cmd_customers_set_state(o, c.customer_id, true, true);
  if (c.certs_list->parsed()) return cmd_certs_list(o, c.within, false);
  if (c.certs_expiring->parsed()) {
    if (!parse_duration(c.expiring_within))
      return usage("certs expiring", "--within must be like 30d, 12h or 3600");
    return cmd_certs_list(o, c.expiring_within, true);
  }
  if (c.certs_test->parsed()) return cmd_certs_test(o, c.customer_id, c.environment);
  if (c.devices_show->parsed())
    return cmd_devices_show(o, c.customer_id, c.token_prefix, c.device_limit);
  if (c.registrations_show->parsed()) return cmd_registrations_show(o, c.mailbox, c.customer_id);
  if (c.outbox_stats->parsed()) return cmd_outbox_stats(o);
  if (c.outbox_retry->parsed())
    return cmd_outbox_retry_dead(o, c.customer_id, c.reason, c.retry_limit, c.yes);
  if (c.audit_tail->parsed()) return cmd_audit_tail(o, c.audit_limit);
  if (c.kek_rotate->parsed()) return cmd_kek(o, true);
  if (c.kek_status->parsed()) return cmd_kek(o, false);
  return mp::app::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{kDescription, "mailpushctl"};
  Options o;
  Commands c;
  cli.add_option("--region", o.region_file, "Region configuration file, e.g. regions/dev.json")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--set", o.overrides, "Override a setting: --set database.port=3310 (repeatable)");
  cli.add_flag("--json", o.json_output, "Print JSON instead of text");
  cli.set_version_flag("--version", mp::version_line("mailpushctl"));
  cli.require_subcommand(1);
  cli.fallthrough();  // --json and --set also after the subcommand

  c.migrate = cli.add_subcommand(
      "migrate", "Apply pending schema migrations (idempotent; refuses a newer schema)");
  c.status = cli.add_subcommand(
      "status",
      "Database, schema, instances seen, queue depth and oldest age, dead letters, "
      "certificates expiring, silent subscriptions");

  add_doctor(cli, c);
  add_subscriptions(cli, c);
  add_customers(cli, c);
  add_certs(cli, c);
  add_devices_and_registrations(cli, c);
  add_outbox(cli, c);
  add_audit(cli, c);
  add_kek(cli, c);

  // Logs of the library code go to stderr as JSON; keep the tool's own output readable.
  mp::log::set_level(mp::log::Level::warn);
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);
    return rc == 0 ? 0 : mp::app::kExitUsage;
  }
  return run_parsed(o, c);
}
