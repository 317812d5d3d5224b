// In-memory test PKI with OpenSSL 3.
#include "test_pki.hpp"

#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <stdexcept>

namespace mp::h2::test {

namespace {

std::string bio_text(BIO* bio) {
  BUF_MEM* mem = nullptr;
  BIO_get_mem_ptr(bio, &mem);
  return std::string(mem->data, mem->length);
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) throw std::runtime_error("X509V3_EXT_conf_nid failed");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

enum class Kind { ca, server, client };

KeyAndCert make(const std::string& cn, Kind kind, const KeyAndCert* issuer) {
  static long serial = 1;
  KeyAndCert out;
  out.key.reset(EVP_EC_gen("P-256"));
  if (!out.key) throw std::runtime_error("EVP_EC_gen failed");
  out.cert.reset(X509_new());
  X509* x = out.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600);
  X509_set_pubkey(x, out.key.get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert.get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
  add_ext(x, issuer_cert, NID_subject_key_identifier, "hash");
  switch (kind) {
    case Kind::ca:
      add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
      add_ext(x, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
      break;
    case Kind::server:
      add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
      add_ext(x, issuer_cert, NID_key_usage, "critical,digitalSignature");
      add_ext(x, issuer_cert, NID_ext_key_usage, "serverAuth");
      add_ext(x, issuer_cert, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
      break;
    case Kind::client:
      add_ext(x, issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
      add_ext(x, issuer_cert, NID_key_usage, "critical,digitalSignature");
      add_ext(x, issuer_cert, NID_ext_key_usage, "clientAuth");
      break;
  }
  EVP_PKEY* signer = issuer ? issuer->key.get() : out.key.get();
  if (X509_sign(x, signer, EVP_sha256()) == 0) throw std::runtime_error("X509_sign failed");
  return out;
}

}  // namespace

std::string KeyAndCert::cert_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert.get());
  return bio_text(bio.get());
}

std::string KeyAndCert::key_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return bio_text(bio.get());
}

const TestPki& test_pki() {
  static const TestPki pki = [] {
    TestPki p;
    p.ca = make("mailpush test CA", Kind::ca, nullptr);
    p.server = make("localhost", Kind::server, &p.ca);
    p.client = make("mailpush test client", Kind::client, &p.ca);
    p.other_ca = make("somebody else's CA", Kind::ca, nullptr);
    p.other_server = make("localhost", Kind::server, &p.other_ca);
    return p;
  }();
  return pki;
}

}  // namespace mp::h2::test
