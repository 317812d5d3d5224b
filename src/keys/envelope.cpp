// Envelope encryption: AES-256-GCM for both the material and the data key.
//
// The data key is wrapped with AES-256-GCM rather than AES key wrap with padding (RFC 5649,
// id-aes256-wrap-pad): key wrap takes no associated data, so binding the kek id and the format
// version would need a second primitive, while GCM binds them with the one already used for the
// material. Key wrap's strength, needing no nonce, does not matter here: one KEK wraps one data
// key per credential seal or rotation, thousands in a region, far below the 2^32 random-nonce
// encryptions per key that NIST SP 800-38D allows.
#include "keys/envelope.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <memory>
#include <span>

#include "common/openssl_handles.hpp"

namespace mp::keys {

namespace detail {
// KeyRing's friend: the one place outside the ring that reaches key bytes.
struct KekAccess {
  static const SecretBytes* find(const KeyRing& ring, std::string_view id) noexcept {
    return ring.find(id);
  }
};
}  // namespace detail

namespace {

constexpr const char* kCannotOpen = "credential cannot be opened: ";

// Fetched once: OpenSSL 3 would otherwise look the algorithm up on every call.
const EVP_CIPHER* aes_256_gcm() {
  static const EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (cipher == nullptr) std::abort();  // OpenSSL 3 without its default provider: cannot start
  return cipher;
}

std::uint8_t* bytes_of(std::string& s) {
  return reinterpret_cast<std::uint8_t*>(s.data());
}
const std::uint8_t* bytes_of(std::string_view s) {
  return reinterpret_cast<const std::uint8_t*>(s.data());
}

std::string make_aad(std::string_view label, std::string_view field) {
  std::string aad;
  aad.reserve(1 + label.size() + 1 + field.size());
  aad.push_back(static_cast<char>(kFormatVersion));
  aad.append(label);
  aad.push_back('\0');
  aad.append(field);
  return aad;
}
std::string data_key_aad(std::string_view kek_id) {
  return make_aad("mailpush/data-key", kek_id);
}
std::string material_aad(std::string_view aad) {
  return make_aad("mailpush/material", aad);
}

Error openssl_failed(const char* what) {
  return make_error(Errc::internal, std::string("OpenSSL failed to ") + what);
}

// Encrypts `plaintext` into out = nonce | ciphertext | tag (out has room for exactly that).
Status gcm_seal(std::span<const std::uint8_t> key, std::span<const std::uint8_t> plaintext,
                std::string_view aad, std::uint8_t* out) {
  std::uint8_t* nonce = out;
  std::uint8_t* ciphertext = out + kNonceBytes;
  std::uint8_t* tag = ciphertext + plaintext.size();
  if (RAND_bytes(nonce, static_cast<int>(kNonceBytes)) != 1) {
    return make_error(Errc::internal, "the random number generator failed");
  }
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex2(ctx.get(), aes_256_gcm(), key.data(), nonce, nullptr) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes_of(aad), static_cast<int>(aad.size())) !=
          1) {
    return openssl_failed("start AES-256-GCM encryption");
  }
  if (!plaintext.empty() && (EVP_EncryptUpdate(ctx.get(), ciphertext, &len, plaintext.data(),
                                               static_cast<int>(plaintext.size())) != 1 ||
                             static_cast<std::size_t>(len) != plaintext.size())) {
    return openssl_failed("encrypt with AES-256-GCM");
  }
  if (EVP_EncryptFinal_ex(ctx.get(), ciphertext + plaintext.size(), &len) != 1 || len != 0 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagBytes), tag) !=
          1) {
    return openssl_failed("finish AES-256-GCM encryption");
  }
  return {};
}

