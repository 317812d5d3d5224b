// Building an ApnsCredential: the TLS context of one customer certificate, its expiry and name.
#include "apns/credential.hpp"

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <ctime>

namespace mp::apns {

const char* environment_name(ApnsEnvironment environment) noexcept {
  return environment == ApnsEnvironment::production ? "production" : "development";
}

std::string_view apns_host(ApnsEnvironment environment) noexcept {
  return environment == ApnsEnvironment::production ? "api.push.apple.com"
                                                    : "api.sandbox.push.apple.com";
}

namespace {

std::optional<std::chrono::system_clock::time_point> not_after_of(X509* cert) {
  const ASN1_TIME* t = X509_get0_notAfter(cert);
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

std::string sha256_hex(X509* cert) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (X509_digest(cert, EVP_sha256(), md.data(), &len) != 1) return "";
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 0xf]);
  }
  return out;
}

}  // namespace

Result<ApnsCredential> make_apns_credential(std::string customer_id, ApnsEnvironment environment,
                                            const h2::ClientIdentity& identity,
                                            h2::TlsClientOptions trust) {
  if (customer_id.empty()) return Error{Errc::invalid_argument, "customer id is empty"};
  if (!identity.certificate || !identity.private_key) {
    return Error{Errc::invalid_argument, "the client identity has no certificate or no key"};
  }
  trust.identity = &identity;
  auto tls = h2::make_client_tls_context(trust);
  if (!tls) return std::move(tls).error();
  SSL_CTX_set_mode((*tls)->native_handle(), SSL_MODE_RELEASE_BUFFERS);

  ApnsCredential credential;
  credential.customer_id = std::move(customer_id);
  credential.environment = environment;
  credential.tls = std::move(tls).value();
  credential.not_after = not_after_of(identity.certificate.get());
  credential.fingerprint = sha256_hex(identity.certificate.get());
  return credential;
}

}  // namespace mp::apns
