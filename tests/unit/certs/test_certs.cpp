// Helpers of the certs tests: generated files, manifest, independent OpenSSL computations.
#include "test_certs.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>

#include <cstdio>
#include <ctime>
#include <stdexcept>

#include "test_apns_sim.hpp"
#include "test_env.hpp"

namespace mp::certs::test {

std::string cert_file(const std::string& name) {
  return mp::test::read_file(mp::test::apns_test_certs() / name);
}

const nlohmann::json& manifest() {
  static const nlohmann::json parsed = nlohmann::json::parse(cert_file("manifest.json"));
  return parsed;
}

std::vector<std::string> push_names() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : manifest().at("push").items()) names.push_back(name);
  return names;
}

Clock::time_point stamp_time(const std::string& stamp) {
  std::tm t{};
  if (std::sscanf(stamp.c_str(), "%4d%2d%2d%2d%2d%2dZ", &t.tm_year, &t.tm_mon, &t.tm_mday,
                  &t.tm_hour, &t.tm_min, &t.tm_sec) != 6) {
    throw std::runtime_error("bad stamp " + stamp);
  }
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return Clock::from_time_t(timegm(&t));
}

X509Ptr read_pem_certificate(const std::string& pem) {
  const BioPtr bio = memory_bio(pem);
  X509Ptr certificate(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!certificate) throw std::runtime_error("not a PEM certificate");
  return certificate;
}

EvpPkeyPtr read_pem_key(const std::string& pem) {
  const BioPtr bio = memory_bio(pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) throw std::runtime_error("not a PEM key");
  return key;
}

std::string der_of(X509* certificate) {
  unsigned char* out = nullptr;
  const int size = i2d_X509(certificate, &out);
  if (size <= 0) throw std::runtime_error("i2d_X509 failed");
  std::string der(reinterpret_cast<char*>(out), static_cast<std::size_t>(size));
  OPENSSL_free(out);
  return der;
}

std::string sha256_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("EVP_Digest failed");
  }
  std::string hex;
  char two[3];
  for (unsigned int i = 0; i < size; ++i) {
    std::snprintf(two, sizeof two, "%02x", digest[i]);
    hex += two;
  }
  return hex;
}

std::string make_p12(const std::string& password, EVP_PKEY* key, X509* certificate,
                     const std::vector<X509*>& chain, int iterations, int mac_iterations) {
  STACK_OF(X509)* ca = sk_X509_new_null();
  for (X509* c : chain) sk_X509_push(ca, c);
  PKCS12* p12 = PKCS12_create(password.c_str(), "test", key, certificate, ca, 0, 0, iterations,
                              mac_iterations, 0);
  sk_X509_free(ca);
  if (p12 == nullptr) throw std::runtime_error("PKCS12_create failed");
  unsigned char* out = nullptr;
  const int size = i2d_PKCS12(p12, &out);
  PKCS12_free(p12);
  if (size <= 0) throw std::runtime_error("i2d_PKCS12 failed");
  std::string der(reinterpret_cast<char*>(out), static_cast<std::size_t>(size));
  OPENSSL_free(out);
  return der;
}

InspectOptions apple_options(const std::string& expected_topic) {
  InspectOptions options;
  options.expected_topic = expected_topic;
  options.trust_anchors_pem = {cert_file("apple-ca.crt")};
  options.now = Clock::now();
  return options;
}

}  // namespace mp::certs::test
