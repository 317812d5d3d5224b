// TLS client contexts: trust, client identity from memory, ALPN.
#include "h2/tls_client.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

namespace mp::h2 {

namespace {

// OpenSSL's default (a null callback) prompts on the terminal for an encrypted PEM; a service
// must never block on that. Refuse instead, and note that a password was asked for.
int refuse_password(char*, int, int, void* asked) {
  if (asked != nullptr) *static_cast<bool*>(asked) = true;
  return -1;
}

}  // namespace

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL detail" : out;
}

Result<ClientIdentity> ClientIdentity::from_handles(X509* certificate, EVP_PKEY* private_key) {
  if (certificate == nullptr || private_key == nullptr) {
    return Error{Errc::invalid_argument, "client identity needs a certificate and a private key"};
  }
  if (X509_check_private_key(certificate, private_key) != 1) {
    ERR_clear_error();
    return Error{Errc::invalid_argument, "the private key does not match the client certificate"};
  }
  X509_up_ref(certificate);
  EVP_PKEY_up_ref(private_key);
  ClientIdentity id;
  id.certificate.reset(certificate);
  id.private_key.reset(private_key);
  return id;
}

Result<ClientIdentity> ClientIdentity::from_pem(std::string_view cert_pem,
                                                std::string_view key_pem) {
  auto cert_bio = memory_bio(cert_pem);
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, refuse_password, nullptr));
  if (!cert) {
    ERR_clear_error();
    return Error{Errc::invalid_argument, "client certificate PEM holds no certificate"};
  }
  std::vector<X509Ptr> chain;
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, refuse_password, nullptr)) {
    chain.emplace_back(extra);
  }
  ERR_clear_error();  // the end of the PEM stream leaves a "no start line" error behind
  auto key_bio = memory_bio(key_pem);
  bool password_asked = false;
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, refuse_password, &password_asked));
  if (!key) {
    ERR_clear_error();
    if (password_asked) {
      return Error{Errc::invalid_argument,
                   "private key PEM is encrypted: give the key without a passphrase"};
    }
    return Error{Errc::invalid_argument, "private key PEM could not be read (not a key)"};
  }
  auto id = from_handles(cert.get(), key.get());
  if (!id) return id;
  id->chain = std::move(chain);
  return id;
}

Result<ClientIdentity> ClientIdentity::from_der(std::string_view cert_der,
                                                std::string_view key_der) {
  auto c = reinterpret_cast<const unsigned char*>(cert_der.data());
  X509Ptr cert(d2i_X509(nullptr, &c, static_cast<long>(cert_der.size())));
  auto k = reinterpret_cast<const unsigned char*>(key_der.data());
  EvpPkeyPtr key(d2i_AutoPrivateKey(nullptr, &k, static_cast<long>(key_der.size())));
  ERR_clear_error();
  if (!cert) return Error{Errc::invalid_argument, "client certificate DER could not be read"};
  if (!key) return Error{Errc::invalid_argument, "private key DER could not be read"};
  return from_handles(cert.get(), key.get());
}

Result<std::shared_ptr<boost::asio::ssl::context>> make_client_tls_context(
    const TlsClientOptions& options) {
  namespace ssl = boost::asio::ssl;
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
    return Error{Errc::internal, "cannot require TLS 1.2: " + openssl_errors()};
  }
  SSL_CTX_set_verify(native, SSL_VERIFY_PEER, nullptr);
  // Idle connections give their TLS read/write buffers back (a pool holds many of them).
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);

  if (options.ca_pem) {
    X509_STORE* store = SSL_CTX_get_cert_store(native);
    auto bio = memory_bio(*options.ca_pem);
    int added = 0;
    while (X509* ca = PEM_read_bio_X509(bio.get(), nullptr, refuse_password, nullptr)) {
      X509Ptr owned(ca);
      if (X509_STORE_add_cert(store, ca) != 1) {
        return Error{Errc::invalid_argument, "cannot add a CA certificate: " + openssl_errors()};
      }
      ++added;
    }
    ERR_clear_error();
    if (added == 0) return Error{Errc::invalid_argument, "CA PEM holds no certificate"};
  } else if (options.ca_file) {
    if (SSL_CTX_load_verify_locations(native, options.ca_file->c_str(), nullptr) != 1) {
      return Error{Errc::invalid_argument,
                   "cannot load CA file " + options.ca_file->string() + ": " + openssl_errors()};
    }
  } else if (SSL_CTX_set_default_verify_paths(native) != 1) {
    return Error{Errc::internal, "cannot load the system trust store: " + openssl_errors()};
  }

  if (options.identity != nullptr) {
    const ClientIdentity& id = *options.identity;
    if (!id.certificate || !id.private_key) {
      return Error{Errc::invalid_argument, "client identity is empty"};
    }
    if (SSL_CTX_use_certificate(native, id.certificate.get()) != 1 ||
        SSL_CTX_use_PrivateKey(native, id.private_key.get()) != 1 ||
        SSL_CTX_check_private_key(native) != 1) {
      ERR_clear_error();  // may hold key details; say only what failed
      return Error{Errc::invalid_argument, "cannot use the client certificate and key"};
    }
    for (const auto& extra : id.chain) {
      if (SSL_CTX_add1_chain_cert(native, extra.get()) != 1) {
        return Error{Errc::invalid_argument, "cannot add a chain certificate: " + openssl_errors()};
      }
    }
  }

  // Wire format: length-prefixed protocol names, ours first.
  static const unsigned char kAlpn[] = "\x02h2\x08http/1.1";
  if (SSL_CTX_set_alpn_protos(native, kAlpn, sizeof(kAlpn) - 1) != 0) {  // 0 is success here
    return Error{Errc::internal, "cannot set ALPN: " + openssl_errors()};
  }
  return ctx;
}

}  // namespace mp::h2
