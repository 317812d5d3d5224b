// Envelope encryption of credential material (certificate + private key) at rest: a data key per
// credential seals the material, the region's active KEK wraps the data key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/secret_bytes.hpp"
#include "keys/key_ring.hpp"

namespace mp::keys {

// The three `credentials` columns that hold a sealed credential.
struct Sealed {
  std::string kek_id;            // credentials.kek_id: which KEK wrapped the data key
  std::string wrapped_data_key;  // credentials.wrapped_data_key (61 bytes in format 1)
  std::string sealed_material;   // credentials.sealed_material (29 bytes + the material)
};

// Format 1, all AES-256-GCM with a random 96-bit nonce and a 128-bit tag:
//
//   wrapped_data_key = 0x01 | nonce(12) | GCM(KEK, data key (32)) | tag(16)
//       AAD = 0x01 | "mailpush/data-key" | 0x00 | kek_id
//   sealed_material  = 0x01 | nonce(12) | GCM(data key, material) | tag(16)
//       AAD = 0x01 | "mailpush/material" | 0x00 | the caller's aad
//
// The leading byte is the format version; a later format gets a new one and old rows keep
// opening. The caller's aad names the row (e.g. "credential:<customer id>:<fingerprint hex>"),
// so material moved to another row, or opened for another credential, fails to authenticate.
// The kek id is bound into the wrapped key, so a row cannot be pointed at another KEK. The
// caller's aad is deliberately not in the wrapped key: rotation re-wraps data keys without
// knowing which row they belong to, and the material's tag already ties data key and row.
inline constexpr std::uint8_t kFormatVersion = 1;
inline constexpr std::size_t kDataKeyBytes = 32;
inline constexpr std::size_t kNonceBytes = 12;
inline constexpr std::size_t kTagBytes = 16;
inline constexpr std::size_t kWrappedDataKeyBytes = 1 + kNonceBytes + kDataKeyBytes + kTagBytes;
inline constexpr std::size_t kSealOverheadBytes = 1 + kNonceBytes + kTagBytes;
// sealed_material is a MEDIUMBLOB (at most 2^24 - 1 bytes); the material must fit with the
// overhead. A certificate and its key are a few KiB.
inline constexpr std::size_t kMaxMaterialBytes = (std::size_t{1} << 24) - 1 - kSealOverheadBytes;
// An aad is a short label naming a row; a long one is a caller's mistake.
inline constexpr std::size_t kMaxAadBytes = 1024;

// Seals `material` (opaque bytes) with a fresh random data key and wraps that key under the
// ring's active KEK. Two seals of the same material differ. Refuses an empty aad (it would bind
// the blob to nothing) and material larger than kMaxMaterialBytes.
Result<Sealed> seal(const KeyRing& ring, std::string_view material, std::string_view aad);

// Unwraps the data key with the KEK named by `sealed.kek_id` and opens the material with the
// same aad it was sealed with. A damaged or altered row, another aad, an unknown format version
// or a KEK missing from the ring is refused; messages say which column and what an operator can
// do, never key bytes or material.
Result<SecretBytes> open(const KeyRing& ring, const Sealed& sealed, std::string_view aad);

// Rotation: unwraps the data key with its KEK and wraps it under the ring's active KEK with a
// fresh nonce; the sealed material is untouched (rotation rewrites two small columns per row).
// A row already under the active KEK is returned unchanged once its data key has been checked
// to unwrap, so a rotation pass also finds damaged rows.
Result<Sealed> rewrap(const KeyRing& ring, const Sealed& sealed);

}  // namespace mp::keys
