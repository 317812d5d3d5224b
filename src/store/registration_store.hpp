// What the registration API reads and writes (store/registrations.hpp): the customer by its
// registration key and the registration it asks for, in one job; moves and ends by capability.
// MariadbRegistrationStore is the store; tests use an in-memory one.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "store/customers.hpp"
#include "store/registrations.hpp"

namespace mp::store {

// What the registration service let a customer its key found do (its state, its call limit).
enum class AdmissionOutcome {
  admitted,      // register
  refresh_only,  // over its call limit: only a real refresh (CapabilityRegistration::refresh_only)
  refused,       // write nothing
};
struct AdmissionResult {
  AdmissionOutcome outcome = AdmissionOutcome::refused;
  std::chrono::seconds retry_after{0};  // over the call limit: when the next call may go
};

// What admit_and_register did.
struct KeyedRegistrationResult {
  // The customer the Customer ID and key found; none when either is wrong (nothing written).
  std::optional<RegistrationCustomer> customer;
  AdmissionResult admission;                // what admit said of it
  std::optional<CapabilityResult> written;  // register_with_capability's answer when admitted
};

// Arguments are references: callers co_await at once and keep them alive meanwhile.
class RegistrationStore {
 public:
  // Called between the lookup and the write, on the store's thread: quick, no I/O.
  using Admit = std::function<AdmissionResult(const RegistrationCustomer&)>;

  virtual ~RegistrationStore() = default;
  // find_customer_by_registration_key, then `admit` for the customer found, then, unless it
  // refused, register_with_capability for that customer (its row id and refresh_only filled in).
  virtual boost::asio::awaitable<Result<KeyedRegistrationResult>> admit_and_register(
      const std::string& customer_id, const Bytes& registration_key_hash, const Admit& admit,
      const CapabilityRegistration& registration, const Actor& actor) = 0;
  virtual boost::asio::awaitable<Result<MoveResult>> move_with_capability(
      const CapabilityMove& move, const Actor& actor) = 0;
  virtual boost::asio::awaitable<Result<std::optional<Ended>>> unregister_with_capability(
      const Bytes& presented_hash, const Actor& actor) = 0;
};

}  // namespace mp::store
