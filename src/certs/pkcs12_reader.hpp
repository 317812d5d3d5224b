// Reading a PKCS#12 file into certificates and private keys with bounded work: the MAC is checked
// first (wrong password vs damaged file), and every password-hashing step is costed before it
// runs, so a hostile file cannot make us spin. Internal to src/certs.
#pragma once

#include <cstdint>
#include <string_view>
#include <variant>
#include <vector>

#include "certs/push_certificate.hpp"
#include "common/openssl_handles.hpp"

namespace mp::certs::detail {

struct Pkcs12Contents {
  std::vector<X509Ptr> certificates;  // in file order
  std::vector<EvpPkeyPtr> keys;
};

struct Pkcs12Limits {
  // Keychain and OpenSSL use 2,048 rounds; a few tools use up to a few hundred thousand.
  std::int64_t max_rounds = 1'000'000;        // for one key derivation
  std::int64_t max_total_rounds = 3'000'000;  // for the whole file (MAC + every decryption)
  std::size_t max_items = 64;                 // parts + bags; an export holds 2 to 4
  int max_nesting = 3;                        // safeContents inside safeContents
};

// Loads the "default" and "legacy" providers into the default library context, once per
// process. False when the legacy provider is not installed (RC2/3DES files then fail to open).
bool load_pkcs12_providers();

std::variant<Pkcs12Contents, Refused> read_pkcs12(std::string_view der, std::string_view password,
                                                  const Pkcs12Limits& limits = {});

}  // namespace mp::certs::detail
