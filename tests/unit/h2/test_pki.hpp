// Test certificates made in memory with OpenSSL (EC P-256): a CA, a server certificate for
// 127.0.0.1 / localhost, a client certificate, and a second CA nobody trusts. Nothing on disk.
#pragma once

#include <string>

#include "h2/tls_client.hpp"

namespace mp::h2::test {

struct KeyAndCert {
  EvpPkeyPtr key;
  X509Ptr cert;
  std::string cert_pem() const;
  std::string key_pem() const;
};

struct TestPki {
  KeyAndCert ca;
  KeyAndCert server;  // signed by ca; SAN IP:127.0.0.1, DNS:localhost
  KeyAndCert client;  // signed by ca; CN "mailpush test client", clientAuth
  KeyAndCert other_ca;
  KeyAndCert other_server;  // the same names, signed by other_ca
};

// Made once per process (key generation is the slow part).
const TestPki& test_pki();

}  // namespace mp::h2::test
