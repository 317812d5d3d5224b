// Tests of seal/open/rewrap: round trips, the documented format (checked with OpenSSL directly),
// refusal of every altered region, of another aad and of a missing KEK, and rotation.
#include "keys/envelope.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "test_keys.hpp"

namespace mp::keys {
namespace {

using test::expect_no_secret;

constexpr std::string_view kAad = "credential:use1-42:9f86d081884c7d65";

static_assert(!std::is_copy_constructible_v<SecretBytes>, "plaintext must not be copied around");
static_assert(std::is_nothrow_move_constructible_v<SecretBytes>);
static_assert(!std::is_copy_constructible_v<KeyRing>, "key bytes must exist once in memory");

// A KEK the test knows the bytes of, so it can check the format without the code under test.
struct TestKek {
  std::string id;
  Bytes bytes = test::random_key_bytes();
  std::string base64 = test::base64(bytes);
  std::string line(bool active) const {
    return "kek " + id + " " + base64 + (active ? " active" : "") + "\n";
  }
};

KeyRing ring_of(const std::string& text) {
  Result<KeyRing> ring = KeyRing::from_text(text);
  EXPECT_TRUE(ring.ok()) << ring.error().message;
  return std::move(ring).value();
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
  return s;
}

// A material whose text a leak would show: it must never appear in a blob or a message.
const std::string kPem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n";

class EnvelopeTest : public ::testing::Test {
 protected:
  TestKek old_{"kek-old"};
  TestKek new_{"kek-new"};
  KeyRing only_old_ = ring_of(old_.line(false));
  KeyRing only_new_ = ring_of(new_.line(false));
  KeyRing both_ = ring_of(old_.line(false) + new_.line(true));

  Sealed seal_ok(const KeyRing& ring, std::string_view material,
                 std::string_view aad = kAad) const {
    Result<Sealed> sealed = seal(ring, material, aad);
    EXPECT_TRUE(sealed.ok()) << sealed.error().message;
    return sealed.ok() ? std::move(sealed).value() : Sealed{};
  }
  // Expects open to refuse `sealed` with `code`, a message saying so, and nothing secret in it.
  void expect_cannot_open(const KeyRing& ring, const Sealed& sealed, Errc code,
                          std::string_view aad = kAad) const {
    Result<SecretBytes> opened = open(ring, sealed, aad);
    ASSERT_FALSE(opened.ok());
    EXPECT_EQ(opened.error().code, code) << opened.error().message;
    EXPECT_NE(opened.error().message.find("cannot be opened"), std::string::npos)
        << opened.error().message;
    expect_no_secret(opened.error().message, {old_.base64, new_.base64, kPem});
  }
};

TEST_F(EnvelopeTest, RoundTripsEmptyTinyAndLargeMaterial) {
  for (std::size_t size : {0u, 1u, 100u * 1024u}) {
    SCOPED_TRACE(size);
    const std::string material = pattern(size);
    const Sealed sealed = seal_ok(both_, material);
    EXPECT_EQ(sealed.kek_id, "kek-new");
    EXPECT_EQ(sealed.wrapped_data_key.size(), kWrappedDataKeyBytes);
    EXPECT_EQ(sealed.sealed_material.size(), kSealOverheadBytes + size);
    Result<SecretBytes> opened = open(both_, sealed, kAad);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(opened->view(), material);
  }
}

TEST_F(EnvelopeTest, TwoSealsOfTheSameMaterialDiffer) {
  const Sealed a = seal_ok(both_, kPem);
  const Sealed b = seal_ok(both_, kPem);
  EXPECT_NE(a.wrapped_data_key, b.wrapped_data_key);
  EXPECT_NE(a.sealed_material, b.sealed_material);
  // Different nonces and different data keys, not just different tags.
  EXPECT_NE(a.sealed_material.substr(1, kNonceBytes), b.sealed_material.substr(1, kNonceBytes));
  EXPECT_NE(a.sealed_material.substr(1 + kNonceBytes, kPem.size()),
            b.sealed_material.substr(1 + kNonceBytes, kPem.size()));
  EXPECT_EQ(a.sealed_material.find("PRIVATE KEY"), std::string::npos);
}

// Decrypts with OpenSSL directly, following the format written in envelope.hpp.
std::string gcm_decrypt(const Bytes& key, std::string_view blob, const std::string& aad) {
  EXPECT_EQ(static_cast<std::uint8_t>(blob[0]), 1);
  const auto* p = reinterpret_cast<const unsigned char*>(blob.data()) + 1;
  const std::size_t n = blob.size() - 1 - 12 - 16;
  std::string out(n, '\0');
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  int len = 0;
  EXPECT_EQ(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), p), 1);
  EXPECT_EQ(
      EVP_DecryptUpdate(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                        static_cast<int>(aad.size())),
      1);
  if (n > 0) {
    EXPECT_EQ(EVP_DecryptUpdate(ctx, reinterpret_cast<unsigned char*>(out.data()), &len, p + 12,
                                static_cast<int>(n)),
              1);
  }
  std::string tag(reinterpret_cast<const char*>(p + 12 + n), 16);
  EXPECT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag.data()), 1);
  unsigned char last[16];
  EXPECT_EQ(EVP_DecryptFinal_ex(ctx, last, &len), 1) << "tag does not match";
  EVP_CIPHER_CTX_free(ctx);
  return out;
}

