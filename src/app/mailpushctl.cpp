// mailpushctl: the operators' tool. Each subcommand reads the region file, talks to the region's
// database (and, for doctor and certs test, to APNs and the public listener), prints text (or
// JSON with --json) and exits with a code scripts can rely on. The subcommands live in ctl/.
#include <CLI/CLI.hpp>

#include "app/ctl/ctl.hpp"
#include "common/log.hpp"
#include "common/version.hpp"

namespace {

constexpr const char* kDescription =
    "mailpushctl: operate a mailpush region.\n"
    "Every command takes --region FILE (the region's JSON file, as mailpushd does) and --json.\n"
    "Start with `mailpushctl --region FILE doctor` when something is wrong.\n\n"
    "Exit codes: 0 ok, 1 failure, 2 usage, 3 database unreachable, 4 schema conflict,\n"
    "5 migrations pending (status), 6 not found, 7 problems found (doctor, certs test,\n"
    "certs expiring), 78 configuration invalid.";

}  // namespace

int main(int argc, char** argv) {
  using namespace mp::ctl;
  CLI::App cli{kDescription, "mailpushctl"};
  Options o;
  cli.add_option("--region", o.region_file, "Region configuration file, e.g. regions/dev.json")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--set", o.overrides, "Override a setting: --set database.port=3310 (repeatable)");
  cli.add_flag("--json", o.json_output, "Print JSON instead of text");
  cli.set_version_flag("--version", mp::version_line("mailpushctl"));
  cli.require_subcommand(1);
  cli.fallthrough();  // --json and --set also after the subcommand

  auto* migrate = cli.add_subcommand(
      "migrate", "Apply pending schema migrations (idempotent; refuses a newer schema)");
  auto* status = cli.add_subcommand(
      "status",
      "Database, schema, instances seen, queue depth and oldest age, dead letters, "
      "certificates expiring, silent subscriptions");

  // doctor
  auto* doctor = cli.add_subcommand(
      "doctor",
      "Check everything support cases needed, each with a verdict and what to do: region file, "
      "APNs names and ports, each certificate's TLS handshake and environment (a test push to a "
      "made-up token, which APNs answers BadDeviceToken), the public listener, device tokens, "
      "expiring certificates, silent subscriptions, the outbox. Exit 7 when a check fails");
  DoctorOptions doctor_options;
  std::int64_t timeout_ms = 5000;
  std::string listener_ca;
  doctor->add_option("--customer", doctor_options.customer_id,
                     "Check only this customer: its certificate, devices, subscriptions and "
                     "expiry (APNs, listener and outbox checks stay region-wide)");
  doctor
      ->add_option("--max-certs", doctor_options.max_credentials,
                   "Test at most this many certificates")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  doctor->add_option("--timeout-ms", timeout_ms, "Bound of each network check")
      ->capture_default_str()
      ->check(CLI::Range(100, 120000));
  doctor->add_flag("--skip-listener", doctor_options.skip_listener,
                   "Do not check the public listener URL");
  doctor->add_option("--listener-port", doctor_options.listener_port,
                     "Public port of the listener when a load balancer maps it (default: "
                     "listener.port)");
  doctor
      ->add_option("--listener-ca", listener_ca,
                   "Trust this CA file for the listener check instead of the system store")
      ->check(CLI::ExistingFile);

  // subscriptions
  auto* subscriptions = cli.add_subcommand(
      "subscriptions", "Count subscriptions; --silent lists those Exchange has stopped calling");
  bool silent_only = false;
  std::size_t limit = 100;
  subscriptions->add_flag("--silent", silent_only,
                          "List registrations not heard from for over 2 x their StatusFrequency");
  subscriptions->add_option("--limit", limit, "At most this many rows")
      ->check(CLI::Range(1, 100000));

  // customers
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
  std::string customer_id;
  auto* customers_show = customers->add_subcommand(
      "show", "One customer: state, devices, registrations, outbox, certificates");
  customers_show->add_option("customer_id", customer_id, "Customer ID, e.g. use1-k3j9x2")
      ->required();
  bool yes = false;
  auto* customers_disable = customers->add_subcommand(
      "disable", "Stop sending for a customer (kept; `customers enable` undoes it)");
  customers_disable->add_option("customer_id", customer_id, "Customer ID")->required();
  customers_disable->add_flag("--yes", yes, "Confirm");
  auto* customers_enable =
      customers->add_subcommand("enable", "Send for a disabled customer again");
  customers_enable->add_option("customer_id", customer_id, "Customer ID")->required();

  // certs
  auto* certs = cli.add_subcommand("certs", "Customers' APNs certificates");
  certs->require_subcommand(1);
  auto* certs_list =
      certs->add_subcommand("list", "List active and expired certificates, soonest expiry first");
  std::string within;
  certs_list->add_option("--expiring-within", within,
                         "Only those ending within this time (30d, 12h, ...); expired included");
  auto* certs_expiring = certs->add_subcommand(
      "expiring", "Certificates expired or ending within --within (default 30d); exit 7 if any");
  std::string expiring_within = "30d";
  certs_expiring->add_option("--within", expiring_within, "Window, e.g. 30d, 7d, 24h")
      ->capture_default_str();
  auto* certs_test = certs->add_subcommand(
      "test",
      "Connect to APNs with a customer's certificate and send a test push to a made-up token "
      "(APNs answers BadDeviceToken when certificate, environment and topic are right)");
  std::string environment;
  certs_test->add_option("customer_id", customer_id, "Customer ID")->required();
  certs_test->add_option("--environment", environment,
                         "development or production (default: every one it serves)");

  // devices, registrations
  auto* devices = cli.add_subcommand("devices", "Devices of a customer");
  devices->require_subcommand(1);
  auto* devices_show = devices->add_subcommand(
      "show", "Devices whose token starts with a prefix (tokens are shown shortened)");
  std::string token_prefix;
  devices_show->add_option("customer_id", customer_id, "Customer ID")->required();
  devices_show
      ->add_option("token_prefix", token_prefix, "At least the first 4 hex characters of the token")
      ->required();
  std::size_t device_limit = 20;
  devices_show->add_option("--limit", device_limit, "At most this many devices")
      ->check(CLI::Range(1, 1000));
  auto* registrations = cli.add_subcommand("registrations", "Mailbox registrations");
  registrations->require_subcommand(1);
  auto* registrations_show = registrations->add_subcommand(
      "show",
      "A mailbox's registrations, looked up through the region secret's HMAC (addresses are "
      "never stored)");
  std::string mailbox;
  registrations_show->add_option("--mailbox", mailbox, "The SMTP address")->required();
  registrations_show->add_option("--customer", customer_id, "Only this customer's");

  // outbox
  auto* outbox = cli.add_subcommand("outbox", "Notifications waiting for APNs, and dead letters");
  outbox->require_subcommand(1);
  auto* outbox_stats =
      outbox->add_subcommand("stats", "Queued and dead, by customer, by instance and by reason");
  auto* outbox_retry = outbox->add_subcommand(
      "retry-dead", "Queue dead letters again with the badge as it is now (audited)");
  std::string reason;
  std::size_t retry_limit = 10000;
  outbox_retry->add_option("--customer", customer_id, "Only this customer's");
  outbox_retry->add_option("--reason", reason, "Only those that died with this reason");
  outbox_retry->add_option("--limit", retry_limit, "At most this many")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  outbox_retry->add_flag("--yes", yes, "Confirm");

  // audit
  auto* audit = cli.add_subcommand("audit", "The audit log of customer and operator actions");
  audit->require_subcommand(1);
  auto* audit_tail = audit->add_subcommand("tail", "The newest entries");
  std::size_t audit_limit = 50;
  audit_tail->add_option("-n,--lines", audit_limit, "How many")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));

  // kek
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
  if (doctor->parsed()) {
    doctor_options.timeout = std::chrono::milliseconds(timeout_ms);
    if (!listener_ca.empty()) doctor_options.listener_ca = listener_ca;
    return cmd_doctor(o, doctor_options);
  }
  if (subscriptions->parsed()) return cmd_subscriptions(o, silent_only, limit);
  if (invite->parsed()) return cmd_customers_invite(o, valid_for, note);
  if (customers_list->parsed()) return cmd_customers_list(o);
  if (customers_show->parsed()) return cmd_customers_show(o, customer_id);
  if (customers_disable->parsed()) return cmd_customers_set_state(o, customer_id, false, yes);
  if (customers_enable->parsed()) return cmd_customers_set_state(o, customer_id, true, true);
  if (certs_list->parsed()) return cmd_certs_list(o, within, false);
  if (certs_expiring->parsed()) {
    if (!parse_duration(expiring_within))
      return usage("certs expiring", "--within must be like 30d, 12h or 3600");
    return cmd_certs_list(o, expiring_within, true);
  }
  if (certs_test->parsed()) return cmd_certs_test(o, customer_id, environment);
  if (devices_show->parsed()) return cmd_devices_show(o, customer_id, token_prefix, device_limit);
  if (registrations_show->parsed()) return cmd_registrations_show(o, mailbox, customer_id);
  if (outbox_stats->parsed()) return cmd_outbox_stats(o);
  if (outbox_retry->parsed())
    return cmd_outbox_retry_dead(o, customer_id, reason, retry_limit, yes);
  if (audit_tail->parsed()) return cmd_audit_tail(o, audit_limit);
  if (kek_rotate->parsed()) return cmd_kek(o, true);
  if (kek_status->parsed()) return cmd_kek(o, false);
  return mp::app::kExitUsage;
}
