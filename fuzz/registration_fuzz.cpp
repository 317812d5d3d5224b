// libFuzzer target for what the registration API parses from the app: the JSON bodies of
// POST /v1/registrations and DELETE /v1/registrations/{id}, then the field checks (device token
// hex/base64 normalisation, environment, previous token) and the mailbox address
// normalisation. No crash, no sanitizer report, and for every input:
//   - a refusal has a code and a message, and the message never repeats the registration key,
//     the device token, the previous token or the mailbox address it was given (see
//     looks_secret);
//   - an accepted token is lowercase hex of even length, 64 to 200 characters;
//   - a normalised address normalises to itself.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <variant>

#include "http/registration_endpoint.hpp"
#include "keys/region_secret.hpp"
#include "relay/registration_service.hpp"

namespace {

// Says which invariant broke (the line), then stops the run as a crash.
#define require(condition)                                                             \
  do {                                                                                 \
    if (!(condition)) {                                                                \
      std::fprintf(stderr, "invariant failed at line %d: %s\n", __LINE__, #condition); \
      __builtin_trap();                                                                \
    }                                                                                  \
  } while (false)

// A refusal's message must not carry a secret or an identifier it was given. Only values that
// look like one are checked — 12+ characters, no space, 4+ digits, as keys and tokens are — so
// that a value which happens to be a piece of a message's own wording does not count.
bool looks_secret(std::string_view value) {
  if (value.size() < 12) return false;
  std::size_t digits = 0;
  for (const char c : value) {
    if (c == ' ') return false;
    if (c >= '0' && c <= '9') ++digits;
  }
  return digits >= 4;
}

void require_no_echo(const mp::relay::RegistrationRefusal& r, std::string_view value) {
  require(!r.code.empty() && !r.message.empty());
  if (looks_secret(value) && r.message.find(value) != std::string::npos) {
    std::fprintf(stderr, "refusal %s echoes a value it was given: %s\n", r.code.c_str(),
                 r.message.c_str());
    __builtin_trap();
  }
}

bool lower_hex(std::string_view s) {
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const auto parsed = mp::http::parse_register_body(body);
  if (const auto* r = std::get_if<mp::relay::RegisterRequest>(&parsed)) {
    const auto checked = mp::relay::check_registration(*r);
    if (const auto* ok = std::get_if<mp::relay::CheckedRegistration>(&checked)) {
      require(ok->token_hex.size() >= 64 && ok->token_hex.size() <= 200);
      require(ok->token_hex.size() % 2 == 0 && lower_hex(ok->token_hex));
      if (ok->previous_token_hex) require(lower_hex(*ok->previous_token_hex));
      require(ok->environment == "production" || ok->environment == "development");
    } else {
      const auto& refusal = std::get<mp::relay::RegistrationRefusal>(checked);
      require_no_echo(refusal, r->registration_key);
      require_no_echo(refusal, r->device_token);
      require_no_echo(refusal, r->mailbox);
      if (r->previous_device_token) require_no_echo(refusal, *r->previous_device_token);
    }
    const auto address = mp::keys::normalize_mailbox_address(r->mailbox);
    if (address) {
      const auto again = mp::keys::normalize_mailbox_address(*address);
      require(again && *again == *address);
    } else {
      if (looks_secret(r->mailbox)) {
        require(address.error().message.find(r->mailbox) == std::string::npos);
      }
    }
  } else {
    const auto& refusal = std::get<mp::relay::RegistrationRefusal>(parsed);
    require(!refusal.code.empty() && !refusal.message.empty());
  }

  const auto unregister = mp::http::parse_unregister_body(body, "12345");
  if (const auto* refusal = std::get_if<mp::relay::RegistrationRefusal>(&unregister)) {
    require(!refusal->code.empty() && !refusal->message.empty());
  } else {
    require(std::get<mp::relay::UnregisterRequest>(unregister).registration_id == 12345);
  }
  return 0;
}