TEST_F(EnvelopeTest, FormatIsTheDocumentedAes256GcmEnvelope) {
  const Sealed sealed = seal_ok(both_, kPem);
  const std::string data_key = gcm_decrypt(new_.bytes, sealed.wrapped_data_key,
                                           std::string("\x01mailpush/data-key\0", 19) + "kek-new");
  ASSERT_EQ(data_key.size(), 32u);
  const std::string material =
      gcm_decrypt(Bytes(data_key.begin(), data_key.end()), sealed.sealed_material,
                  std::string("\x01mailpush/material\0", 19) + std::string(kAad));
  EXPECT_EQ(material, kPem);
}

TEST_F(EnvelopeTest, AlteringAnyRegionIsRefused) {
  const Sealed good = seal_ok(both_, kPem);
  struct Region {
    const char* name;
    std::string Sealed::*column;
    std::size_t offset;
    Errc code;
  };
  const std::size_t tag_of_material = good.sealed_material.size() - 1;
  const std::vector<Region> regions = {
      {"wrapped version", &Sealed::wrapped_data_key, 0, Errc::conflict},
      {"wrapped nonce", &Sealed::wrapped_data_key, 1, Errc::invalid_argument},
      {"wrapped nonce end", &Sealed::wrapped_data_key, 12, Errc::invalid_argument},
      {"wrapped ciphertext", &Sealed::wrapped_data_key, 13, Errc::invalid_argument},
      {"wrapped ciphertext end", &Sealed::wrapped_data_key, 44, Errc::invalid_argument},
      {"wrapped tag", &Sealed::wrapped_data_key, 45, Errc::invalid_argument},
      {"wrapped tag end", &Sealed::wrapped_data_key, 60, Errc::invalid_argument},
      {"material version", &Sealed::sealed_material, 0, Errc::conflict},
      {"material nonce", &Sealed::sealed_material, 5, Errc::invalid_argument},
      {"material ciphertext", &Sealed::sealed_material, 13, Errc::invalid_argument},
      {"material ciphertext end", &Sealed::sealed_material, 13 + kPem.size() - 1,
       Errc::invalid_argument},
      {"material tag", &Sealed::sealed_material, tag_of_material - 15, Errc::invalid_argument},
      {"material tag end", &Sealed::sealed_material, tag_of_material, Errc::invalid_argument},
  };
  for (const Region& region : regions) {
    for (std::uint8_t flip : {0x01, 0x80}) {
      SCOPED_TRACE(std::string(region.name) + " ^ " + std::to_string(flip));
      Sealed bad = good;
      (bad.*region.column)[region.offset] ^= static_cast<char>(flip);
      expect_cannot_open(both_, bad, region.code);
    }
  }
  // The untouched row still opens: the refusals above came from the alterations.
  Result<SecretBytes> opened = open(both_, good, kAad);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened->view(), kPem);
}

