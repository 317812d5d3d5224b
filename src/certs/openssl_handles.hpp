// RAII owners for the OpenSSL handles the certs module uses (internal to src/certs).
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>
#include <string_view>

namespace mp::certs::detail {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

using BioPtr = Owned<BIO, BIO_free_all>;
using X509Ptr = Owned<X509, X509_free>;
using EvpPkeyPtr = Owned<EVP_PKEY, EVP_PKEY_free>;
using Pkcs12Ptr = Owned<PKCS12, PKCS12_free>;
using Pkcs8Ptr = Owned<PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free>;
using X509StorePtr = Owned<X509_STORE, X509_STORE_free>;
using X509StoreCtxPtr = Owned<X509_STORE_CTX, X509_STORE_CTX_free>;
using AsnObjectPtr = Owned<ASN1_OBJECT, ASN1_OBJECT_free>;

inline void free_authsafes(STACK_OF(PKCS7) * s) {
  sk_PKCS7_pop_free(s, PKCS7_free);
}
inline void free_bags(STACK_OF(PKCS12_SAFEBAG) * s) {
  sk_PKCS12_SAFEBAG_pop_free(s, PKCS12_SAFEBAG_free);
}
inline void free_x509s(STACK_OF(X509) * s) {
  sk_X509_free(s);
}  // borrowed certificates
using AuthsafesPtr = Owned<STACK_OF(PKCS7), free_authsafes>;
using SafebagsPtr = Owned<STACK_OF(PKCS12_SAFEBAG), free_bags>;
using X509StackPtr = Owned<STACK_OF(X509), free_x509s>;

// Keeps the caller's OpenSSL error queue as it was and drops every error raised in this scope,
// so a refused upload never leaves errors behind for the next TLS call on the thread.
class ErrorQueueScope {
 public:
  ErrorQueueScope() { ERR_set_mark(); }
  ~ErrorQueueScope() { ERR_pop_to_mark(); }
  ErrorQueueScope(const ErrorQueueScope&) = delete;
  ErrorQueueScope& operator=(const ErrorQueueScope&) = delete;
};

// A read-only BIO over `bytes` (sizes are capped long before INT_MAX). OpenSSL refuses a null
// pointer even for zero bytes, which an empty string_view may carry.
inline BioPtr memory_bio(std::string_view bytes) {
  static const char nothing = '\0';
  const void* data = bytes.data() != nullptr ? bytes.data() : &nothing;
  return BioPtr(BIO_new_mem_buf(data, static_cast<int>(bytes.size())));
}

}  // namespace mp::certs::detail
