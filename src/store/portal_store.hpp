// What the certificate portal reads and writes (store/customers.hpp): invites, customers found by
// the caller's Customer ID or admin key, their credentials, creation, renewal and state changes,
// each one job. MariadbPortalStore is the store; tests use an in-memory one.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/customers.hpp"

namespace mp::store {

// Whom a portal call on /portal/v1/customers/{id} opens: the region admin opens any customer by
// its Customer ID; a customer admin key opens the customer it belongs to, only if that customer
// has the Customer ID of the path. Never a deleted customer.
struct PortalCaller {
  std::string customer_id;              // the Customer ID of the path
  std::optional<Bytes> admin_key_hash;  // SHA-384 of the customer admin key; none: region admin
};

// A customer and its credentials, newest first (no key material).
struct CustomerCredentials {
  CustomerRow customer;
  std::vector<CredentialRow> credentials;
};

// Arguments are references: callers co_await at once and keep them alive meanwhile.
class PortalStore {
 public:
  virtual ~PortalStore() = default;
  // invite_usable: the code exists, is unused and unexpired (not consumed).
  virtual boost::asio::awaitable<Result<bool>> invite_usable(const Bytes& invite_hash) = 0;
  // create_customer: consumes the invite (Errc::not_found when it is no longer usable), inserts
  // the customer and its active credential, audits.
  virtual boost::asio::awaitable<Result<CreatedCustomer>> create_customer(
      const NewCustomer& customer, const NewCredential& credential, const Actor& actor) = 0;
  // The customer `caller` opens; none when it opens none.
  virtual boost::asio::awaitable<Result<std::optional<CustomerRow>>> find_customer(
      const PortalCaller& caller) = 0;
  // The customer `caller` opens and its credentials, in one job.
  virtual boost::asio::awaitable<Result<std::optional<CustomerCredentials>>>
  find_customer_credentials(const PortalCaller& caller) = 0;
  virtual boost::asio::awaitable<Result<std::vector<CredentialRow>>> customer_credentials(
      std::int64_t customer_row_id) = 0;
  // replace_credential: the new one active, the active or expired ones retired, audited;
  // Errc::not_found for a deleted customer. The new credential's id.
  virtual boost::asio::awaitable<Result<std::int64_t>> replace_credential(
      std::int64_t customer_row_id, const NewCredential& credential, const Actor& actor) = 0;
  // set_customer_state: "active", "disabled" or "deleted"; false when nothing changed.
  virtual boost::asio::awaitable<Result<bool>> set_customer_state(std::int64_t customer_row_id,
                                                                  const std::string& state,
                                                                  const Actor& actor) = 0;
  // The customer `caller` opens set to deleted, in one job: none when it opens none, else
  // whether the state changed.
  virtual boost::asio::awaitable<Result<std::optional<bool>>> delete_customer(
      const PortalCaller& caller, const Actor& actor) = 0;
};

}  // namespace mp::store