TEST_F(EnvelopeTest, AnUnknownVersionIsNamed) {
  Sealed bad = seal_ok(both_, kPem);
  bad.wrapped_data_key[0] = 2;
  Result<SecretBytes> opened = open(both_, bad, kAad);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, Errc::conflict);
  EXPECT_NE(opened.error().message.find("format version 2"), std::string::npos)
      << opened.error().message;
}

TEST_F(EnvelopeTest, AlteringTheKekIdIsRefused) {
  const Sealed good = seal_ok(both_, kPem);

  Sealed other = good;  // another key of the ring: the id is bound into the wrapped key
  other.kek_id = "kek-old";
  expect_cannot_open(both_, other, Errc::invalid_argument);

  Sealed unknown = good;  // a key the file does not hold: named, so the operator can restore it
  unknown.kek_id = "kek-gone";
  expect_cannot_open(both_, unknown, Errc::not_found);
  EXPECT_NE(open(both_, unknown, kAad).error().message.find("'kek-gone'"), std::string::npos);

  Sealed garbage = good;  // not an id at all: not echoed
  garbage.kek_id = test::random_key_base64();
  expect_cannot_open(both_, garbage, Errc::invalid_argument);
  expect_no_secret(open(both_, garbage, kAad).error().message, {garbage.kek_id});
}

TEST_F(EnvelopeTest, ADifferentKeyUnderTheSameIdIsRefused) {
  const Sealed sealed = seal_ok(only_new_, kPem);
  const TestKek impostor{"kek-new"};
  const KeyRing wrong = ring_of(impostor.line(true));
  expect_cannot_open(wrong, sealed, Errc::invalid_argument);
  EXPECT_NE(open(wrong, sealed, kAad).error().message.find("different key under that id"),
            std::string::npos);
  expect_no_secret(open(wrong, sealed, kAad).error().message, {impostor.base64});
}

TEST_F(EnvelopeTest, TruncatedAndEmptyBlobsAreRefused) {
  const Sealed good = seal_ok(both_, kPem);
  std::vector<Sealed> bad(6, good);
  bad[0].wrapped_data_key.pop_back();
  bad[1].wrapped_data_key.clear();
  bad[2].wrapped_data_key += '\0';
  bad[3].sealed_material.resize(kSealOverheadBytes - 1);
  bad[4].sealed_material.clear();
  bad[5].sealed_material.pop_back();  // long enough to parse, but the tag is cut
  for (std::size_t i = 0; i < bad.size(); ++i) {
    SCOPED_TRACE(i);
    expect_cannot_open(both_, bad[i], Errc::invalid_argument);
  }
  // Material sealed empty is exactly the overhead and opens.
  const Sealed empty = seal_ok(both_, "");
  EXPECT_EQ(empty.sealed_material.size(), kSealOverheadBytes);
  EXPECT_TRUE(open(both_, empty, kAad).ok());
}

TEST_F(EnvelopeTest, AnotherAadIsRefused) {
  const Sealed sealed = seal_ok(both_, kPem);
  for (std::string_view aad :
       {"credential:use1-43:9f86d081884c7d65", "credential:use1-42:9f86d081884c7d6", "", "x"}) {
    SCOPED_TRACE(aad);
    expect_cannot_open(both_, sealed, Errc::invalid_argument, aad);
  }
}

