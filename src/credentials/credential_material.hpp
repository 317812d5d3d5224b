// What is sealed at rest for a credential (certificate, chain, private key) and the label that
// binds a sealed blob to its row. The bytes only ever exist in clear in memory that is wiped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "certs/push_certificate.hpp"
#include "common/result.hpp"
#include "common/secret_bytes.hpp"

namespace mp::credentials {

// "mpc1" | u32 certificate length | certificate DER | u32 chain count | (u32 length | DER)... |
// u32 key length | PKCS#8 key DER, lengths big-endian. A versioned, exact layout: no parsing of
// PEM text, nothing that could be mistaken for another field.
// Chain certificates kept with a credential at most: a push certificate needs one or two (Apple's
// WWDR intermediate); uploads with more are refused before anything is stored.
inline constexpr std::size_t kMaxChainCertificates = 8;
SecretBytes pack_material(const certs::PushCertificate& certificate);

struct CredentialMaterial {
  std::string certificate_der;
  std::vector<std::string> chain_der;
  SecretBytes private_key_der;
};
// Refuses anything that is not exactly one packed material (wrong magic, lengths past the end,
// trailing bytes); the message never holds material.
Result<CredentialMaterial> unpack_material(std::string_view bytes);

// The sealed blob's associated data: the row it belongs to, by public Customer ID and the
// certificate's fingerprint, so a blob copied to another customer's row does not open.
std::string credential_aad(std::string_view customer_id, std::string_view fingerprint_hex);

}  // namespace mp::credentials
