// The registration API's jobs on the database pool. Jobs hold copies of their arguments: a job
// may outlive a coroutine frame destroyed by a forced stop.
#include "store/mariadb_registration_store.hpp"

#include <boost/asio/use_awaitable.hpp>

namespace mp::store {
namespace asio = boost::asio;

asio::awaitable<Result<KeyedRegistrationResult>> MariadbRegistrationStore::admit_and_register(
    const std::string& customer_id, const Bytes& registration_key_hash, const Admit& admit,
    const CapabilityRegistration& registration, const Actor& actor) {
  // One job: the lookup, the admission and the write on one connection, queued once.
  const DatabasePool::Job<KeyedRegistrationResult> job =
      [customer_id, key_hash = registration_key_hash, admit, registration,
       actor](Connection& conn) -> Result<KeyedRegistrationResult> {
    KeyedRegistrationResult out;
    auto found = find_customer_by_registration_key(conn, customer_id, key_hash);
    if (!found) return std::move(found).error();
    if (!*found) return out;
    out.customer = std::move(**found);
    out.admission = admit(*out.customer);
    if (out.admission.outcome == AdmissionOutcome::refused) return out;
    CapabilityRegistration r = registration;
    r.customer_id = out.customer->id;
    r.refresh_only = out.admission.outcome == AdmissionOutcome::refresh_only;
    auto written = register_with_capability(conn, r, actor);
    if (!written) return std::move(written).error();
    out.written = std::move(*written);
    return out;
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<MoveResult>> MariadbRegistrationStore::move_with_capability(
    const CapabilityMove& move, const Actor& actor) {
  const DatabasePool::Job<MoveResult> job = [move, actor](Connection& conn) {
    return store::move_with_capability(conn, move, actor);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

asio::awaitable<Result<std::optional<Ended>>> MariadbRegistrationStore::unregister_with_capability(
    const Bytes& presented_hash, const Actor& actor) {
  const DatabasePool::Job<std::optional<Ended>> job = [presented_hash, actor](Connection& conn) {
    return store::unregister_with_capability(conn, presented_hash, actor);
  };
  co_return co_await pool_.async_run(job, asio::use_awaitable);
}

}  // namespace mp::store
