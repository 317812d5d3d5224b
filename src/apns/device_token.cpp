// Device-token normalisation: hex or base64 in, lowercase hex out, refusals without the token.
#include "apns/device_token.hpp"

#include <algorithm>
#include <cstdint>

#include "common/crypto.hpp"
#include "common/redact.hpp"

namespace mp::apns {
namespace {

// Longer inputs are refused before any work; a spaced `<…>` 100-byte token is ~230 characters.
constexpr std::size_t kMaxRawChars = 1024;

constexpr const char* kHowToSend =
    "send the token bytes from didRegisterForRemoteNotificationsWithDeviceToken as hex";

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}
bool is_hex_digit(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
char to_lower_ascii(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// -1 for a character outside both base64 alphabets; '+'/'-' and '/'/'_' share values.
int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

Error refuse(std::string message) {
  return make_error(Errc::invalid_argument, "device token refused: " + std::move(message));
}

// Bytes that are all ASCII hex digits mean the app hex-encoded (or base64-encoded) the hex
// text of its token; for a real token of 16+ random bytes the odds of this are below 1e-17.
bool looks_like_hex_text(const Bytes& bytes) noexcept {
  return bytes.size() >= 16 && std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) {
           return is_hex_digit(static_cast<char>(b));
         });
}

Result<std::string> from_hex(const std::string& text) {
  if (text.size() % 2 != 0) {
    return refuse("it is hex with an odd number of digits (" + std::to_string(text.size()) +
                  "), so a digit is missing or extra; " + kHowToSend);
  }
  if (text.size() > kMaxDeviceTokenHexChars) {
    return refuse("it is " + std::to_string(text.size()) +
                  " hex digits and APNs tokens are at most " +
                  std::to_string(kMaxDeviceTokenHexChars) + " (" +
                  std::to_string(kMaxDeviceTokenBytes) + " bytes); " + kHowToSend);
  }
  std::string hex(text.size(), '0');
  std::transform(text.begin(), text.end(), hex.begin(), to_lower_ascii);
  Result<Bytes> bytes = hex_decode(hex);
  if (!bytes) return refuse("it is not valid hex; " + std::string(kHowToSend));
  if (looks_like_hex_text(*bytes)) {
    return refuse("it is hex of a hex text (the token was hex-encoded twice); " +
                  std::string(kHowToSend) + ", once");
  }
  return hex;
}

Result<std::string> from_base64(const std::string& text) {
  std::size_t padding = 0;
  while (padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  const std::string_view body(text.data(), text.size() - padding);
  if (padding > 2 || (padding > 0 && text.size() % 4 != 0) ||
      body.find('=') != std::string_view::npos) {
    return refuse("it looks like base64 but its '=' padding is misplaced; " +
                  std::string(kHowToSend));
  }
  if (body.size() % 4 == 1) {
    return refuse("it looks like base64 but " + std::to_string(body.size()) +
                  " characters cannot be base64 (one is missing or extra); " + kHowToSend);
  }
  const bool standard = body.find_first_of("+/") != std::string_view::npos;
  const bool url_safe = body.find_first_of("-_") != std::string_view::npos;
  if (standard && url_safe) {
    return refuse("it mixes the standard (+/) and URL-safe (-_) base64 alphabets; " +
                  std::string(kHowToSend));
  }

  Bytes bytes;
  bytes.reserve(body.size() * 3 / 4);
  std::uint32_t bits = 0;
  int bit_count = 0;
  for (char c : body) {
    bits = (bits << 6) | static_cast<std::uint32_t>(base64_value(c));
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      bytes.push_back(static_cast<std::uint8_t>(bits >> bit_count));
      bits &= (1u << bit_count) - 1;
    }
  }
  // An encoder always leaves the unused low bits zero; anything else is not a real token.
  if (bits != 0) {
    return refuse("it looks like base64 but its last character is not what an encoder writes; " +
                  std::string(kHowToSend));
  }
  if (bytes.size() < kMinBase64DeviceTokenBytes || bytes.size() > kMaxDeviceTokenBytes) {
    return refuse("it looks like base64 but decodes to " + std::to_string(bytes.size()) +
                  " bytes, and APNs tokens are " + std::to_string(kMinBase64DeviceTokenBytes) +
                  ".." + std::to_string(kMaxDeviceTokenBytes) + " bytes (32 today); " + kHowToSend);
  }
  if (looks_like_hex_text(bytes)) {
    return refuse("it is base64 of the token's hex text; " + std::string(kHowToSend) +
                  " without base64");
  }
  return hex_encode(bytes);
}

}  // namespace

Result<std::string> normalize_device_token(std::string_view raw) {
  if (raw.size() > kMaxRawChars) {
    return refuse("it is " + std::to_string(raw.size()) + " characters long; " + kHowToSend +
                  " (64 characters today, at most " + std::to_string(kMaxDeviceTokenHexChars) +
                  ")");
  }
  std::string_view inner = raw;
  while (!inner.empty() && is_space(inner.front())) inner.remove_prefix(1);
  while (!inner.empty() && is_space(inner.back())) inner.remove_suffix(1);
  // `[NSData description]` wraps the hex in angle brackets and spaces it every 8 digits.
  if (!inner.empty() && inner.front() == '<') inner.remove_prefix(1);
  if (!inner.empty() && inner.back() == '>') inner.remove_suffix(1);

  std::string text;
  text.reserve(inner.size());
  bool all_hex = true;
  for (std::size_t i = 0; i < inner.size(); ++i) {
    const char c = inner[i];
    if (is_space(c)) continue;
    if (c == '{' && text.empty()) {
      // iOS 13+ prints `{length = 32, bytes = 0x1234abcd ... 5678}`: the middle is elided.
      return refuse(
          "it is the iOS 13+ description of NSData, which leaves out the middle of the token; " +
          std::string(kHowToSend));
    }
    if (!is_hex_digit(c)) {
      all_hex = false;
      if (base64_value(c) < 0 && c != '=') {
        const auto position = static_cast<std::size_t>(inner.data() - raw.data()) + i + 1;
        return refuse("character " + std::to_string(position) +
                      " is neither a hex digit nor base64; " + kHowToSend);
      }
    }
    text.push_back(c);
  }
  if (text.empty()) return refuse("it is empty; " + std::string(kHowToSend));
  return all_hex ? from_hex(text) : from_base64(text);
}

std::string display_token(std::string_view hex) {
  return redact(hex);
}

bool is_normalized_device_token(std::string_view hex) noexcept {
  return !hex.empty() && hex.size() % 2 == 0 && hex.size() <= kMaxDeviceTokenHexChars &&
         std::all_of(hex.begin(), hex.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

}  // namespace mp::apns
