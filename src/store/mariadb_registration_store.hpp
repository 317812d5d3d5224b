// RegistrationStore on MariaDB: each call is one job on the database pool (one connection, the
// functions of registrations.hpp).
#pragma once

#include "store/database_pool.hpp"
#include "store/registration_store.hpp"

namespace mp::store {

class MariadbRegistrationStore final : public RegistrationStore {
 public:
  explicit MariadbRegistrationStore(DatabasePool& pool) : pool_(pool) {}

  boost::asio::awaitable<Result<KeyedRegistrationResult>> admit_and_register(
      const std::string& customer_id, const Bytes& registration_key_hash, const Admit& admit,
      const CapabilityRegistration& registration, const Actor& actor) override;
  boost::asio::awaitable<Result<MoveResult>> move_with_capability(const CapabilityMove& move,
                                                                  const Actor& actor) override;
  boost::asio::awaitable<Result<std::optional<Ended>>> unregister_with_capability(
      const Bytes& presented_hash, const Actor& actor) override;

 private:
  DatabasePool& pool_;
};

}  // namespace mp::store
