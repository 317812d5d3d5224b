// mailpushctl's shared pieces: the global options, how errors become messages and exit codes,
// the region's database, durations, the audit actor, and the subcommands' entry points.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "app/region_runtime.hpp"
#include "common/result.hpp"
#include "config/region_config.hpp"
#include "store/customers.hpp"
#include "store/mariadb.hpp"

namespace mp::ctl {

struct Options {
  std::string region_file;
  std::vector<std::string> overrides;
  bool json_output = false;
};

// unavailable -> 3, conflict -> 4, invalid_argument -> 78, not_found -> 6, others -> 1.
int exit_code_for(const Error& e);
// Prints the error (JSON on stdout with --json, else "mailpushctl WHAT: message" on stderr) and
// returns its exit code.
int fail(const Options& o, const std::string& what, const Error& e);
// A usage mistake found after parsing: message on stderr, exit 2.
int usage(const std::string& what, const std::string& message);

// The region file, without requiring the listener's TLS files.
Result<config::RegionConfig> load_region(const Options& o);
// The region's database settings; `region` gets the region's name.
Result<store::ConnectionOptions> database_of(const Options& o, std::string& region);
// Connects to the region's database; `region` gets the region's name.
Result<std::unique_ptr<store::Connection>> connect(const Options& o, std::string& region);
// Connects to the database of a region file already loaded.
Result<std::unique_ptr<store::Connection>> connect(const config::RegionConfig& cfg);
// The first column of the first row of `sql` as a number (0 when there is no row).
Result<std::int64_t> count(store::Connection& c, const std::string& sql);

// "30d", "12h", "90m", "3600s" or a plain number of seconds (at most 10 years).
std::optional<std::chrono::seconds> parse_duration(std::string_view text);
// The operator running the tool, for the audit log: "mailpushctl:<unix user>".
store::Actor local_actor();

// The customer named by its public Customer ID, or a not_found error that says so.
Result<store::CustomerRow> customer_named(store::Connection& conn, const std::string& customer_id);

// ------------------------------------------------------------------ subcommands
int cmd_migrate(const Options& o);
int cmd_status(const Options& o);
int cmd_subscriptions(const Options& o, bool silent_only, bool graph_only, std::size_t limit);
int cmd_customers_invite(const Options& o, const std::string& valid_for, const std::string& note);
int cmd_customers_list(const Options& o);
int cmd_customers_show(const Options& o, const std::string& customer_id);
int cmd_customers_set_state(const Options& o, const std::string& customer_id, bool enable,
                            bool yes);
// `found_is_problem`: exit 7 when any credential is listed (certs expiring, for cron jobs).
int cmd_certs_list(const Options& o, const std::string& within, bool found_is_problem);
int cmd_certs_test(const Options& o, const std::string& customer_id,
                   const std::string& environment);
int cmd_kek(const Options& o, bool rotate);
int cmd_devices_show(const Options& o, const std::string& customer_id,
                     const std::string& token_prefix, std::size_t limit);
int cmd_registrations_show(const Options& o, const std::string& mailbox,
                           const std::string& customer_id);
int cmd_outbox_stats(const Options& o);
int cmd_outbox_retry_dead(const Options& o, const std::string& customer_id,
                          const std::string& reason, std::size_t limit, bool yes);
int cmd_audit_tail(const Options& o, std::size_t limit);

struct DoctorOptions {
  std::string customer_id;  // TLS check of this customer only; "" = every active credential
  std::size_t max_credentials = 20;
  std::chrono::milliseconds timeout{5000};
  bool skip_listener = false;
  std::uint16_t listener_port = 0;  // the public port when it differs from listener.port
  std::optional<std::filesystem::path> listener_ca;  // trust for the listener check; system store
};
int cmd_doctor(const Options& o, const DoctorOptions& d);

}  // namespace mp::ctl
