// The portal's jobs on the database pool. Jobs hold copies of their arguments: a job may outlive
// a coroutine frame destroyed by a forced stop.
#include "store/mariadb_portal_store.hpp"

#include <boost/asio/use_awaitable.hpp>

namespace mp::store {
namespace asio = boost::asio;

namespace {

// The customer the caller opens (PortalCaller): by Customer ID for the region admin, by key
// otherwise; none when the key belongs to another customer or the customer is deleted.
Result<std::optional<CustomerRow>> opened_customer(Connection& conn, const PortalCaller& caller) {
  auto found = caller.admin_key_hash ? find_customer_by_admin_key(conn, *caller.admin_key_hash)
                                     : store::find_customer(conn, caller.customer_id);
  if (!found) return found;
  if (!*found || (*found)->customer_id != caller.customer_id || (*found)->state == "deleted")
    return std::optional<CustomerRow>{};
  return found;
}

}  // namespace

asio::awaitable<Result<bool>> MariadbPortalStore::invite_usable(const Bytes& invite_hash) {
  const DatabasePool::Job<bool> job = [invite_hash](Connection& conn) {
    return store::invite_usable(conn, invite_hash);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<CreatedCustomer>> MariadbPortalStore::create_customer(
    const NewCustomer& customer, const NewCredential& credential, const Actor& actor) {
  const DatabasePool::Job<CreatedCustomer> job = [customer, credential, actor](Connection& conn) {
    return store::create_customer(conn, customer, credential, actor);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::optional<CustomerRow>>> MariadbPortalStore::find_customer(
    const PortalCaller& caller) {
  const DatabasePool::Job<std::optional<CustomerRow>> job = [caller](Connection& conn) {
    return opened_customer(conn, caller);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::optional<CustomerCredentials>>>
MariadbPortalStore::find_customer_credentials(const PortalCaller& caller) {
  const DatabasePool::Job<std::optional<CustomerCredentials>> job =
      [caller](Connection& conn) -> Result<std::optional<CustomerCredentials>> {
    auto found = opened_customer(conn, caller);
    if (!found) return std::move(found).error();
    if (!*found) return std::optional<CustomerCredentials>{};
    CustomerCredentials out;
    out.customer = std::move(**found);
    auto creds = store::customer_credentials(conn, out.customer.id);
    if (!creds) return std::move(creds).error();
    out.credentials = std::move(*creds);
    return std::optional<CustomerCredentials>{std::move(out)};
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::vector<CredentialRow>>> MariadbPortalStore::customer_credentials(
    std::int64_t customer_row_id) {
  const DatabasePool::Job<std::vector<CredentialRow>> job = [customer_row_id](Connection& conn) {
    return store::customer_credentials(conn, customer_row_id);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::int64_t>> MariadbPortalStore::replace_credential(
    std::int64_t customer_row_id, const NewCredential& credential, const Actor& actor) {
  const DatabasePool::Job<std::int64_t> job = [customer_row_id, credential,
                                               actor](Connection& conn) {
    return store::replace_credential(conn, customer_row_id, credential, actor);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<bool>> MariadbPortalStore::set_customer_state(std::int64_t customer_row_id,
                                                                     const std::string& state,
                                                                     const Actor& actor) {
  const DatabasePool::Job<bool> job = [customer_row_id, state, actor](Connection& conn) {
    return store::set_customer_state(conn, customer_row_id, state, actor);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::optional<bool>>> MariadbPortalStore::delete_customer(
    const PortalCaller& caller, const Actor& actor) {
  // One job: the lookup and the write on one connection, as the endpoint did.
  const DatabasePool::Job<std::optional<bool>> job =
      [caller, actor](Connection& conn) -> Result<std::optional<bool>> {
    auto found = opened_customer(conn, caller);
    if (!found) return std::move(found).error();
    if (!*found) return std::optional<bool>{};
    auto changed = store::set_customer_state(conn, (*found)->id, "deleted", actor);
    if (!changed) return std::move(changed).error();
    return std::optional<bool>{*changed};
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

}  // namespace mp::store
