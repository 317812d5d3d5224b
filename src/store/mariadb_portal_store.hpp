// PortalStore on MariaDB: each call is one job on the database pool (one connection, the
// functions of customers.hpp).
#pragma once

#include "store/database_pool.hpp"
#include "store/portal_store.hpp"

namespace mp::store {

class MariadbPortalStore final : public PortalStore {
 public:
  explicit MariadbPortalStore(DatabasePool& pool) : pool_(pool) {}

  boost::asio::awaitable<Result<bool>> invite_usable(const Bytes& invite_hash) override;
  boost::asio::awaitable<Result<CreatedCustomer>> create_customer(const NewCustomer& customer,
                                                                  const NewCredential& credential,
                                                                  const Actor& actor) override;
  boost::asio::awaitable<Result<std::optional<CustomerRow>>> find_customer(
      const PortalCaller& caller) override;
  boost::asio::awaitable<Result<std::optional<CustomerCredentials>>> find_customer_credentials(
      const PortalCaller& caller) override;
  boost::asio::awaitable<Result<std::vector<CredentialRow>>> customer_credentials(
      std::int64_t customer_row_id) override;
  boost::asio::awaitable<Result<std::int64_t>> replace_credential(std::int64_t customer_row_id,
                                                                  const NewCredential& credential,
                                                                  const Actor& actor) override;
  boost::asio::awaitable<Result<bool>> set_customer_state(std::int64_t customer_row_id,
                                                          const std::string& state,
                                                          const Actor& actor) override;
  boost::asio::awaitable<Result<std::optional<bool>>> delete_customer(const PortalCaller& caller,
                                                                      const Actor& actor) override;

 private:
  DatabasePool& pool_;
};

}  // namespace mp::store
