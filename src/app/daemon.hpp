// mailpushd's wiring: configuration, database pool, HTTPS server, heartbeat and signals.
#pragma once

#include "config/region_config.hpp"

namespace mp::app {

// Runs the regional daemon until SIGTERM/SIGINT; returns the process exit code.
int run_daemon(const config::RegionConfig& config);

}  // namespace mp::app
