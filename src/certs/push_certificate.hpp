// Apple push certificates: open a customer's .p12 (or PEM certificate + key), check that it is an
// Apple push certificate fit for the App ID, and return its facts or the first reason to refuse.
// Pure code: bytes and a clock value in, a value out; no files, no sockets, no logging.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/secret_bytes.hpp"

namespace mp::certs {

// Why an upload is refused, in the order the checks run.
enum class Refusal {
  not_pkcs12,      // not a PKCS#12 file, damaged, or using an encryption we cannot read
  wrong_password,  // the integrity check (MAC) fails with the password given
  no_certificate,  // nothing that is a certificate inside
  no_private_key,  // certificate(s) without their private key (exported without the key)
  key_mismatch,    // a key, but not the certificate's
  not_apple_push,  // no subject UID or no APNs environment extension
  topic_mismatch,  // the certificate is for another App ID
  expired,
  not_yet_valid,
  unknown_issuer,  // does not chain to one of the trust anchors
  too_large,       // over max_bytes, or asks for more password-hashing work than we allow
};
inline constexpr std::size_t kRefusalCount = 11;
static_assert(static_cast<std::size_t>(Refusal::too_large) + 1 == kRefusalCount);

// "wrong_password", ...: the metric label and the API error code.
const char* refusal_name(Refusal reason) noexcept;

struct Refused {
  Refusal reason = Refusal::not_pkcs12;
  std::string message;  // for a person: what is wrong and what to do; never a secret
};

struct InspectOptions {
  std::string expected_topic;  // the App ID typed in the portal; "" = don't check
  // CA certificates in PEM (each string may hold several). Any of them may be the anchor, an
  // intermediate such as Apple's WWDR CA included; the .p12's own chain supplies the rest.
  std::vector<std::string> trust_anchors_pem;
  std::chrono::system_clock::time_point now;  // passed in so tests choose it
  std::size_t max_bytes = 64 * 1024;          // per input, checked before any parsing
};

struct PushCertificate {
  std::string topic;                   // bundle id, from the subject UID
  std::vector<std::string> topics;     // from the topics extension, every kind (may be empty)
  bool development = false;            // 1.2.840.113635.100.6.3.1
  bool production = false;             // 1.2.840.113635.100.6.3.2
  std::string subject, issuer;         // one line, RFC 2253
  std::string serial_hex;              // lower-case
  std::string fingerprint_sha256_hex;  // SHA-256 of certificate_der, lower-case
  std::chrono::system_clock::time_point not_before, not_after;
  std::string certificate_der;         // the leaf
  std::vector<std::string> chain_der;  // the other certificates of the .p12 (may be empty)
  // PKCS#8 PrivateKeyInfo, unencrypted. SENSITIVE: hand it to the key store (encrypted at rest)
  // or to h2::ClientIdentity::from_der, never to a log.
  SecretBytes private_key_der;
};

using InspectResult = std::variant<PushCertificate, Refused>;

// Opens PKCS#12 with OpenSSL 3 (the "legacy" provider is loaded next to "default" once per
// process, so Keychain's RC2/3DES exports open), checks everything and refuses with the first
// reason. The password is used for the file only: never copied into a message.
InspectResult inspect_p12(std::string_view p12, std::string_view password,
                          const InspectOptions& options);

// The same checks on a PEM certificate (leaf first, then its chain) and an unencrypted PEM key.
InspectResult inspect_pem(std::string_view cert_pem, std::string_view key_pem,
                          const InspectOptions& options);

}  // namespace mp::certs
