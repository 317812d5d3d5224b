// TLS session-ticket keys that every instance of a region derives alike from the region secret,
// one per period of the clock: a ticket issued by one instance resumes on another behind the
// load balancer, and the keys rotate on schedule without any coordination. A ticket of the
// current or the previous period is accepted (one of the previous period is renewed).
#pragma once

#include <openssl/ssl.h>

#include <chrono>

#include "keys/region_secret.hpp"

namespace mp::http {

class TicketKeys {
 public:
  using Now = std::chrono::system_clock::time_point (*)();
  // `now` is the clock's reading (tests turn it).
  TicketKeys(const keys::RegionSecret& secret, std::chrono::seconds period,
             Now now = &std::chrono::system_clock::now);
  // Lets `ctx` encrypt and decrypt session tickets with these keys; this object must outlive it.
  void install(SSL_CTX* ctx) const;
  std::uint64_t period_at(std::chrono::system_clock::time_point now) const;

 private:
  static int callback(SSL* ssl, unsigned char key_name[16], unsigned char* iv,
                      EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int encrypt);

  const keys::RegionSecret& secret_;
  std::chrono::seconds period_;
  Now now_;
};

}  // namespace mp::http
