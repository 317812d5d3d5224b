// Fields of an X.509 certificate as text and time points, shared by the push-certificate and the
// listener-certificate checks (internal to src/certs).
#pragma once

#include <openssl/asn1.h>
#include <openssl/x509.h>

#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

namespace mp::certs::detail {

// Certificate text quoted in a message (UID, App ID, subject) is shown as printable ASCII only,
// so a hostile certificate cannot put control characters into a log line or a web page.
std::string printable(std::string_view text, std::size_t limit = 200);

std::string rfc2253(const X509_NAME* name);

struct CertificateTime {
  std::chrono::system_clock::time_point point;
  std::tm parts{};
};
// notBefore/notAfter as a time point (clamped to what a time_point holds) and broken down.
std::optional<CertificateTime> certificate_time(const ASN1_TIME* time);
std::string utc_text(const std::tm& t);  // "2026-12-06 03:54"

std::string der_of(X509* certificate);
std::string serial_hex(const X509* certificate);  // lower-case, OpenSSL's BN_bn2hex digits

// A pem_password_cb: never prompt on a terminal for an encrypted PEM; refuse, and note in
// `*asked` (a bool, may be null) that a passphrase was wanted.
int refuse_password(char*, int, int, void* asked);

}  // namespace mp::certs::detail