TEST_F(EnvelopeTest, SealRefusesAnEmptyOrOverlongAad) {
  Result<Sealed> no_aad = seal(both_, kPem, "");
  ASSERT_FALSE(no_aad.ok());
  EXPECT_EQ(no_aad.error().code, Errc::invalid_argument);
  EXPECT_NE(no_aad.error().message.find("aad"), std::string::npos);

  Result<Sealed> long_aad = seal(both_, kPem, std::string(kMaxAadBytes + 1, 'a'));
  ASSERT_FALSE(long_aad.ok());
  EXPECT_EQ(long_aad.error().code, Errc::invalid_argument);
  EXPECT_TRUE(seal(both_, kPem, std::string(kMaxAadBytes, 'a')).ok());
}

TEST_F(EnvelopeTest, RotationRewrapsTheDataKeyAndLeavesTheMaterial) {
  const Sealed before = seal_ok(only_old_, kPem);
  ASSERT_EQ(before.kek_id, "kek-old");

  Result<Sealed> after = rewrap(both_, before);
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(after->kek_id, "kek-new");
  EXPECT_NE(after->wrapped_data_key, before.wrapped_data_key);
  EXPECT_EQ(after->wrapped_data_key.size(), kWrappedDataKeyBytes);
  EXPECT_EQ(after->sealed_material, before.sealed_material);

  // Once rewrapped, the old key can leave the file.
  Result<SecretBytes> with_new = open(only_new_, *after, kAad);
  ASSERT_TRUE(with_new.ok()) << with_new.error().message;
  EXPECT_EQ(with_new->view(), kPem);
  expect_cannot_open(only_old_, *after, Errc::not_found);
  EXPECT_NE(open(only_old_, *after, kAad).error().message.find("'kek-new'"), std::string::npos);

  // And a row not yet rewrapped needs the old key.
  expect_cannot_open(only_new_, before, Errc::not_found);
  EXPECT_TRUE(open(both_, before, kAad).ok());
}

TEST_F(EnvelopeTest, RewrapOfACurrentRowIsUnchanged) {
  const Sealed current = seal_ok(both_, kPem);
  Result<Sealed> again = rewrap(both_, current);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->kek_id, current.kek_id);
  EXPECT_EQ(again->wrapped_data_key, current.wrapped_data_key);
  EXPECT_EQ(again->sealed_material, current.sealed_material);
}

TEST_F(EnvelopeTest, RewrapRefusesADamagedOrUnknownRow) {
  Sealed damaged = seal_ok(only_old_, kPem);
  damaged.wrapped_data_key[20] ^= 1;
  Result<Sealed> r1 = rewrap(both_, damaged);
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.error().code, Errc::invalid_argument);

  Sealed current_but_damaged = seal_ok(both_, kPem);  // even under the active key
  current_but_damaged.wrapped_data_key[50] ^= 1;
  EXPECT_FALSE(rewrap(both_, current_but_damaged).ok());

  Result<Sealed> r2 = rewrap(only_new_, seal_ok(only_old_, kPem));
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, Errc::not_found);
  expect_no_secret(r1.error().message + r2.error().message, {old_.base64, new_.base64, kPem});
}

TEST_F(EnvelopeTest, PlaintextMovesWithoutCopying) {
  Result<SecretBytes> opened = open(both_, seal_ok(both_, kPem), kAad);
  ASSERT_TRUE(opened.ok());
  const std::uint8_t* where = opened->data();
  SecretBytes moved = std::move(*opened);
  EXPECT_EQ(moved.data(), where);
  EXPECT_EQ(moved.view(), kPem);
  EXPECT_TRUE(opened->empty());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  moved.clear();
  EXPECT_TRUE(moved.empty());
}

TEST_F(EnvelopeTest, OneRingServesSeveralThreads) {
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::string material = pattern(static_cast<std::size_t>(t * 37 + i));
        Result<Sealed> sealed = seal(both_, material, kAad);
        if (!sealed) {
          ++failures[t];
          continue;
        }
        Result<SecretBytes> opened = open(both_, *sealed, kAad);
        if (!opened || opened->view() != material) ++failures[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures, std::vector<int>(4, 0));
}

}  // namespace
}  // namespace mp::keys
