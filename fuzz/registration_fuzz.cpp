// libFuzzer target for what the registration API parses from the app: the JSON bodies of
// POST /v1/registrations and PATCH /v1/registrations/self, then the field checks (device token
// hex/base64 normalisation, environment) and the mailbox address normalisation; and the input as
// an Authorization header (bearer token) and as a capability (its form, decided without the
// database). No crash, no sanitizer report, and for every input:
//   - a refusal has a code and a message, and the message never repeats the registration key,
//     the device token or the mailbox address it was given (see looks_secret);
//   - an accepted token is lowercase hex of even length, 64 to 200 characters;
//   - a normalised address normalises to itself;
//   - a bearer token is non-empty, without surrounding blanks, and inside the header value;
//   - only 44-character inputs can be issued capabilities, and only 43-character base64url ones
//     legacy.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <variant>

#include "fuzz_require.hpp"
#include "http/registration_endpoint.hpp"
#include "keys/region_secret.hpp"
#include "relay/registration_service.hpp"

namespace {

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
  FUZZ_REQUIRE(!r.code.empty() && !r.message.empty());
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
    if (const auto* ok = std::get_if<mp::relay::CheckedDevice>(&checked)) {
      FUZZ_REQUIRE(ok->token_hex.size() >= 64 && ok->token_hex.size() <= 200);
      FUZZ_REQUIRE(ok->token_hex.size() % 2 == 0 && lower_hex(ok->token_hex));
      FUZZ_REQUIRE(ok->environment == "production" || ok->environment == "development");
    } else {
      const auto& refusal = std::get<mp::relay::RegistrationRefusal>(checked);
      require_no_echo(refusal, r->registration_key);
      require_no_echo(refusal, r->device_token);
      require_no_echo(refusal, r->mailbox);
    }
    const auto address = mp::keys::normalize_mailbox_address(r->mailbox);
    if (address) {
      const auto again = mp::keys::normalize_mailbox_address(*address);
      FUZZ_REQUIRE(again && *again == *address);
    } else {
      if (looks_secret(r->mailbox)) {
        FUZZ_REQUIRE(address.error().message.find(r->mailbox) == std::string::npos);
      }
    }
  } else {
    const auto& refusal = std::get<mp::relay::RegistrationRefusal>(parsed);
    FUZZ_REQUIRE(!refusal.code.empty() && !refusal.message.empty());
  }

  const auto move = mp::http::parse_move_body(body);
  if (const auto* m = std::get_if<mp::relay::MoveRequest>(&move)) {
    const auto checked = mp::relay::check_device(m->device_token, m->environment);
    if (const auto* refusal = std::get_if<mp::relay::RegistrationRefusal>(&checked)) {
      require_no_echo(*refusal, m->device_token);
    }
  } else {
    const auto& refusal = std::get<mp::relay::RegistrationRefusal>(move);
    FUZZ_REQUIRE(!refusal.code.empty() && !refusal.message.empty());
  }

  if (const auto token = mp::http::bearer_token(body)) {
    FUZZ_REQUIRE(!token->empty() && token->front() != ' ' && token->back() != ' ');
    FUZZ_REQUIRE(token->data() >= body.data() &&
                 token->data() + token->size() <= body.data() + size);
  }
  static const mp::keys::RegionSecret secret =
      mp::keys::RegionSecret::from_text(
          "region-secret c2VjcmV0LWZvci1mdXp6aW5nLW9ubHktMDEyMzQ1Njc4OQ==\n")
          .value();
  switch (mp::relay::capability_form(secret, body)) {
    case mp::relay::CapabilityForm::issued:
      FUZZ_REQUIRE(size == mp::keys::kCapabilityChars);
      break;
    case mp::relay::CapabilityForm::legacy:
      FUZZ_REQUIRE(size == mp::keys::kLegacyCallbackSecretChars);
      break;
    case mp::relay::CapabilityForm::refused:
      break;
  }
  return 0;
}
