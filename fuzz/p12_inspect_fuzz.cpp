// libFuzzer target for inspect_p12: any bytes and any password give a push certificate or a
// refusal, never a crash, leak or hang, and the invariants below hold. Input: the first byte is
// the password's length (low 6 bits; top bit: see with_fresh_mac), then the password, then the
// file.
#include <openssl/err.h>
#include <openssl/pkcs12.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "certs/push_certificate.hpp"
#include "common/crypto.hpp"

namespace {

using namespace mp::certs;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

// The throwaway self-signed "push" certificate of the seeds (fuzz/seeds/p12, UID
// com.example.fuzz, valid 2026-2126); its key was discarded. Trusting it lets inputs that keep
// the seed's MAC and password reach the issuer check and the accepted path.
constexpr const char* kSeedAnchor = R"(-----BEGIN CERTIFICATE-----
MIICljCCAjygAwIBAgIBATAKBggqhkjOPQQDAjBvMSAwHgYKCZImiZPyLGQBAQwQ
Y29tLmV4YW1wbGUuZnV6ejEuMCwGA1UEAwwlQXBwbGUgUHVzaCBTZXJ2aWNlczog
Y29tLmV4YW1wbGUuZnV6ejEbMBkGA1UECgwSbWFpbHB1c2ggZnV6eiBzZWVkMCAX
DTI2MTEyMzE4MjgzNloYDzIxMjYxMDMwMTgyODM2WjBvMSAwHgYKCZImiZPyLGQB
AQwQY29tLmV4YW1wbGUuZnV6ejEuMCwGA1UEAwwlQXBwbGUgUHVzaCBTZXJ2aWNl
czogY29tLmV4YW1wbGUuZnV6ejEbMBkGA1UECgwSbWFpbHB1c2ggZnV6eiBzZWVk
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOwL5WGFFqnuu7gYtC0j8SNI7h2kC
g394hUrB9/IojVg8VtohnuemPpKHu2jvfrSXnyQEft33F2iYnu7EkBx3haOBxjCB
wzAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIChDATBgNVHSUEDDAKBggr
BgEFBQcDAjAQBgoqhkiG92NkBgMBBAIFADAQBgoqhkiG92NkBgMCBAIFADBIBgoq
hkiG92NkBgMGBDowOAwQY29tLmV4YW1wbGUuZnV6ejAFDANhcHAMFWNvbS5leGFt
cGxlLmZ1enoudm9pcDAGDAR2b2lwMB0GA1UdDgQWBBTB7GweyfOOYrnrhlazmsaA
Ew6O9DAKBggqhkjOPQQDAgNIADBFAiAz50xb1mcPwrKbzmuqW/IcpiNNUo4dgZgP
XH7OrvxwUAIhALgs1RRc3L7ZbSfwGZS7ib0QuQGfrf00zYPz41qazAmS
-----END CERTIFICATE-----
)";

const InspectOptions& options() {
  static const InspectOptions o = [] {
    InspectOptions out;
    out.expected_topic = "com.example.fuzz";
    out.trust_anchors_pem = {kSeedAnchor};
    out.now = std::chrono::system_clock::time_point(std::chrono::seconds(1893456000));  // 2030
    out.max_bytes = 16 * 1024;
    return out;
  }();
  return o;
}

void check(const InspectResult& result, std::size_t file_size) {
  require(ERR_peek_error() == 0);  // every failure path leaves the queue as it found it
  if (const auto* refused = std::get_if<Refused>(&result)) {
    require(refusal_name(refused->reason)[0] != '\0');
    require(!refused->message.empty());
    for (char c : refused->message) require(c >= 0x20 && c < 0x7F);  // no bytes of the input
    return;
  }
  const PushCertificate& cert = std::get<PushCertificate>(result);
  require(file_size <= options().max_bytes);
  require(!cert.topic.empty());
  require(cert.development || cert.production);
  require(cert.not_before <= options().now && options().now <= cert.not_after);
  require(!cert.certificate_der.empty() && !cert.private_key_der.empty());
  require(cert.fingerprint_sha256_hex == mp::hex_encode(mp::sha256(cert.certificate_der)));
  require(cert.topic == options().expected_topic ||
          std::find(cert.topics.begin(), cert.topics.end(), options().expected_topic) !=
              cert.topics.end());
}

// The MAC stops almost every mutation at the door. With the first byte's top bit set, a file
// that still parses is given a fresh MAC for the password first, so mutations of its insides
// reach decryption, the bags and the certificate checks.
std::string with_fresh_mac(std::string_view file, std::string_view password) {
  auto p = reinterpret_cast<const unsigned char*>(file.data());
  PKCS12* p12 = d2i_PKCS12(nullptr, &p, static_cast<long>(file.size()));
  std::string out(file);
  if (p12 != nullptr && PKCS12_set_mac(p12, password.data(), static_cast<int>(password.size()),
                                       nullptr, 0, 1, nullptr) == 1) {
    unsigned char* der = nullptr;
    const int size = i2d_PKCS12(p12, &der);
    if (size > 0) out.assign(reinterpret_cast<char*>(der), static_cast<std::size_t>(size));
    OPENSSL_free(der);
  }
  PKCS12_free(p12);
  ERR_clear_error();
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const bool fresh_mac = (data[0] & 0x80) != 0;
  const std::size_t password_size = std::min<std::size_t>(data[0] & 0x3F, size - 1);
  const std::string_view password = input.substr(1, password_size);
  std::string_view file = input.substr(1 + password_size);
  std::string remade;
  if (fresh_mac && !password.empty()) {
    remade = with_fresh_mac(file, password);
    file = remade;
  }
  check(inspect_p12(file, password, options()), file.size());
  return 0;
}