// Decrypts in = nonce | ciphertext | tag into a buffer the size of the ciphertext. False when
// the tag does not match (the buffer's unauthenticated bytes are wiped with it).
Result<bool> gcm_open(std::span<const std::uint8_t> key, std::span<const std::uint8_t> in,
                      std::string_view aad, SecretBytes& out) {
  const std::uint8_t* nonce = in.data();
  const std::size_t ciphertext_size = in.size() - kNonceBytes - kTagBytes;
  const std::uint8_t* ciphertext = nonce + kNonceBytes;
  // EVP_CTRL_AEAD_SET_TAG takes a non-const pointer; it only reads.
  std::uint8_t tag[kTagBytes];
  std::copy(ciphertext + ciphertext_size, ciphertext + ciphertext_size + kTagBytes, tag);

  out = SecretBytes(ciphertext_size);
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex2(ctx.get(), aes_256_gcm(), key.data(), nonce, nullptr) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes_of(aad), static_cast<int>(aad.size())) !=
          1) {
    return openssl_failed("start AES-256-GCM decryption");
  }
  if (ciphertext_size > 0 && (EVP_DecryptUpdate(ctx.get(), out.data(), &len, ciphertext,
                                                static_cast<int>(ciphertext_size)) != 1 ||
                              static_cast<std::size_t>(len) != ciphertext_size)) {
    return openssl_failed("decrypt with AES-256-GCM");
  }
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagBytes), tag) !=
      1) {
    return openssl_failed("set the AES-256-GCM tag");
  }
  std::uint8_t final_block[16];
  if (EVP_DecryptFinal_ex(ctx.get(), final_block, &len) != 1) {
    out.clear();
    return false;
  }
  return true;
}

// Checks a blob's version byte and length; `column` names it for the operator.
Status check_layout(std::string_view blob, const char* column, std::size_t min_size,
                    std::size_t max_size) {
  if (blob.empty()) {
    return make_error(Errc::invalid_argument, std::string(kCannotOpen) + "its " + column +
                                                  " is empty (the row is damaged)");
  }
  const auto version = static_cast<std::uint8_t>(blob[0]);
  if (version != kFormatVersion) {
    return make_error(Errc::conflict, std::string(kCannotOpen) + "its " + column +
                                          " is in format version " + std::to_string(version) +
                                          ", which this build does not know (only " +
                                          std::to_string(kFormatVersion) +
                                          "); the row is damaged or was written by a newer "
                                          "mailpush");
  }
  if (blob.size() < min_size || blob.size() > max_size) {
    return make_error(Errc::invalid_argument, std::string(kCannotOpen) + "its " + column +
                                                  " is truncated or damaged (" +
                                                  std::to_string(blob.size()) + " bytes)");
  }
  return {};
}

const SecretBytes* find_kek(const KeyRing& ring, std::string_view id, Error& error) {
  if (!is_valid_kek_id(id)) {
    // Not echoed: a value that is not an id may be anything, including a pasted key.
    error = make_error(Errc::invalid_argument, std::string(kCannotOpen) +
                                                   "its kek_id is not a valid key id (the row is "
                                                   "damaged)");
    return nullptr;
  }
  const SecretBytes* kek = detail::KekAccess::find(ring, id);
  if (kek == nullptr) {
    error =
        make_error(Errc::not_found,
                   std::string(kCannotOpen) + "its data key is wrapped by key '" + std::string(id) +
                       "', which is not in the region key file; restore that key line from "
                       "the key file's backup (a key may leave the file only after every row "
                       "has been re-wrapped)");
  }
  return kek;
}

Result<SecretBytes> unwrap_data_key(const KeyRing& ring, const Sealed& sealed) {
  if (Status layout = check_layout(sealed.wrapped_data_key, "wrapped_data_key",
                                   kWrappedDataKeyBytes, kWrappedDataKeyBytes);
      !layout) {
    return std::move(layout).error();
  }
  Error error;
  const SecretBytes* kek = find_kek(ring, sealed.kek_id, error);
  if (kek == nullptr) return error;

  SecretBytes data_key;
  const std::string_view blob = std::string_view(sealed.wrapped_data_key).substr(1);
  Result<bool> authentic =
      gcm_open(kek->bytes(), {bytes_of(blob), blob.size()}, data_key_aad(sealed.kek_id), data_key);
  if (!authentic) return std::move(authentic).error();
  if (!*authentic) {
    return make_error(Errc::invalid_argument,
                      std::string(kCannotOpen) + "its data key does not authenticate under key '" +
                          sealed.kek_id +
                          "' (the row was altered, or the key file holds a different key under "
                          "that id)");
  }
  return data_key;
}

