// What apns-sim reads from a provider's client certificate: subject, topics, environments.
#pragma once

#include <openssl/x509.h>

#include <string>
#include <vector>

namespace apns_sim {

struct ClientCertFacts {
  std::string subject;       // "UID=com.example.mail, CN=Apple Push Services: ..., C=US"
  std::string uid;           // the subject's UID (the bundle id), empty when absent
  std::string sha256_hex;    // fingerprint of the DER certificate, lowercase hex, no colons
  bool development = false;  // 1.2.840.113635.100.6.3.1 present
  bool production = false;   // 1.2.840.113635.100.6.3.2 present
  // The UTF8Strings at the top level of the topics extension (1.2.840.113635.100.6.3.6),
  // in order; empty when the extension is absent or unreadable.
  std::vector<std::string> topic_extension;
  bool has_topic_extension = false;

  // The topics this certificate may push to: the extension's, else the UID.
  std::vector<std::string> allowed_topics() const;
};

ClientCertFacts read_client_cert(X509* cert);

}  // namespace apns_sim
