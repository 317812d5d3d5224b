// mailpushd: the regional daemon. Parses the command line and hands over to run_daemon.
#include <CLI/CLI.hpp>
#include <iostream>

#include "app/daemon.hpp"
#include "app/region_runtime.hpp"
#include "common/log.hpp"
#include "common/version.hpp"

int main(int argc, char** argv) {
  CLI::App cli{"mailpushd: the mailpush regional relay (EWS push -> APNs badges)", "mailpushd"};
  std::string region_file;
  std::vector<std::string> overrides;
  bool check_only = false;
  cli.add_option("--region", region_file, "Region configuration file, e.g. regions/dev.json")
      ->required()
      ->check(CLI::ExistingFile);
  cli.add_option("--set", overrides, "Override a setting: --set database.port=3310 (repeatable)");
  cli.add_flag("--check-config", check_only, "Validate the configuration and exit");
  cli.set_version_flag("--version", mp::version_line("mailpushd"));
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = cli.exit(e);
    return rc == 0 ? 0 : mp::app::kExitUsage;
  }

  auto config = mp::config::load_region(region_file, {.check_files = true, .overrides = overrides});
  if (!config) {
    mp::log::error("daemon.config_invalid", {{"error", config.error().message}});
    return mp::app::kExitConfig;
  }
  if (check_only) {
    std::cout << region_file << ": configuration is valid (region " << config->region << ")\n";
    return 0;
  }
  return mp::app::run_daemon(*config);
}