Result<std::string> wrap_data_key(const KeyRing& ring, const SecretBytes& data_key) {
  const std::string& id = ring.active_id();
  const SecretBytes* kek = detail::KekAccess::find(ring, id);
  if (kek == nullptr) return make_error(Errc::internal, "the key ring holds no key");
  std::string wrapped(kWrappedDataKeyBytes, '\0');
  wrapped[0] = static_cast<char>(kFormatVersion);
  if (Status sealed =
          gcm_seal(kek->bytes(), data_key.bytes(), data_key_aad(id), bytes_of(wrapped) + 1);
      !sealed) {
    return std::move(sealed).error();
  }
  return wrapped;
}

}  // namespace

Result<Sealed> seal(const KeyRing& ring, std::string_view material, std::string_view aad) {
  if (aad.empty()) {
    return make_error(Errc::invalid_argument,
                      "cannot seal a credential without an aad naming its row (e.g. "
                      "\"credential:<customer id>:<fingerprint>\"): the blob would fit any row");
  }
  if (aad.size() > kMaxAadBytes) {
    return make_error(Errc::invalid_argument,
                      "cannot seal a credential: the aad is " + std::to_string(aad.size()) +
                          " bytes, more than the " + std::to_string(kMaxAadBytes) + " allowed");
  }
  if (material.size() > kMaxMaterialBytes) {
    return make_error(Errc::invalid_argument,
                      "cannot seal a credential of " + std::to_string(material.size()) +
                          " bytes: sealed_material holds at most " +
                          std::to_string(kMaxMaterialBytes) + " bytes of material");
  }

  SecretBytes data_key(kDataKeyBytes);
  if (RAND_bytes(data_key.data(), static_cast<int>(data_key.size())) != 1) {
    return make_error(Errc::internal, "the random number generator failed");
  }
  Result<std::string> wrapped = wrap_data_key(ring, data_key);
  if (!wrapped) return std::move(wrapped).error();

  Sealed out;
  out.kek_id = ring.active_id();
  out.wrapped_data_key = std::move(*wrapped);
  out.sealed_material.assign(kSealOverheadBytes + material.size(), '\0');
  out.sealed_material[0] = static_cast<char>(kFormatVersion);
  if (Status sealed = gcm_seal(data_key.bytes(), {bytes_of(material), material.size()},
                               material_aad(aad), bytes_of(out.sealed_material) + 1);
      !sealed) {
    return std::move(sealed).error();
  }
  return out;
}

Result<SecretBytes> open(const KeyRing& ring, const Sealed& sealed, std::string_view aad) {
  if (Status layout = check_layout(sealed.sealed_material, "sealed_material", kSealOverheadBytes,
                                   kSealOverheadBytes + kMaxMaterialBytes);
      !layout) {
    return std::move(layout).error();
  }
  Result<SecretBytes> data_key = unwrap_data_key(ring, sealed);
  if (!data_key) return std::move(data_key).error();

  SecretBytes material;
  const std::string_view blob = std::string_view(sealed.sealed_material).substr(1);
  Result<bool> authentic =
      gcm_open(data_key->bytes(), {bytes_of(blob), blob.size()}, material_aad(aad), material);
  if (!authentic) return std::move(authentic).error();
  if (!*authentic) {
    return make_error(Errc::invalid_argument,
                      std::string(kCannotOpen) +
                          "its sealed_material does not authenticate (the row was altered, or "
                          "it is being opened for another credential than it was sealed for)");
  }
  return material;
}

Result<Sealed> rewrap(const KeyRing& ring, const Sealed& sealed) {
  Result<SecretBytes> data_key = unwrap_data_key(ring, sealed);
  if (!data_key) return std::move(data_key).error();
  if (sealed.kek_id == ring.active_id()) return sealed;

  Result<std::string> wrapped = wrap_data_key(ring, *data_key);
  if (!wrapped) return std::move(wrapped).error();
  return Sealed{ring.active_id(), std::move(*wrapped), sealed.sealed_material};
}

}  // namespace mp::keys
