// Tests of src/certs/server_certificate: the listener's pair parsed, matched and dated, with
// certificates made in memory (tests/support/test_certificates).
#include "certs/server_certificate.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_certificates.hpp"

namespace mp::certs {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::system_clock;

const ServerPairRefused& refused(const ServerPairResult& r) {
  static const ServerPairRefused none{};
  const auto* p = std::get_if<ServerPairRefused>(&r);
  EXPECT_NE(p, nullptr) << "expected a refusal";
  return p ? *p : none;
}

TEST(ServerCertificate, AMatchingPairGivesItsFacts) {
  const auto pair = mp::test::make_test_certificate({.common_name = "listener.test", .serial = 0x1234});
  const auto r = inspect_server_pair(pair.cert_pem, pair.key_pem);
  ASSERT_TRUE(std::holds_alternative<ServerCertificate>(r)) << refused(r).message;
  const auto& c = std::get<ServerCertificate>(r);
  EXPECT_EQ(c.serial_hex, "1234");
  EXPECT_EQ(c.serial_hex, pair.serial_hex);
  EXPECT_EQ(c.subject, "CN=listener.test");
  EXPECT_EQ(c.fingerprint_sha256_hex.size(), 64u);
  EXPECT_EQ(c.chain_certificates, 0u);
  EXPECT_NEAR(std::chrono::duration<double>(c.not_after - Clock::now()).count(),
              std::chrono::duration<double>(std::chrono::hours(24 * 90)).count(), 120);
  EXPECT_FALSE(check_validity(c, Clock::now()).has_value());
}

TEST(ServerCertificate, ChainCertificatesAfterTheLeafAreCounted) {
  const auto leaf = mp::test::make_test_certificate();
  const auto other = mp::test::make_test_certificate({.serial = 2});
  const auto r = inspect_server_pair(leaf.cert_pem + other.cert_pem, leaf.key_pem);
  ASSERT_TRUE(std::holds_alternative<ServerCertificate>(r)) << refused(r).message;
  EXPECT_EQ(std::get<ServerCertificate>(r).chain_certificates, 1u);
}

TEST(ServerCertificate, AKeyOfAnotherCertificateIsRefused) {
  const auto a = mp::test::make_test_certificate({.serial = 10});
  const auto b = mp::test::make_test_certificate({.serial = 11});
  const auto result = inspect_server_pair(a.cert_pem, b.key_pem);
  const auto& r = refused(result);
  EXPECT_EQ(r.problem, ServerPairProblem::key_mismatch);
  EXPECT_THAT(r.message, HasSubstr("does not belong"));
  EXPECT_THAT(r.message, HasSubstr("serial 0a"));
  EXPECT_THAT(r.message, Not(HasSubstr("PRIVATE KEY")));
}

TEST(ServerCertificate, GarbageEmptyAndTruncatedFilesAreRefused) {
  const auto a = mp::test::make_test_certificate();
  EXPECT_EQ(refused(inspect_server_pair("not a certificate\n", a.key_pem)).problem,
            ServerPairProblem::no_certificate);
  EXPECT_EQ(refused(inspect_server_pair("", a.key_pem)).problem, ServerPairProblem::no_certificate);
  // Half written: the first half of the PEM.
  EXPECT_EQ(
      refused(inspect_server_pair(a.cert_pem.substr(0, a.cert_pem.size() / 2), a.key_pem)).problem,
      ServerPairProblem::no_certificate);
  EXPECT_EQ(refused(inspect_server_pair(a.cert_pem, "")).problem,
            ServerPairProblem::no_private_key);
  EXPECT_EQ(refused(inspect_server_pair(a.cert_pem, a.key_pem.substr(0, 40))).problem,
            ServerPairProblem::no_private_key);
  // The certificate where the key should be.
  EXPECT_EQ(refused(inspect_server_pair(a.cert_pem, a.cert_pem)).problem,
            ServerPairProblem::no_private_key);
}

TEST(ServerCertificate, OversizedFilesAreRefusedBeforeParsing) {
  const auto a = mp::test::make_test_certificate();
  const auto result = inspect_server_pair(a.cert_pem, a.key_pem, 100);
  const auto& r = refused(result);
  EXPECT_EQ(r.problem, ServerPairProblem::too_large);
  EXPECT_THAT(r.message, HasSubstr("certificate file"));
}

TEST(ServerCertificate, ExpiredAndNotYetValidAreToldApartWithTheirDates) {
  const auto expired = mp::test::make_test_certificate({.not_before = -48h, .not_after = -24h});
  const auto r = inspect_server_pair(expired.cert_pem, expired.key_pem);
  ASSERT_TRUE(std::holds_alternative<ServerCertificate>(r)) << "dates are a separate check";
  const auto invalid = check_validity(std::get<ServerCertificate>(r), Clock::now());
  ASSERT_TRUE(invalid.has_value());
  EXPECT_EQ(invalid->problem, ServerPairProblem::expired);
  EXPECT_THAT(invalid->message,
              HasSubstr("expired on " + std::get<ServerCertificate>(r).not_after_utc));

  const auto early = mp::test::make_test_certificate({.not_before = 24h, .not_after = 48h});
  const auto e = inspect_server_pair(early.cert_pem, early.key_pem);
  ASSERT_TRUE(std::holds_alternative<ServerCertificate>(e));
  const auto too_early = check_validity(std::get<ServerCertificate>(e), Clock::now());
  ASSERT_TRUE(too_early.has_value());
  EXPECT_EQ(too_early->problem, ServerPairProblem::not_yet_valid);
  EXPECT_THAT(too_early->message, HasSubstr("clock"));
}

TEST(ServerCertificate, ProblemNamesAreTheLogReasons) {
  EXPECT_STREQ(server_pair_problem_name(ServerPairProblem::key_mismatch), "key_mismatch");
  EXPECT_STREQ(server_pair_problem_name(ServerPairProblem::not_yet_valid), "not_yet_valid");
  EXPECT_TRUE(is_key_problem(ServerPairProblem::no_private_key));
  EXPECT_FALSE(is_key_problem(ServerPairProblem::no_certificate));
}

}  // namespace
}  // namespace mp::certs
