// In-memory self-signed certificates for the listener tests (see test_certificates.hpp).
#include "test_certificates.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <functional>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "common/openssl_handles.hpp"

namespace mp::test {

namespace {

void require(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test certificate: ") + what + " failed");
}

std::string pem_text(const std::function<int(BIO*)>& write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  require(bio && write(bio.get()) == 1, "PEM write");
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

std::string lower_hex_serial(const X509* x) {
  BignumPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr));
  require(serial != nullptr, "ASN1_INTEGER_to_BN");
  char* hex = BN_bn2hex(serial.get());
  std::string out(hex);
  OPENSSL_free(hex);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void add_extension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  require(ext != nullptr, "X509V3_EXT_conf_nid");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

}  // namespace

TestCertificate make_test_certificate(const TestCertificateOptions& options) {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  require(key != nullptr, "EVP_EC_gen");
  X509Ptr cert(X509_new());
  X509* x = cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), options.serial);
  X509_gmtime_adj(X509_getm_notBefore(x), static_cast<long>(options.not_before.count()));
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(options.not_after.count()));
  X509_set_pubkey(x, key.get());
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(options.common_name.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(x, name);
  add_extension(x, NID_basic_constraints, "critical,CA:FALSE");
  add_extension(x, NID_ext_key_usage, "serverAuth");
  add_extension(x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
  require(X509_sign(x, key.get(), EVP_sha256()) != 0, "X509_sign");

  TestCertificate out;
  out.cert_pem = pem_text([&](BIO* b) { return PEM_write_bio_X509(b, x); });
  out.key_pem = pem_text([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  out.serial_hex = lower_hex_serial(x);
  return out;
}

bool TestCertificate::key_appears_in(const std::string& text) const {
  std::istringstream lines(key_pem);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("-----") && !line.empty() && text.find(line) != std::string::npos) {
      return true;
    }
  }
  return false;
}

namespace asio = boost::asio;

struct ServedCertificateClient::Impl {
  asio::io_context ioc;
  asio::ssl::context ctx{asio::ssl::context::tls_client};
  asio::ssl::stream<asio::ip::tcp::socket> stream{ioc, ctx};
};

ServedCertificateClient::ServedCertificateClient(std::uint16_t port)
    : impl_(std::make_unique<Impl>()) {
  impl_->ctx.set_verify_mode(asio::ssl::verify_none);
  impl_->stream.next_layer().connect({asio::ip::make_address("127.0.0.1"), port});
  impl_->stream.handshake(asio::ssl::stream_base::client);
}

ServedCertificateClient::~ServedCertificateClient() = default;

std::string ServedCertificateClient::serial_hex() const {
  const X509* peer = SSL_get0_peer_certificate(impl_->stream.native_handle());
  return peer != nullptr ? lower_hex_serial(peer) : "";
}

std::string ServedCertificateClient::exchange(const std::string& target) {
  boost::system::error_code ec;
  const std::string request = "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  asio::write(impl_->stream, asio::buffer(request), ec);
  if (ec) return "";
  std::string text;
  char buf[4096];
  // Until the headers are in and Content-Length bytes follow them (bounded by the read errors
  // and the server's own timeouts).
  for (;;) {
    const std::size_t n = impl_->stream.read_some(asio::buffer(buf), ec);
    if (ec) return "";
    text.append(buf, n);
    const auto end = text.find("\r\n\r\n");
    if (end == std::string::npos) continue;
    const auto at = text.find("Content-Length: ");
    const std::size_t length =
        at == std::string::npos || at > end ? 0 : std::stoul(text.substr(at + 16));
    if (text.size() >= end + 4 + length) return text.substr(0, end + 4 + length);
  }
}

std::string ServedCertificateClient::get(const std::string& target) {
  const std::string text = exchange(target);
  return text.substr(0, text.find("\r\n"));
}

std::string ServedCertificateClient::get_body(const std::string& target) {
  const std::string text = exchange(target);
  const auto end = text.find("\r\n\r\n");
  return end == std::string::npos ? "" : text.substr(end + 4);
}

}  // namespace mp::test
