// APNs device tokens: normalisation of what apps send (hex in any case, base64) to lowercase hex.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace mp::apns {

// Apple's tokens are 32 bytes today and documented as variable length; DESIGN.md bounds them.
inline constexpr std::size_t kMaxDeviceTokenBytes = 100;
inline constexpr std::size_t kMaxDeviceTokenHexChars = 2 * kMaxDeviceTokenBytes;
// A base64 text shorter than this is more likely a typo than a token, so it is refused.
inline constexpr std::size_t kMinBase64DeviceTokenBytes = 8;

// Turns a device token as an app or an administrator sent it into the lowercase hex that
// `POST /3/device/{token}` needs, or refuses it with a reason that never contains the token.
//
// Accepted, after removing surrounding `<`/`>` and every ASCII space, tab, CR and LF (old apps
// logged `[deviceToken description]`, which prints `<abcd1234 ef...>`):
//   - hex in any case, non-empty, even length, at most 200 characters;
//   - base64 of the raw token bytes, standard (`+/`) or URL-safe (`-_`) alphabet, padded or
//     not, canonical, decoding to 8..100 bytes (the classic `BadDeviceToken` mistake).
// Ambiguity rule: a text made only of hex digits is hex, whatever else it could be; so a
// 64-character hex token is never read as base64, and an odd-length all-hex text is refused
// as odd-length hex rather than guessed to be unpadded base64.
Result<std::string> normalize_device_token(std::string_view raw);

// The form of a (normalised) token that may appear in logs and messages: "a1b2c3d4…(64)".
std::string display_token(std::string_view hex);

// True for a token as normalize_device_token returns it: non-empty, even-length lowercase hex
// of at most kMaxDeviceTokenHexChars characters.
bool is_normalized_device_token(std::string_view hex) noexcept;

}  // namespace mp::apns
