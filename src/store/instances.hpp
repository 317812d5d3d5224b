// The instances table: which mailpushd processes of the region are alive (their heartbeat), for
// operators and for the dispatcher's take-over of the outbox rows of an instance that died.
#pragma once

#include <cstdint>
#include <string>

#include "common/result.hpp"
#include "store/mariadb.hpp"

namespace mp::store {

struct InstanceIdentity {
  std::string instance_id;  // stable across restarts: it owns the instance's outbox rows
  std::string host_name;
  std::string version;
};

// Marks the instance alive now (inserted on its first beat, stopped_at cleared); the rows
// affected.
Result<std::uint64_t> record_instance_heartbeat(Connection& conn, const InstanceIdentity& instance);

// Marks the instance stopped now (a clean shutdown); the rows affected (0: it never beat).
Result<std::uint64_t> record_instance_stopped(Connection& conn, const std::string& instance_id);

}  // namespace mp::store
