// Implementation of instances.hpp.
#include "store/instances.hpp"

namespace mp::store {

Result<std::uint64_t> record_instance_heartbeat(Connection& conn,
                                                const InstanceIdentity& instance) {
  return conn.execute(
      "INSERT INTO instances (instance_id, host_name, version, started_at, heartbeat_at) "
      "VALUES (?, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6)) "
      "ON DUPLICATE KEY UPDATE heartbeat_at = UTC_TIMESTAMP(6), stopped_at = NULL",
      {Value{instance.instance_id}, Value{instance.host_name}, Value{instance.version}});
}

Result<std::uint64_t> record_instance_stopped(Connection& conn, const std::string& instance_id) {
  return conn.execute("UPDATE instances SET stopped_at = UTC_TIMESTAMP(6) WHERE instance_id = ?",
                      {Value{instance_id}});
}

}  // namespace mp::store
