// Credential material: what is sealed comes back exactly, and anything else is refused.
#include "credentials/credential_material.hpp"

#include <gtest/gtest.h>

namespace mp::credentials {
namespace {

certs::PushCertificate sample(std::size_t chain) {
  certs::PushCertificate c;
  c.certificate_der = std::string("\x30\x82\x00\x01leaf\x00", 9);
  for (std::size_t i = 0; i < chain; ++i) c.chain_der.push_back("ca-" + std::to_string(i));
  const std::string key("\x30\x81key\x00\xff", 7);
  c.private_key_der = SecretBytes(std::string_view(key));
  return c;
}

TEST(CredentialMaterial, RoundTripsExactly) {
  for (std::size_t chain : {0u, 1u, 3u}) {
    const auto packed = pack_material(sample(chain));
    auto back = unpack_material(packed.view());
    ASSERT_TRUE(back.ok()) << back.error().message;
    EXPECT_EQ(back->certificate_der, std::string("\x30\x82\x00\x01leaf\x00", 9));
    ASSERT_EQ(back->chain_der.size(), chain);
    if (chain > 0) {
      EXPECT_EQ(back->chain_der.back(), "ca-" + std::to_string(chain - 1));
    }
    EXPECT_EQ(back->private_key_der.view(), std::string_view("\x30\x81key\x00\xff", 7));
  }
}

TEST(CredentialMaterial, AnythingElseIsRefusedWithoutItsBytes) {
  const auto packed = pack_material(sample(1));
  const std::string good(packed.view());
  std::vector<std::string> bad = {"", "mpc", "mpc2" + good.substr(4), good + "x",
                                  good.substr(0, good.size() - 1)};
  // Every length field pointing past the end.
  std::string huge = good;
  huge[4] = '\x7f';
  bad.push_back(huge);
  for (const auto& b : bad) {
    auto r = unpack_material(b);
    ASSERT_FALSE(r.ok()) << b.size();
    EXPECT_NE(r.error().message.find("damaged"), std::string::npos);
    EXPECT_EQ(r.error().message.find(std::string("\x30\x81key", 5)), std::string::npos);
  }
}

TEST(CredentialMaterial, TheAadNamesTheRow) {
  EXPECT_EQ(credential_aad("dev-abc", "00ff"), "credential:dev-abc:00ff");
  EXPECT_NE(credential_aad("dev-abc", "00ff"), credential_aad("dev-abd", "00ff"));
}

}  // namespace
}  // namespace mp::credentials
