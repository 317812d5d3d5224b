// An in-memory store::PortalStore with the MariaDB store's rules (store/customers.cpp): one-time
// invites (usable while unused and unexpired, consumed by the creation they let through); unique
// Customer IDs and admin keys; the customer a caller opens (by Customer ID for the region admin,
// by key and Customer ID otherwise, never a deleted one); renewals that retire the active and
// expired credentials; state changes that never leave deleted; an audit row per change. One
// thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "store/portal_store.hpp"

namespace mp::test {

class FakePortalStore final : public store::PortalStore {
 public:
  struct Customer {
    store::CustomerRow row;
    Bytes registration_key_hash;
    Bytes admin_key_hash;
  };
  struct Credential {
    store::CredentialRow row;  // seconds_left is computed when read
    store::NewCredential stored;
    std::chrono::system_clock::time_point not_after;
  };
  struct Invite {
    Bytes code_hash;
    bool expired = false;
    std::optional<std::int64_t> used_by;  // the customer's row id
  };
  struct Audit {
    std::string actor;
    std::string source_address;
    std::string action;
    std::optional<std::int64_t> customer;
    std::string detail;
  };

  // A usable invite for `code` (its SHA-384 is kept); `expired` makes one past its time.
  void add_invite(std::string_view code, bool expired = false);
  // The next call fails with `code` (the database went away: Errc::unavailable).
  void fail_next_call(Errc code) { fail_after(0, code); }
  // The call after the next `calls` calls fails with `code` (a renewal is three calls: the
  // customer, its credentials, the replacement).
  void fail_after(std::size_t calls, Errc code) { failure_ = Failure{calls_ + calls + 1, code}; }
  // Every call from now on fails with `code`, until cleared with std::nullopt.
  void fail_every_call(std::optional<Errc> code) { every_failure_ = code; }
  // The next create_customer finds its invite used, as when a second upload with the same code
  // won the race between invite_usable and the creation.
  void use_invites_before_create() { use_invites_before_create_ = true; }

  // What the store holds and was asked.
  const Customer* customer(std::string_view customer_id) const;
  std::size_t customer_count() const { return customers_.size(); }
  // A customer's credentials, oldest first.
  std::vector<const Credential*> credentials_of(std::int64_t customer_row_id) const;
  const std::vector<Invite>& invites() const { return invites_; }
  const std::vector<Audit>& audit() const { return audit_; }
  std::size_t calls() const { return calls_; }

  boost::asio::awaitable<Result<bool>> invite_usable(const Bytes& invite_hash) override;
  boost::asio::awaitable<Result<store::CreatedCustomer>> create_customer(
      const store::NewCustomer& customer, const store::NewCredential& credential,
      const store::Actor& actor) override;
  boost::asio::awaitable<Result<std::optional<store::CustomerRow>>> find_customer(
      const store::PortalCaller& caller) override;
  boost::asio::awaitable<Result<std::optional<store::CustomerCredentials>>>
  find_customer_credentials(const store::PortalCaller& caller) override;
  boost::asio::awaitable<Result<std::vector<store::CredentialRow>>> customer_credentials(
      std::int64_t customer_row_id) override;
  boost::asio::awaitable<Result<std::int64_t>> replace_credential(
      std::int64_t customer_row_id, const store::NewCredential& credential,
      const store::Actor& actor) override;
  boost::asio::awaitable<Result<bool>> set_customer_state(std::int64_t customer_row_id,
                                                          const std::string& state,
                                                          const store::Actor& actor) override;
  boost::asio::awaitable<Result<std::optional<bool>>> delete_customer(
      const store::PortalCaller& caller, const store::Actor& actor) override;

 private:
  std::optional<Error> take_failure();
  Invite* usable_invite(const Bytes& code_hash);
  std::optional<store::CustomerRow> opened_customer(const store::PortalCaller& caller) const;
  std::vector<store::CredentialRow> credential_rows(std::int64_t customer_row_id) const;
  std::int64_t insert_credential(std::int64_t customer_row_id, const store::NewCredential& k);
  Result<bool> change_state(std::int64_t customer_row_id, const std::string& state,
                            const store::Actor& actor);
  void write_audit(const store::Actor& actor, std::string action,
                   std::optional<std::int64_t> customer, std::string detail);

  std::map<std::int64_t, Customer> customers_;
  std::map<std::int64_t, Credential> credentials_;
  std::vector<Invite> invites_;
  std::vector<Audit> audit_;
  std::int64_t next_id_ = 1;
  struct Failure {
    std::size_t call = 0;  // the value of calls_ that fails
    Errc code = Errc::internal;
  };
  std::optional<Failure> failure_;
  std::optional<Errc> every_failure_;
  bool use_invites_before_create_ = false;
  std::size_t calls_ = 0;
};

}  // namespace mp::test
