// Loading credentials: unseal, unpack, build the TLS client context; publish atomically.
#include "credentials/credential_registry.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <ctime>

#include "common/log.hpp"
#include "credentials/credential_material.hpp"
#include "keys/envelope.hpp"
#include "store/customers.hpp"

namespace mp::credentials {
namespace asio = boost::asio;

namespace {

// "2027-11-23T17:00:41Z" -> seconds since the epoch (UTC).
std::optional<double> epoch_seconds(const std::string& iso) {
  std::tm tm{};
  if (iso.size() < 19 || strptime(iso.c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr)
    return std::nullopt;
  return static_cast<double>(timegm(&tm));
}

}  // namespace

CredentialRegistry::CredentialRegistry(store::DatabasePool& pool, const keys::KeyRing* ring,
                                       h2::TlsClientOptions apns_trust,
                                       prometheus::Registry& registry)
    : pool_(pool),
      ring_(ring),
      trust_(std::move(apns_trust)),
      not_after_(prometheus::BuildGauge()
                     .Name("mailpush_credential_not_after_seconds")
                     .Help("End of validity (Unix time) of each customer's active APNs "
                           "certificate, as loaded by this instance")
                     .Register(registry)),
      loaded_(prometheus::BuildGauge()
                  .Name("mailpush_credentials_loaded")
                  .Help("Active credentials this instance holds ready to send with")
                  .Register(registry)
                  .Add({})),
      failures_(prometheus::BuildCounter()
                    .Name("mailpush_credential_load_failures_total")
                    .Help("Credentials that could not be opened, by reason")
                    .Register(registry)),
      refreshes_(prometheus::BuildCounter()
                     .Name("mailpush_credential_refreshes_total")
                     .Help("Rereads of the region's credentials")
                     .Register(registry)
                     .Add({})) {}

std::shared_ptr<const LoadedCredential> CredentialRegistry::find(
    const std::string& customer_id) const {
  std::lock_guard lock(mutex_);
  const auto it = by_customer_.find(customer_id);
  return it == by_customer_.end() ? nullptr : it->second;
}

std::size_t CredentialRegistry::size() const {
  std::lock_guard lock(mutex_);
  return by_customer_.size();
}

Result<std::shared_ptr<const LoadedCredential>> open_credential(const keys::KeyRing& ring,
                                                                const store::CredentialRow& row,
                                                                const h2::TlsClientOptions& trust,
                                                                std::string* reason) {
  auto failed = [&](const char* label, Error e) {
    if (reason != nullptr) *reason = label;
    return e;
  };
  auto opened = keys::open(ring, {row.kek_id, row.wrapped_data_key, row.sealed_material},
                           credential_aad(row.customer_id, row.fingerprint_hex));
  if (!opened) return failed("unseal", std::move(opened).error());
  auto material = unpack_material(opened->view());
  if (!material) return failed("unpack", std::move(material).error());
  auto identity =
      h2::ClientIdentity::from_der(material->certificate_der, material->private_key_der.view());
  if (!identity) return failed("identity", std::move(identity).error());
  auto loaded = std::make_shared<LoadedCredential>();
  loaded->credential_id = row.id;
  loaded->topic = row.topic;
  loaded->fingerprint = row.fingerprint_hex;
  loaded->not_after = row.not_after;
  for (auto env : {apns::ApnsEnvironment::development, apns::ApnsEnvironment::production}) {
    const bool allowed =
        env == apns::ApnsEnvironment::development ? row.development : row.production;
    if (!allowed) continue;
    auto credential = apns::make_apns_credential(row.customer_id, env, *identity, trust);
    if (!credential) return failed("tls_context", std::move(credential).error());
    auto shared = std::make_shared<const apns::ApnsCredential>(std::move(*credential));
    (env == apns::ApnsEnvironment::development ? loaded->development : loaded->production) =
        std::move(shared);
  }
  return std::shared_ptr<const LoadedCredential>(std::move(loaded));
}

std::shared_ptr<const LoadedCredential> CredentialRegistry::open(const store::CredentialRow& row) {
  auto fail = [&](const std::string& reason, const std::string& message) {
    std::lock_guard lock(mutex_);
    if (failed_.emplace(row.id, reason).second) {
      failures_.Add({{"reason", reason}}).Increment();
      log::error("credential.load_failed", {{"customer", row.customer_id},
                                            {"credential", row.id},
                                            {"reason", reason},
                                            {"error", message}});
    }
    return nullptr;
  };
  if (ring_ == nullptr) return fail("no_key_file", "portal.kek_file is not configured");
  std::string reason;
  auto loaded = open_credential(*ring_, row, trust_, &reason);
  if (!loaded) return fail(reason, loaded.error().message);
  return std::move(*loaded);
}

namespace {

// One series per environment the credential serves.
template <class Fn>
void for_each_series(const LoadedCredential& loaded, Fn fn) {
  if (loaded.development) fn("development");
  if (loaded.production) fn("production");
}

}  // namespace

void CredentialRegistry::publish(
    std::map<std::string, std::shared_ptr<const LoadedCredential>> next) {
  std::lock_guard lock(mutex_);
  const auto labels = [](const std::string& customer, const LoadedCredential& loaded,
                         const char* environment) {
    return std::map<std::string, std::string>{{"customer", customer},
                                              {"topic", loaded.topic},
                                              {"environment", environment},
                                              {"fingerprint", loaded.fingerprint}};
  };
  // The gauge follows what is loaded: series of replaced or removed credentials go.
  // (Named members, not a structured binding: clang 14 cannot capture bindings in a lambda.)
  for (const auto& entry : by_customer_) {
    const std::string& customer = entry.first;
    const auto& old = entry.second;
    const auto it = next.find(customer);
    if (it != next.end() && it->second->credential_id == old->credential_id) continue;
    for_each_series(*old, [&](const char* env) {
      not_after_.Remove(&not_after_.Add(labels(customer, *old, env)));
    });
  }
  for (const auto& entry : next) {
    const std::string& customer = entry.first;
    const auto& loaded = entry.second;
    if (auto t = epoch_seconds(loaded->not_after)) {
      for_each_series(*loaded, [&](const char* env) {
        not_after_.Add(labels(customer, *loaded, env)).Set(*t);
      });
    }
  }
  by_customer_ = std::move(next);
  loaded_.Set(static_cast<double>(by_customer_.size()));
}

asio::awaitable<Result<std::size_t>> CredentialRegistry::refresh() {
  const store::DatabasePool::Job<std::vector<store::CredentialRow>> job = [](store::Connection& c) {
    return store::active_credentials_sealed(c);
  };
  auto rows = co_await pool_.async_run(job, asio::use_awaitable);
  if (!rows) co_return rows.error();
  refreshes_.Increment();
  std::map<std::string, std::shared_ptr<const LoadedCredential>> next;
  std::size_t opened = 0;
  for (const auto& row : *rows) {
    // One active credential per customer; the newest wins if a race left two.
    if (auto have = find(row.customer_id); have && have->credential_id == row.id) {
      next[row.customer_id] = have;
      continue;
    }
    if (auto loaded = open(row)) {
      log::info("credential.loaded", {{"customer", row.customer_id},
                                      {"credential", row.id},
                                      {"topic", row.topic},
                                      {"not_after", row.not_after},
                                      {"fingerprint", row.fingerprint_hex}});
      next[row.customer_id] = std::move(loaded);
      ++opened;
    }
  }
  publish(std::move(next));
  co_return opened;
}

}  // namespace mp::credentials
