// Shared by the certs tests: the generated test certificates, their manifest, and facts about
// them computed here with OpenSSL directly (independently of src/certs).
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "certs/push_certificate.hpp"
#include "common/openssl_handles.hpp"

namespace mp::certs::test {

using Clock = std::chrono::system_clock;

// A file of the generated set (certs/make-apns-test-certs.sh, made once per build tree).
std::string cert_file(const std::string& name);
const nlohmann::json& manifest();
std::vector<std::string> push_names();  // every <name> of the manifest

// "20261123180000Z" (the script's stamps) → time point.
Clock::time_point stamp_time(const std::string& stamp);

X509Ptr read_pem_certificate(const std::string& pem);
EvpPkeyPtr read_pem_key(const std::string& pem);
std::string der_of(X509* certificate);
std::string sha256_hex(const std::string& bytes);  // EVP_Digest, lower-case hex

// A .p12 made in memory with PKCS12_create (AES defaults); key or certificate may be null.
// iterations / mac_iterations 0 mean OpenSSL's default.
std::string make_p12(const std::string& password, EVP_PKEY* key, X509* certificate,
                     const std::vector<X509*>& chain = {}, int iterations = 0,
                     int mac_iterations = 0);

// Trust the test "Apple" CA, now = the real clock, no topic check.
InspectOptions apple_options(const std::string& expected_topic = "");

}  // namespace mp::certs::test
