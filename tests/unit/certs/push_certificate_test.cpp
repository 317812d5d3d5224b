// Every push certificate of certs/make-apns-test-certs.sh, as AES .p12, legacy (RC2/3DES, as
// Keychain exports) .p12 and PEM, gives the facts its manifest entry and its .crt say.
#include "certs/push_certificate.hpp"

#include <gtest/gtest.h>
#include <openssl/x509.h>

#include <algorithm>
#include <string>
#include <variant>
#include <vector>

#include "test_certs.hpp"

namespace mp::certs::test {
namespace {

enum class Form { p12, p12_legacy, pem };

const char* form_name(Form form) {
  switch (form) {
    case Form::p12:
      return "p12";
    case Form::p12_legacy:
      return "legacy_p12";
    case Form::pem:
      return "pem";
  }
  return "?";
}

struct Variant {
  std::string name;
  Form form;
};

std::vector<Variant> all_variants() {
  std::vector<Variant> out;
  for (const std::string& name : push_names()) {
    for (Form form : {Form::p12, Form::p12_legacy, Form::pem}) out.push_back({name, form});
  }
  return out;
}

InspectResult inspect(const Variant& v, const InspectOptions& options) {
  const auto& entry = manifest().at("push").at(v.name);
  switch (v.form) {
    case Form::p12: {
      const std::string file = entry.at("p12").get<std::string>();
      return inspect_p12(cert_file(file), cert_file(file + ".password"), options);
    }
    case Form::p12_legacy: {
      const std::string file = entry.at("p12_legacy").get<std::string>();
      return inspect_p12(cert_file(file), cert_file(file + ".password"), options);
    }
    case Form::pem:
      return inspect_pem(cert_file(entry.at("cert").get<std::string>()),
                         cert_file(entry.at("key").get<std::string>()), options);
  }
  return Refused{};
}

std::string describe(const InspectResult& result) {
  if (const auto* refused = std::get_if<Refused>(&result)) {
    return std::string(refusal_name(refused->reason)) + ": " + refused->message;
  }
  return "accepted";
}

class EveryVariant : public ::testing::TestWithParam<Variant> {};

// Inside its own validity window and with both test CAs trusted, every variant is accepted and
// its facts match the manifest and an independent reading of its .crt.
TEST_P(EveryVariant, GivesTheFactsOfItsCertificate) {
  const Variant& v = GetParam();
  const auto& entry = manifest().at("push").at(v.name);
  const std::string bundle = entry.at("bundle_id").get<std::string>();
  const auto not_before = stamp_time(entry.at("not_before").get<std::string>());
  const auto not_after = stamp_time(entry.at("not_after").get<std::string>());

  InspectOptions options;
  options.expected_topic = bundle;
  options.trust_anchors_pem = {cert_file("apple-ca.crt"), cert_file("wrong-ca.crt")};
  options.now = not_before + std::chrono::hours(1);
  const InspectResult result = inspect(v, options);
  ASSERT_TRUE(std::holds_alternative<PushCertificate>(result)) << describe(result);
  const PushCertificate& cert = std::get<PushCertificate>(result);

  EXPECT_EQ(cert.topic, bundle);
  std::vector<std::string> topics;
  if (entry.at("topics_extension").get<bool>()) topics = entry.at("topics");
  EXPECT_EQ(cert.topics, topics);
  const auto& environments = entry.at("environments");
  const auto has = [&](const char* e) {
    return std::find(environments.begin(), environments.end(), e) != environments.end();
  };
  EXPECT_EQ(cert.development, has("development"));
  EXPECT_EQ(cert.production, has("production"));
  EXPECT_EQ(cert.not_before, not_before);
  EXPECT_EQ(cert.not_after, not_after);

  const X509Ptr crt = read_pem_certificate(cert_file(entry.at("cert").get<std::string>()));
  const std::string der = der_of(crt.get());
  EXPECT_EQ(cert.certificate_der, der);
  EXPECT_EQ(cert.fingerprint_sha256_hex, sha256_hex(der));
  EXPECT_TRUE(cert.chain_der.empty());

  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(crt.get()), nullptr);
  char* hex = BN_bn2hex(serial);
  std::string expected_serial(hex);
  OPENSSL_free(hex);
  BN_free(serial);
  std::transform(expected_serial.begin(), expected_serial.end(), expected_serial.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_EQ(cert.serial_hex, expected_serial);

  EXPECT_NE(cert.subject.find("UID=" + bundle), std::string::npos) << cert.subject;
  EXPECT_NE(cert.subject.find("CN=Apple Push Services: " + bundle), std::string::npos);
  EXPECT_NE(cert.subject.find("OU=" + manifest().at("team_id").get<std::string>()),
            std::string::npos);
  EXPECT_EQ(cert.subject.find('\n'), std::string::npos);
  const std::string issuer_cn =
      entry.at("issuer") == "apple-ca" ? "CN=mailpush test Apple CA" : "CN=mailpush test wrong CA";
  EXPECT_NE(cert.issuer.find(issuer_cn), std::string::npos) << cert.issuer;

  // The key is the one of the .key file, as PKCS#8.
  const EvpPkeyPtr expected_key = read_pem_key(cert_file(entry.at("key").get<std::string>()));
  const unsigned char* p = cert.private_key_der.data();
  PKCS8_PRIV_KEY_INFO* p8 =
      d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(cert.private_key_der.size()));
  ASSERT_NE(p8, nullptr);
  EXPECT_EQ(p, cert.private_key_der.data() + cert.private_key_der.size());
  EvpPkeyPtr key(EVP_PKCS82PKEY(p8));
  PKCS8_PRIV_KEY_INFO_free(p8);
  ASSERT_TRUE(key);
  EXPECT_EQ(EVP_PKEY_eq(key.get(), expected_key.get()), 1);
}

INSTANTIATE_TEST_SUITE_P(Generated, EveryVariant, ::testing::ValuesIn(all_variants()),
                         [](const auto& info) {
                           std::string name = info.param.name + "_" + form_name(info.param.form);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(PushCertificate, TheSetCoversEveryVariantTheScriptPromises) {
  const auto names = push_names();
  for (const char* expected : {"mail", "mail-dev", "mail-prod", "mail-no-topics", "other",
                               "mail-expired", "mail-not-yet-valid", "mail-wrong-ca"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
}

TEST(PushCertificate, ValidOnesAreAcceptedTodayWithOnlyTheAppleCaTrusted) {
  for (const char* name : {"mail", "mail-dev", "mail-prod", "mail-no-topics"}) {
    for (Form form : {Form::p12, Form::p12_legacy, Form::pem}) {
      const auto result = inspect({name, form}, apple_options("com.example.mail"));
      EXPECT_TRUE(std::holds_alternative<PushCertificate>(result))
          << name << " " << form_name(form) << ": " << describe(result);
    }
  }
  const auto other = inspect({"other", Form::p12}, apple_options("com.example.other"));
  EXPECT_TRUE(std::holds_alternative<PushCertificate>(other)) << describe(other);
}

TEST(PushCertificate, NoExpectedTopicSkipsTheTopicCheck) {
  const auto result = inspect({"other", Form::p12}, apple_options(""));
  ASSERT_TRUE(std::holds_alternative<PushCertificate>(result)) << describe(result);
  EXPECT_EQ(std::get<PushCertificate>(result).topic, "com.example.other");
}

// The .p12's other certificates are its chain; they come back as DER in file order.
TEST(PushCertificate, ChainCertificatesOfTheP12AreReturned) {
  const X509Ptr leaf = read_pem_certificate(cert_file("mail.crt"));
  const EvpPkeyPtr key = read_pem_key(cert_file("mail.key"));
  const X509Ptr ca = read_pem_certificate(cert_file("apple-ca.crt"));
  const std::string p12 = make_p12("chain test", key.get(), leaf.get(), {ca.get()});
  const auto result = inspect_p12(p12, "chain test", apple_options("com.example.mail"));
  ASSERT_TRUE(std::holds_alternative<PushCertificate>(result)) << describe(result);
  const PushCertificate& cert = std::get<PushCertificate>(result);
  EXPECT_EQ(cert.certificate_der, der_of(leaf.get()));
  ASSERT_EQ(cert.chain_der.size(), 1u);
  EXPECT_EQ(cert.chain_der[0], der_of(ca.get()));
}

TEST(PushCertificate, RefusalNamesAreTheApiCodes) {
  EXPECT_STREQ(refusal_name(Refusal::not_pkcs12), "not_pkcs12");
  EXPECT_STREQ(refusal_name(Refusal::wrong_password), "wrong_password");
  EXPECT_STREQ(refusal_name(Refusal::no_certificate), "no_certificate");
  EXPECT_STREQ(refusal_name(Refusal::no_private_key), "no_private_key");
  EXPECT_STREQ(refusal_name(Refusal::key_mismatch), "key_mismatch");
  EXPECT_STREQ(refusal_name(Refusal::not_apple_push), "not_apple_push");
  EXPECT_STREQ(refusal_name(Refusal::topic_mismatch), "topic_mismatch");
  EXPECT_STREQ(refusal_name(Refusal::expired), "expired");
  EXPECT_STREQ(refusal_name(Refusal::not_yet_valid), "not_yet_valid");
  EXPECT_STREQ(refusal_name(Refusal::unknown_issuer), "unknown_issuer");
  EXPECT_STREQ(refusal_name(Refusal::too_large), "too_large");
}

}  // namespace
}  // namespace mp::certs::test
