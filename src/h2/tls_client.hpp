// TLS client contexts for HTTP/2: TLS 1.2+, ALPN h2, server verification, and a client identity
// (certificate + private key) taken from memory only.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/openssl_handles.hpp"
#include "common/result.hpp"

namespace mp::h2 {

// A client certificate, its chain and private key, held in memory only (never written to disk).
struct ClientIdentity {
  X509Ptr certificate;
  std::vector<X509Ptr> chain;  // intermediates, if any
  EvpPkeyPtr private_key;

  // Takes its own references; the caller keeps theirs.
  static Result<ClientIdentity> from_handles(X509* certificate, EVP_PKEY* private_key);
  // The first certificate of `cert_pem` is the client's, the rest its chain. The key text is
  // never copied into an error message.
  static Result<ClientIdentity> from_pem(std::string_view cert_pem, std::string_view key_pem);
  static Result<ClientIdentity> from_der(std::string_view cert_der, std::string_view key_der);
};

struct TlsClientOptions {
  // Trust: a PEM bundle in memory, else a CA file, else the system trust store.
  std::optional<std::string> ca_pem;
  std::optional<std::filesystem::path> ca_file;
  const ClientIdentity* identity = nullptr;  // used while building the context only
};

// A context for HTTP/2 clients: TLS 1.2 or newer, peer verification on, ALPN "h2" (and
// "http/1.1", so a server that only speaks that says so and the error can name it). One
// context per credential, shared by its connections.
Result<std::shared_ptr<boost::asio::ssl::context>> make_client_tls_context(
    const TlsClientOptions& options);

// OpenSSL's error queue as text (and cleared), for messages.
std::string openssl_errors();

}  // namespace mp::h2
