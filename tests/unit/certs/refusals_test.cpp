// Every refusal of inspect_p12 / inspect_pem: the right reason, a message a person can act on,
// never the password, and an OpenSSL error queue left empty.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <random>
#include <string>
#include <variant>
#include <vector>

#include "certs/push_certificate.hpp"
#include "test_certs.hpp"

namespace mp::certs::test {
namespace {

// Every password used below contains this, and no message may.
const std::string kMarker = "Zq7pw-MARKER";

std::string password_of(const std::string& p12) {
  return cert_file(p12 + ".password");
}

// Checks the refusal and everything every refusal must satisfy; returns its message.
std::string expect_refused(const InspectResult& result, Refusal reason,
                           const std::vector<std::string>& secrets = {}) {
  const auto* refused = std::get_if<Refused>(&result);
  if (refused == nullptr) {
    ADD_FAILURE() << "accepted, expected " << refusal_name(reason);
    return "";
  }
  EXPECT_EQ(refused->reason, reason) << refusal_name(refused->reason) << ": " << refused->message;
  EXPECT_GT(refused->message.size(), 20u);
  EXPECT_EQ(refused->message.find(kMarker), std::string::npos) << refused->message;
  for (const std::string& secret : secrets) {
    EXPECT_EQ(refused->message.find(secret), std::string::npos) << "message holds a secret";
  }
  for (char c : refused->message) EXPECT_TRUE(c >= 0x20 && c < 0x7F) << refused->message;
  EXPECT_EQ(ERR_peek_error(), 0ul) << "OpenSSL error queue left non-empty";
  return refused->message;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Refusals, WrongPasswordOnModernAndLegacyFiles) {
  for (const char* file : {"mail.p12", "mail-legacy.p12"}) {
    const std::string message =
        expect_refused(inspect_p12(cert_file(file), "not it " + kMarker, apple_options()),
                       Refusal::wrong_password);
    EXPECT_TRUE(contains(message, "password does not open this file")) << message;
  }
  // An empty password is tried both ways PKCS#12 allows, and is still wrong.
  expect_refused(inspect_p12(cert_file("mail.p12"), "", apple_options()), Refusal::wrong_password);
}

TEST(Refusals, EmptyPasswordFilesOpen) {
  const X509Ptr leaf = read_pem_certificate(cert_file("mail.crt"));
  const EvpPkeyPtr key = read_pem_key(cert_file("mail.key"));
  const auto result = inspect_p12(make_p12("", key.get(), leaf.get()), "", apple_options());
  EXPECT_TRUE(std::holds_alternative<PushCertificate>(result));
}

TEST(Refusals, RandomBytesAreNotPkcs12) {
  std::mt19937 random(20261123);
  for (std::size_t size : {0, 1, 16, 2000, 60000}) {
    std::string bytes(size, '\0');
    for (char& c : bytes) c = static_cast<char>(random());
    const std::string message =
        expect_refused(inspect_p12(bytes, kMarker, apple_options()), Refusal::not_pkcs12);
    EXPECT_TRUE(contains(message, "not a PKCS#12")) << message;
  }
  expect_refused(inspect_p12(cert_file("mail.crt"), kMarker, apple_options()), Refusal::not_pkcs12);
  // Empty views may carry a null pointer.
  expect_refused(inspect_p12(std::string_view{}, std::string_view{}, apple_options()),
                 Refusal::not_pkcs12);
}

TEST(Refusals, TruncatedFileIsDamagedNotAWrongPassword) {
  const std::string p12 = cert_file("mail.p12");
  const std::string password = password_of("mail.p12");
  for (std::size_t keep : {p12.size() - 1, p12.size() / 2, std::size_t{40}}) {
    expect_refused(inspect_p12(p12.substr(0, keep), password, apple_options()), Refusal::not_pkcs12,
                   {password});
  }
}

TEST(Refusals, FileWithoutPrivateKey) {
  const X509Ptr leaf = read_pem_certificate(cert_file("mail.crt"));
  const std::string p12 = make_p12(kMarker, nullptr, leaf.get());
  const std::string message =
      expect_refused(inspect_p12(p12, kMarker, apple_options()), Refusal::no_private_key);
  EXPECT_TRUE(contains(message, "not its private key")) << message;
}

TEST(Refusals, FileWithoutCertificate) {
  const EvpPkeyPtr key = read_pem_key(cert_file("mail.key"));
  const std::string p12 = make_p12(kMarker, key.get(), nullptr);
  expect_refused(inspect_p12(p12, kMarker, apple_options()), Refusal::no_certificate);
  expect_refused(inspect_pem("", cert_file("mail.key"), apple_options()), Refusal::no_certificate);
  expect_refused(inspect_pem(std::string_view{}, std::string_view{}, apple_options()),
                 Refusal::no_certificate);
}

TEST(Refusals, KeyOfAnotherCertificate) {
  // PKCS12_create refuses a mismatched pair, so the certificate goes in as a chain entry.
  const X509Ptr leaf = read_pem_certificate(cert_file("mail.crt"));
  const EvpPkeyPtr other_key = read_pem_key(cert_file("other.key"));
  const std::string p12 = make_p12(kMarker, other_key.get(), nullptr, {leaf.get()});
  const std::string message =
      expect_refused(inspect_p12(p12, kMarker, apple_options()), Refusal::key_mismatch);
  EXPECT_TRUE(contains(message, "com.example.mail")) << message;
  expect_refused(inspect_pem(cert_file("mail.crt"), cert_file("other.key"), apple_options()),
                 Refusal::key_mismatch);
}

TEST(Refusals, PemKeyMissingOrEncrypted) {
  expect_refused(inspect_pem(cert_file("mail.crt"), "no key here", apple_options()),
                 Refusal::no_private_key);
  // An encrypted PEM key is refused, never prompted for.
  const EvpPkeyPtr key = read_pem_key(cert_file("mail.key"));
  BIO* bio = BIO_new(BIO_s_mem());
  ASSERT_EQ(PEM_write_bio_PKCS8PrivateKey(bio, key.get(), EVP_aes_256_cbc(), kMarker.data(),
                                          static_cast<int>(kMarker.size()), nullptr, nullptr),
            1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  const std::string encrypted(data, static_cast<std::size_t>(size));
  BIO_free(bio);
  const std::string message = expect_refused(
      inspect_pem(cert_file("mail.crt"), encrypted, apple_options()), Refusal::no_private_key);
  EXPECT_TRUE(contains(message, "encrypted")) << message;
}

TEST(Refusals, CertificateThatIsNotAnApplePushCertificate) {
  // The simulator's TLS server certificate: valid, signed by the test Apple CA, but no UID and
  // no APNs extension.
  const std::string message =
      expect_refused(inspect_pem(cert_file("server.crt"), cert_file("server.key"), apple_options()),
                     Refusal::not_apple_push);
  EXPECT_TRUE(contains(message, "not an Apple push certificate")) << message;
  EXPECT_TRUE(contains(message, "CN=localhost")) << message;

  const X509Ptr server = read_pem_certificate(cert_file("server.crt"));
  const EvpPkeyPtr key = read_pem_key(cert_file("server.key"));
  expect_refused(inspect_p12(make_p12(kMarker, key.get(), server.get()), kMarker, apple_options()),
                 Refusal::not_apple_push);
}

TEST(Refusals, CertificateForAnotherAppId) {
  const std::string password = password_of("mail.p12");
  const std::string message = expect_refused(
      inspect_p12(cert_file("mail.p12"), password, apple_options("com.example.other")),
      Refusal::topic_mismatch, {password});
  EXPECT_TRUE(contains(message,
                       "the certificate is for com.example.mail, not the App ID com.example.other"))
      << message;
  // The VoIP and complication topics are listed but are not the App ID.
  expect_refused(
      inspect_p12(cert_file("mail.p12"), password, apple_options("com.example.mail.voip")),
      Refusal::topic_mismatch);
  expect_refused(inspect_pem(cert_file("mail-no-topics.crt"), cert_file("mail-no-topics.key"),
                             apple_options("com.example.mail.voip")),
                 Refusal::topic_mismatch);
  // A hostile App ID is quoted as printable text only.
  const std::string hostile = expect_refused(
      inspect_pem(cert_file("mail.crt"), cert_file("mail.key"), apple_options("evil\r\n<b>")),
      Refusal::topic_mismatch);
  EXPECT_TRUE(contains(hostile,
                       "evil?"
                       "?<b>"))
      << hostile;
}

TEST(Refusals, ExpiredCertificateSaysWhen) {
  const auto& entry = manifest().at("push").at("mail-expired");
  const std::string until = entry.at("not_after").get<std::string>();  // 20261024180000Z
  const std::string date = until.substr(0, 4) + "-" + until.substr(4, 2) + "-" + until.substr(6, 2);
  for (const char* p12 : {"mail-expired.p12", "mail-expired-legacy.p12"}) {
    const std::string password = password_of(p12);
    const std::string message =
        expect_refused(inspect_p12(cert_file(p12), password, apple_options("com.example.mail")),
                       Refusal::expired, {password});
    EXPECT_TRUE(contains(message, "expired on " + date)) << message;
    EXPECT_TRUE(contains(message, "(UTC)")) << message;
    EXPECT_TRUE(contains(message, "Apple Developer portal")) << message;
  }
  // One second past not_after is expired; not_after itself is still valid.
  const auto not_after = stamp_time(until);
  InspectOptions options = apple_options();
  options.now = not_after;
  EXPECT_TRUE(std::holds_alternative<PushCertificate>(
      inspect_pem(cert_file("mail-expired.crt"), cert_file("mail-expired.key"), options)));
  options.now = not_after + std::chrono::seconds(1);
  expect_refused(inspect_pem(cert_file("mail-expired.crt"), cert_file("mail-expired.key"), options),
                 Refusal::expired);
}

TEST(Refusals, NotYetValidCertificateSaysFromWhen) {
  const auto& entry = manifest().at("push").at("mail-not-yet-valid");
  const std::string from = entry.at("not_before").get<std::string>();
  const std::string date = from.substr(0, 4) + "-" + from.substr(4, 2) + "-" + from.substr(6, 2);
  const std::string password = password_of("mail-not-yet-valid.p12");
  const std::string message = expect_refused(
      inspect_p12(cert_file("mail-not-yet-valid.p12"), password, apple_options("com.example.mail")),
      Refusal::not_yet_valid, {password});
  EXPECT_TRUE(contains(message, "not valid before " + date)) << message;
  InspectOptions options = apple_options();
  options.now = stamp_time(from) - std::chrono::seconds(1);
  expect_refused(inspect_pem(cert_file("mail-not-yet-valid.crt"),
                             cert_file("mail-not-yet-valid.key"), options),
                 Refusal::not_yet_valid);
  options.now = stamp_time(from);
  EXPECT_TRUE(std::holds_alternative<PushCertificate>(inspect_pem(
      cert_file("mail-not-yet-valid.crt"), cert_file("mail-not-yet-valid.key"), options)));
}

TEST(Refusals, SignedByAnotherCa) {
  const std::string password = password_of("mail-wrong-ca.p12");
  const std::string message = expect_refused(
      inspect_p12(cert_file("mail-wrong-ca.p12"), password, apple_options("com.example.mail")),
      Refusal::unknown_issuer, {password});
  EXPECT_TRUE(contains(message, "signed by O=mailpush tests,CN=mailpush test wrong CA")) << message;
  EXPECT_TRUE(contains(message, "not Apple's push CA")) << message;
  // The wrong CA inside the .p12 as "chain" does not help: it is not an anchor.
  const X509Ptr leaf = read_pem_certificate(cert_file("mail-wrong-ca.crt"));
  const EvpPkeyPtr key = read_pem_key(cert_file("mail-wrong-ca.key"));
  const X509Ptr wrong_ca = read_pem_certificate(cert_file("wrong-ca.crt"));
  expect_refused(inspect_p12(make_p12(kMarker, key.get(), leaf.get(), {wrong_ca.get()}), kMarker,
                             apple_options("com.example.mail")),
                 Refusal::unknown_issuer);
}

TEST(Refusals, NoTrustAnchorMeansNoIssuerIsKnown) {
  InspectOptions options = apple_options();
  options.trust_anchors_pem = {};
  const std::string message = expect_refused(
      inspect_pem(cert_file("mail.crt"), cert_file("mail.key"), options), Refusal::unknown_issuer);
  EXPECT_TRUE(contains(message, "operator")) << message;
  options.trust_anchors_pem = {"not a certificate"};
  expect_refused(inspect_pem(cert_file("mail.crt"), cert_file("mail.key"), options),
                 Refusal::unknown_issuer);
}

TEST(Refusals, OversizedInputIsRefusedBeforeParsing) {
  const std::string p12 = cert_file("mail.p12");
  InspectOptions options = apple_options();
  options.max_bytes = p12.size() - 1;
  const std::string message =
      expect_refused(inspect_p12(p12, password_of("mail.p12"), options), Refusal::too_large);
  EXPECT_TRUE(contains(message, std::to_string(p12.size()) + " bytes")) << message;
  options.max_bytes = p12.size();
  EXPECT_TRUE(
      std::holds_alternative<PushCertificate>(inspect_p12(p12, password_of("mail.p12"), options)));
  // The default cap: 64 KiB.
  expect_refused(inspect_p12(std::string(64 * 1024 + 1, '\x30'), kMarker, apple_options()),
                 Refusal::too_large);
  expect_refused(inspect_pem(std::string(64 * 1024 + 1, 'A'), "", apple_options()),
                 Refusal::too_large);
}

// A file asking for more password hashing than allowed is refused before the work is done.
TEST(Refusals, TooManyPasswordHashingRounds) {
  const X509Ptr leaf = read_pem_certificate(cert_file("mail.crt"));
  const EvpPkeyPtr key = read_pem_key(cert_file("mail.key"));
  const std::string heavy_mac = make_p12(kMarker, key.get(), leaf.get(), {}, 1, 1'000'001);
  const std::string message =
      expect_refused(inspect_p12(heavy_mac, kMarker, apple_options()), Refusal::too_large);
  EXPECT_TRUE(contains(message, "1000001 rounds")) << message;
  const std::string heavy_encryption = make_p12(kMarker, key.get(), leaf.get(), {}, 1'000'001, 1);
  expect_refused(inspect_p12(heavy_encryption, kMarker, apple_options()), Refusal::too_large);
}

// Single-byte changes anywhere in a real file. The MAC covers every byte of the contents, so a
// change there is refused as damaged, as a wrong password (the MAC cannot tell the two apart) or
// as too costly (a changed round count). A few bytes outside it are ignored by OpenSSL (the
// version number, the MAC digest's NULL parameter): the file may then open, but only with the
// very same certificate and key. Never a crash.
TEST(Refusals, EveryFlippedByteIsRefusedOrChangesNothing) {
  const std::string p12 = cert_file("mail-legacy.p12");
  const std::string password = password_of("mail-legacy.p12");
  const auto original = inspect_p12(p12, password, apple_options("com.example.mail"));
  ASSERT_TRUE(std::holds_alternative<PushCertificate>(original));
  const PushCertificate& expected = std::get<PushCertificate>(original);
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < p12.size(); i += 3) {
    std::string changed = p12;
    changed[i] = static_cast<char>(changed[i] ^ 0x41);
    const auto result = inspect_p12(changed, password, apple_options("com.example.mail"));
    if (const auto* cert = std::get_if<PushCertificate>(&result)) {
      ++accepted;
      EXPECT_EQ(cert->certificate_der, expected.certificate_der) << "byte " << i;
      // EXPECT_TRUE, not EXPECT_EQ: a failure must not print key bytes.
      EXPECT_TRUE(cert->private_key_der.view() == expected.private_key_der.view()) << "byte " << i;
      continue;
    }
    const Refusal reason = std::get<Refused>(result).reason;
    EXPECT_TRUE(reason == Refusal::not_pkcs12 || reason == Refusal::wrong_password ||
                reason == Refusal::too_large)
        << "byte " << i << ": " << refusal_name(reason);
    expect_refused(result, reason, {password});
  }
  EXPECT_LE(accepted, 4u);
}

}  // namespace
}  // namespace mp::certs::test
