// Apple's push certificates hang under an intermediate (WWDR) below the root: the intermediate
// may come from the .p12's chain or be configured as the anchor itself. Built here in memory:
// root → intermediate → leaf, EC P-256, with the APNs extensions on the leaf.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <string>
#include <variant>

#include "certs/push_certificate.hpp"
#include "test_certs.hpp"

namespace mp::certs::test {
namespace {

EvpPkeyPtr new_key() {
  return EvpPkeyPtr(EVP_EC_gen("P-256"));
}

void add_extension(X509* certificate, int nid, const char* value, X509* issuer) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  ASSERT_NE(extension, nullptr);
  X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
}

void add_apple_null_extension(X509* certificate, const char* oid) {
  ASN1_OBJECT* object = OBJ_txt2obj(oid, 1);
  ASN1_OCTET_STRING* null_der = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(null_der, reinterpret_cast<const unsigned char*>("\x05\x00"), 2);
  X509_EXTENSION* extension = X509_EXTENSION_create_by_OBJ(nullptr, object, 0, null_der);
  X509_add_ext(certificate, extension, -1);
  X509_EXTENSION_free(extension);
  ASN1_OCTET_STRING_free(null_der);
  ASN1_OBJECT_free(object);
}

// A certificate for `key` named `cn` (UID too for a leaf), signed by issuer_key; self-signed
// when issuer is null.
X509Ptr make_certificate(const std::string& cn, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key,
                         bool ca, long serial) {
  X509Ptr certificate(X509_new());
  X509_set_version(certificate.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(certificate.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(certificate.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(certificate.get()), 30L * 24 * 3600);
  X509_NAME* name = X509_get_subject_name(certificate.get());
  if (!ca) {
    X509_NAME_add_entry_by_NID(name, NID_userId, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>("com.example.chain"), -1, -1,
                               0);
  }
  X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(certificate.get(), issuer != nullptr ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(certificate.get(), key);
  X509* signer = issuer != nullptr ? issuer : certificate.get();
  add_extension(certificate.get(), NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE",
                signer);
  add_extension(certificate.get(), NID_subject_key_identifier, "hash", signer);
  if (ca) {
    add_extension(certificate.get(), NID_key_usage, "critical,keyCertSign,cRLSign", signer);
  } else {
    add_apple_null_extension(certificate.get(), "1.2.840.113635.100.6.3.2");
  }
  X509_sign(certificate.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256());
  return certificate;
}

std::string pem_of(X509* certificate) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, certificate);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  return pem;
}

class IntermediateChain : public ::testing::Test {
 protected:
  EvpPkeyPtr root_key = new_key(), intermediate_key = new_key(), leaf_key = new_key();
  X509Ptr root = make_certificate("chain test root", root_key.get(), nullptr, nullptr, true, 1);
  X509Ptr intermediate = make_certificate("chain test WWDR", intermediate_key.get(), root.get(),
                                          root_key.get(), true, 2);
  X509Ptr leaf = make_certificate("Apple Push Services: com.example.chain", leaf_key.get(),
                                  intermediate.get(), intermediate_key.get(), false, 3);

  InspectOptions trusting(X509* anchor) {
    InspectOptions options;
    options.expected_topic = "com.example.chain";
    options.trust_anchors_pem = {pem_of(anchor)};
    options.now = Clock::now();
    return options;
  }
};

TEST_F(IntermediateChain, TheP12SuppliesTheIntermediate) {
  const std::string p12 = make_p12("chain", leaf_key.get(), leaf.get(), {intermediate.get()});
  const auto result = inspect_p12(p12, "chain", trusting(root.get()));
  ASSERT_TRUE(std::holds_alternative<PushCertificate>(result)) << std::get<Refused>(result).message;
  const PushCertificate& cert = std::get<PushCertificate>(result);
  EXPECT_TRUE(cert.production);
  EXPECT_FALSE(cert.development);
  ASSERT_EQ(cert.chain_der.size(), 1u);
  EXPECT_EQ(cert.chain_der[0], der_of(intermediate.get()));
}

TEST_F(IntermediateChain, WithoutTheIntermediateTheIssuerIsUnknown) {
  const std::string p12 = make_p12("chain", leaf_key.get(), leaf.get());
  const auto result = inspect_p12(p12, "chain", trusting(root.get()));
  ASSERT_TRUE(std::holds_alternative<Refused>(result));
  EXPECT_EQ(std::get<Refused>(result).reason, Refusal::unknown_issuer);
  EXPECT_NE(std::get<Refused>(result).message.find("chain test WWDR"), std::string::npos);
}

TEST_F(IntermediateChain, TheIntermediateCanBeTheAnchor) {
  const std::string p12 = make_p12("chain", leaf_key.get(), leaf.get());
  const auto result = inspect_p12(p12, "chain", trusting(intermediate.get()));
  EXPECT_TRUE(std::holds_alternative<PushCertificate>(result));
}

// A leaf whose signature does not verify under the anchor it names is refused too.
TEST_F(IntermediateChain, AForgedSignatureIsRefused) {
  const EvpPkeyPtr impostor = new_key();
  const X509Ptr forged = make_certificate("Apple Push Services: com.example.chain", leaf_key.get(),
                                          intermediate.get(), impostor.get(), false, 4);
  const std::string p12 = make_p12("chain", leaf_key.get(), forged.get());
  const auto result = inspect_p12(p12, "chain", trusting(intermediate.get()));
  ASSERT_TRUE(std::holds_alternative<Refused>(result));
  EXPECT_EQ(std::get<Refused>(result).reason, Refusal::unknown_issuer);
}

}  // namespace
}  // namespace mp::certs::test
