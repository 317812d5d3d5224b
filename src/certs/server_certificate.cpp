// Parsing and matching of the listener's certificate chain and key (see server_certificate.hpp).
#include "certs/server_certificate.hpp"

#include <openssl/pem.h>

#include "certs/x509_fields.hpp"
#include "common/crypto.hpp"
#include "common/openssl_handles.hpp"

namespace mp::certs {

using namespace detail;

const char* server_pair_problem_name(ServerPairProblem problem) noexcept {
  switch (problem) {
    case ServerPairProblem::too_large:
      return "too_large";
    case ServerPairProblem::no_certificate:
      return "no_certificate";
    case ServerPairProblem::no_private_key:
      return "no_private_key";
    case ServerPairProblem::key_mismatch:
      return "key_mismatch";
    case ServerPairProblem::expired:
      return "expired";
    case ServerPairProblem::not_yet_valid:
      return "not_yet_valid";
  }
  return "unknown";
}

bool is_key_problem(ServerPairProblem problem) noexcept {
  return problem == ServerPairProblem::no_private_key;
}

namespace {

ServerPairRefused pair_too_large(std::string_view what, std::size_t size, std::size_t limit) {
  return {ServerPairProblem::too_large, std::string(what) + " is " + std::to_string(size) +
                                            " bytes, more than the " + std::to_string(limit) +
                                            " accepted: is it the right file?"};
}

std::optional<ServerPairRefused> read_facts(X509* leaf, ServerCertificate& out) {
  out.subject = printable(rfc2253(X509_get_subject_name(leaf)));
  const auto not_before = certificate_time(X509_get0_notBefore(leaf));
  const auto not_after = certificate_time(X509_get0_notAfter(leaf));
  const std::string der = der_of(leaf);
  if (!not_before || !not_after || der.empty()) {
    return ServerPairRefused{ServerPairProblem::no_certificate,
                             "the certificate " + out.subject +
                                 " has validity dates or an encoding that cannot be read"};
  }
  out.not_before = not_before->point;
  out.not_after = not_after->point;
  out.not_before_utc = utc_text(not_before->parts);
  out.not_after_utc = utc_text(not_after->parts);
  out.serial_hex = serial_hex(leaf);
  out.fingerprint_sha256_hex = hex_encode(sha256(der));
  return std::nullopt;
}

ServerPairRefused no_certificate() {
  return {ServerPairProblem::no_certificate,
          "no PEM certificate (-----BEGIN CERTIFICATE-----) could be read: the file is empty, "
          "damaged or still being written"};
}

}  // namespace

ServerPairResult inspect_server_certificate(std::string_view cert_pem, std::size_t max_bytes) {
  const ErrorQueueScope errors;
  if (cert_pem.size() > max_bytes) {
    return pair_too_large("the certificate file", cert_pem.size(), max_bytes);
  }
  BioPtr bio = memory_bio(cert_pem);
  X509Ptr leaf(PEM_read_bio_X509(bio.get(), nullptr, refuse_password, nullptr));
  if (!leaf) return no_certificate();
  ServerCertificate out;
  if (auto refused = read_facts(leaf.get(), out)) return *refused;
  return out;
}

ServerPairResult inspect_server_pair(std::string_view cert_pem, std::string_view key_pem,
                                     std::size_t max_bytes) {
  const ErrorQueueScope errors;
  if (cert_pem.size() > max_bytes)
    return pair_too_large("the certificate file", cert_pem.size(), max_bytes);
  if (key_pem.size() > max_bytes) return pair_too_large("the key file", key_pem.size(), max_bytes);
  BioPtr cert_bio = memory_bio(cert_pem);
  X509Ptr leaf(PEM_read_bio_X509(cert_bio.get(), nullptr, refuse_password, nullptr));
  if (!leaf) return no_certificate();
  ServerCertificate out;
  while (X509Ptr extra{PEM_read_bio_X509(cert_bio.get(), nullptr, refuse_password, nullptr)}) {
    ++out.chain_certificates;
  }
  BioPtr key_bio = memory_bio(key_pem);
  bool password_asked = false;
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, refuse_password, &password_asked));
  if (!key) {
    return ServerPairRefused{
        ServerPairProblem::no_private_key,
        password_asked ? "the private key is encrypted: give it without a passphrase "
                         "(openssl pkey -in key.pem -out plain.pem), mode 0600"
                       : "no PEM private key (-----BEGIN PRIVATE KEY-----) could be read: the "
                         "file is empty, damaged or still being written"};
  }
  if (auto refused = read_facts(leaf.get(), out)) return *refused;
  if (X509_check_private_key(leaf.get(), key.get()) != 1) {
    return ServerPairRefused{ServerPairProblem::key_mismatch,
                             "the private key does not belong to the certificate " + out.subject +
                                 " (serial " + out.serial_hex +
                                 "): install the key made with this certificate's request, or "
                                 "finish writing both files"};
  }
  return out;
}

std::optional<ServerPairRefused> check_validity(const ServerCertificate& certificate,
                                                std::chrono::system_clock::time_point now) {
  if (now > certificate.not_after) {
    return ServerPairRefused{ServerPairProblem::expired,
                             "the certificate " + certificate.subject + " (serial " +
                                 certificate.serial_hex + ") expired on " +
                                 certificate.not_after_utc + " UTC: install a renewed one"};
  }
  if (now < certificate.not_before) {
    return ServerPairRefused{ServerPairProblem::not_yet_valid,
                             "the certificate " + certificate.subject + " (serial " +
                                 certificate.serial_hex + ") is not valid before " +
                                 certificate.not_before_utc +
                                 " UTC: install it from then on, or check this server's clock"};
  }
  return std::nullopt;
}

}  // namespace mp::certs
