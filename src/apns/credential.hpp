// The customer credential an ApnsConnectionPool sends with, and the APNs hosts it sends to.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "h2/tls_client.hpp"

namespace mp::apns {

enum class ApnsEnvironment { development, production };

// "development" / "production": metric labels and log fields.
const char* environment_name(ApnsEnvironment environment) noexcept;
// api.sandbox.push.apple.com / api.push.apple.com (port 443, or 2197 where 443 is blocked).
std::string_view apns_host(ApnsEnvironment environment) noexcept;
inline constexpr std::uint16_t kApnsPort = 443;

// What a pool needs of a customer's push certificate. The private key lives only inside `tls`
// (OpenSSL's copy); nothing here may be logged except customer_id and fingerprint.
struct ApnsCredential {
  std::string customer_id;  // the public Customer ID: the `customer` metric label, log field
  ApnsEnvironment environment = ApnsEnvironment::production;
  std::shared_ptr<boost::asio::ssl::context> tls;  // client identity + server trust
  // When set and past, the pool does not even connect: Apple would refuse the handshake.
  std::optional<std::chrono::system_clock::time_point> not_after;
  std::string fingerprint;  // SHA-256 of the certificate (hex), to name it in logs
};

// Builds the credential from a client identity held in memory: the TLS context of
// h2::make_client_tls_context (TLS 1.2+, ALPN h2, server verification by `trust`), with
// SSL_MODE_RELEASE_BUFFERS so an idle connection gives its TLS buffers (~34 KiB) back: a
// region holds one idle connection per customer. not_after and fingerprint come from the
// certificate. `trust.identity` is ignored; `identity` is used.
Result<ApnsCredential> make_apns_credential(std::string customer_id, ApnsEnvironment environment,
                                            const h2::ClientIdentity& identity,
                                            h2::TlsClientOptions trust);

}  // namespace mp::apns
