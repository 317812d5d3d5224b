// What inspect_p12 produces is what the APNs client consumes: h2::ClientIdentity::from_der
// accepts the leaf DER and the PKCS#8 key, and a TLS client context can be built from it.
#include <gtest/gtest.h>

#include <variant>

#include "certs/push_certificate.hpp"
#include "h2/tls_client.hpp"
#include "test_certs.hpp"

namespace mp::certs::test {
namespace {

TEST(ClientIdentity, FromDerAcceptsWhatInspectReturns) {
  for (const char* p12 : {"mail.p12", "mail-legacy.p12"}) {
    const auto result = inspect_p12(cert_file(p12), cert_file(std::string(p12) + ".password"),
                                    apple_options("com.example.mail"));
    ASSERT_TRUE(std::holds_alternative<PushCertificate>(result)) << p12;
    const PushCertificate& cert = std::get<PushCertificate>(result);
    auto identity = h2::ClientIdentity::from_der(cert.certificate_der, cert.private_key_der.view());
    ASSERT_TRUE(identity) << identity.error().message;
    EXPECT_EQ(
        X509_cmp(identity->certificate.get(), read_pem_certificate(cert_file("mail.crt")).get()),
        0);
    h2::TlsClientOptions options;
    options.ca_pem = cert_file("apple-ca.crt");
    options.identity = &*identity;
    auto context = h2::make_client_tls_context(options);
    EXPECT_TRUE(context) << context.error().message;
  }
}

// And from_der notices a key that is not the certificate's, so the pairing we return matters.
TEST(ClientIdentity, FromDerRefusesAKeyOfAnotherCertificate) {
  const auto mail = inspect_p12(cert_file("mail.p12"), cert_file("mail.p12.password"),
                                apple_options("com.example.mail"));
  const auto other = inspect_p12(cert_file("other.p12"), cert_file("other.p12.password"),
                                 apple_options("com.example.other"));
  ASSERT_TRUE(std::holds_alternative<PushCertificate>(mail));
  ASSERT_TRUE(std::holds_alternative<PushCertificate>(other));
  EXPECT_FALSE(
      h2::ClientIdentity::from_der(std::get<PushCertificate>(mail).certificate_der,
                                   std::get<PushCertificate>(other).private_key_der.view()));
}

}  // namespace
}  // namespace mp::certs::test
