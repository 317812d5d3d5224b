// The session-ticket callback of OpenSSL 3 (SSL_CTX_set_tlsext_ticket_key_evp_cb).
#include "http/ticket_keys.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

namespace mp::http {
namespace {

int ex_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// Layout of RegionSecret::ticket_key_material.
constexpr std::size_t kNameBytes = 16;
constexpr std::size_t kAesOffset = 16;
constexpr std::size_t kHmacOffset = 48;
constexpr std::size_t kKeyBytes = 32;

bool set_mac_key(EVP_MAC_CTX* mac, const SecretBytes& material) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(
          OSSL_MAC_PARAM_KEY, const_cast<std::uint8_t*>(material.bytes().data() + kHmacOffset),
          kKeyBytes),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_end()};
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

TicketKeys::TicketKeys(const keys::RegionSecret& secret, std::chrono::seconds period, Now now)
    : secret_(secret), period_(std::max(period, std::chrono::seconds(60))), now_(now) {}

std::uint64_t TicketKeys::period_at(std::chrono::system_clock::time_point now) const {
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return static_cast<std::uint64_t>(std::max<std::int64_t>(0, seconds)) /
         static_cast<std::uint64_t>(period_.count());
}

void TicketKeys::install(SSL_CTX* ctx) const {
  SSL_CTX_set_ex_data(ctx, ex_index(), const_cast<TicketKeys*>(this));
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, &TicketKeys::callback);
}

int TicketKeys::callback(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                         EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt) {
  const auto* self =
      static_cast<const TicketKeys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index()));
  if (self == nullptr) return -1;
  const std::uint64_t now = self->period_at(self->now_());
  if (encrypt == 1) {
    const SecretBytes material = self->secret_.ticket_key_material(now);
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(key_name, material.bytes().data(), kNameBytes);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, material.bytes().data() + kAesOffset,
                           iv) != 1 ||
        !set_mac_key(mac, material)) {
      return -1;
    }
    return 1;
  }
  // Decrypting: the ticket names its key; the current period's, or the one before (renewed).
  for (std::uint64_t back = 0; back <= 1 && back <= now; ++back) {
    const SecretBytes material = self->secret_.ticket_key_material(now - back);
    if (CRYPTO_memcmp(key_name, material.bytes().data(), kNameBytes) != 0) continue;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, material.bytes().data() + kAesOffset,
                           iv) != 1 ||
        !set_mac_key(mac, material)) {
      return -1;
    }
    return back == 0 ? 1 : 2;
  }
  return 0;  // unknown or expired key: a full handshake
}

}  // namespace mp::http
