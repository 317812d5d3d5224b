// The credentials an instance sends with: every active credential of every active customer,
// opened from MariaDB with the region's key ring into ready TLS client contexts, and reread every
// few seconds so that a renewal or a disabled customer reaches every instance of the region
// without a restart. Also the expiry gauge operators alert on.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "apns/credential.hpp"
#include "keys/key_ring.hpp"
#include "store/customers.hpp"
#include "store/database_pool.hpp"

namespace mp::credentials {

// One customer's active credential, opened: what a send needs for each environment it serves.
struct LoadedCredential {
  std::int64_t credential_id = 0;
  std::string topic;
  std::string fingerprint;
  std::string not_after;                                    // ISO 8601 UTC
  std::shared_ptr<const apns::ApnsCredential> development;  // null if not allowed
  std::shared_ptr<const apns::ApnsCredential> production;
};

class CredentialRegistry {
 public:
  // `ring` may be null (no key file): nothing can be opened, every credential counts as failed.
  CredentialRegistry(store::DatabasePool& pool, const keys::KeyRing* ring,
                     h2::TlsClientOptions apns_trust, prometheus::Registry& registry);

  // The customer's active credential, or null (none, customer not active, or it failed to open).
  std::shared_ptr<const LoadedCredential> find(const std::string& customer_id) const;
  std::size_t size() const;

  // Rereads the credentials once: new and changed ones are opened, removed ones dropped. A row
  // that fails to open is logged once and counted; the others are unaffected.
  boost::asio::awaitable<Result<std::size_t>> refresh();

 private:
  std::shared_ptr<const LoadedCredential> open(const store::CredentialRow& row);
  void publish(std::map<std::string, std::shared_ptr<const LoadedCredential>> next);

  store::DatabasePool& pool_;
  const keys::KeyRing* ring_;
  h2::TlsClientOptions trust_;
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const LoadedCredential>> by_customer_;
  std::map<std::int64_t, std::string> failed_;  // credential id -> reason, logged once
  prometheus::Family<prometheus::Gauge>& not_after_;
  prometheus::Gauge& loaded_;
  prometheus::Family<prometheus::Counter>& failures_;
  prometheus::Counter& refreshes_;
};

// Opens one credential row (with its sealed material) into TLS client contexts for the
// environments it serves: unseal with `ring`, unpack, build the identity and the contexts.
// On failure `reason` (when not null) gets a short label for metrics: "unseal", "unpack",
// "identity" or "tls_context"; the message never holds key material.
Result<std::shared_ptr<const LoadedCredential>> open_credential(const keys::KeyRing& ring,
                                                                const store::CredentialRow& row,
                                                                const h2::TlsClientOptions& trust,
                                                                std::string* reason = nullptr);

}  // namespace mp::credentials
