// Listener certificates made in memory with OpenSSL for tests (EC P-256, self-signed, SAN
// 127.0.0.1 and localhost), with the serial and validity window a test asks for. Nothing is kept
// in the tree: tests write them to their temp folders.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace mp::test {

struct TestCertificateOptions {
  std::string common_name = "localhost";
  long serial = 1;
  // Relative to now; a window in the past makes an expired certificate.
  std::chrono::seconds not_before = std::chrono::hours(-1);
  std::chrono::seconds not_after = std::chrono::hours(24 * 90);
};

struct TestCertificate {
  std::string cert_pem;
  std::string key_pem;     // unencrypted PKCS#8
  std::string serial_hex;  // lower-case, as certs::ServerCertificate and the logs give it
  // Whether any base64 line of the key's PEM body occurs in `text` (a log, a message).
  bool key_appears_in(const std::string& text) const;
};

TestCertificate make_test_certificate(const TestCertificateOptions& options = {});

// A TLS connection to 127.0.0.1:port that trusts any certificate and tells which one the server
// showed; requests go over the same connection (keep-alive).
class ServedCertificateClient {
 public:
  explicit ServedCertificateClient(std::uint16_t port);  // connects and handshakes, or throws
  ~ServedCertificateClient();
  ServedCertificateClient(const ServedCertificateClient&) = delete;
  ServedCertificateClient& operator=(const ServedCertificateClient&) = delete;
  std::string serial_hex() const;  // of the server's certificate, lower-case
  // GET `target` on this connection: the status line ("HTTP/1.1 200 OK"), or "" on failure.
  std::string get(const std::string& target);
  // GET `target`: the body (Content-Length), or "" on failure.
  std::string get_body(const std::string& target);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string exchange(const std::string& target);  // the whole response
};

}  // namespace mp::test
