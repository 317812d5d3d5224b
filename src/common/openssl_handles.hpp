// RAII owners for OpenSSL handles, one std::unique_ptr type per handle, for every module.
// SslPtr and SslCtxPtr call libssl: a target that destroys them links OpenSSL::SSL.
#pragma once

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>
#include <string_view>

namespace mp {

template <class T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T*)>
using Owned = std::unique_ptr<T, Deleter<T, Free>>;

// BIO_free_all: a single BIO is freed as by BIO_free, a chain with every BIO in it.
using BioPtr = Owned<BIO, BIO_free_all>;
using BioMethodPtr = Owned<BIO_METHOD, BIO_meth_free>;
using X509Ptr = Owned<X509, X509_free>;
using X509ExtensionPtr = Owned<X509_EXTENSION, X509_EXTENSION_free>;
using X509StorePtr = Owned<X509_STORE, X509_STORE_free>;
using X509StoreCtxPtr = Owned<X509_STORE_CTX, X509_STORE_CTX_free>;
using EvpPkeyPtr = Owned<EVP_PKEY, EVP_PKEY_free>;
using EvpCipherCtxPtr = Owned<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using Pkcs12Ptr = Owned<PKCS12, PKCS12_free>;
using Pkcs8Ptr = Owned<PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free>;
using AsnObjectPtr = Owned<ASN1_OBJECT, ASN1_OBJECT_free>;
using AsnOctetStringPtr = Owned<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using BignumPtr = Owned<BIGNUM, BN_free>;
using SslPtr = Owned<SSL, SSL_free>;
using SslCtxPtr = Owned<SSL_CTX, SSL_CTX_free>;

inline void free_asn1_sequence(ASN1_SEQUENCE_ANY* s) {
  sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free);
}
inline void free_authsafes(STACK_OF(PKCS7) * s) {
  sk_PKCS7_pop_free(s, PKCS7_free);
}
inline void free_bags(STACK_OF(PKCS12_SAFEBAG) * s) {
  sk_PKCS12_SAFEBAG_pop_free(s, PKCS12_SAFEBAG_free);
}
// The stack's certificates are borrowed: only the stack is freed.
inline void free_x509s(STACK_OF(X509) * s) {
  sk_X509_free(s);
}
using AsnSequencePtr = Owned<ASN1_SEQUENCE_ANY, free_asn1_sequence>;
using AuthsafesPtr = Owned<STACK_OF(PKCS7), free_authsafes>;
using SafebagsPtr = Owned<STACK_OF(PKCS12_SAFEBAG), free_bags>;
using X509StackPtr = Owned<STACK_OF(X509), free_x509s>;

// Memory OpenSSL allocated for the caller (i2d_* output, ASN1_STRING_to_UTF8, BN_bn2hex), given
// back with OPENSSL_free (a macro, so it cannot be an Owned template argument).
struct OpensslFree {
  void operator()(void* p) const noexcept { OPENSSL_free(p); }
};
template <class T>
using OpensslPtr = std::unique_ptr<T, OpensslFree>;

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

}  // namespace mp
