// Packing and unpacking of credential material.
#include "credentials/credential_material.hpp"

#include <cstdint>
#include <cstring>

namespace mp::credentials {
namespace {

constexpr std::string_view kMagic = "mpc1";

void put_u32(std::uint8_t*& out, std::uint32_t v) {
  *out++ = static_cast<std::uint8_t>(v >> 24);
  *out++ = static_cast<std::uint8_t>(v >> 16);
  *out++ = static_cast<std::uint8_t>(v >> 8);
  *out++ = static_cast<std::uint8_t>(v);
}

void put(std::uint8_t*& out, std::span<const std::uint8_t> bytes) {
  put_u32(out, static_cast<std::uint32_t>(bytes.size()));
  if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
  out += bytes.size();
}

std::span<const std::uint8_t> span_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// Reads big-endian lengths and the bytes they announce, never past the end.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : rest_(bytes) {}
  bool u32(std::uint32_t& v) {
    if (rest_.size() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<std::uint8_t>(rest_[i]);
    rest_.remove_prefix(4);
    return true;
  }
  bool field(std::string_view& out) {
    std::uint32_t n = 0;
    if (!u32(n) || n > rest_.size()) return false;
    out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }
  bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

Error damaged(std::string_view what) {
  return make_error(Errc::invalid_argument, "stored credential material is damaged (" +
                                                std::string(what) +
                                                "): upload the certificate again");
}

}  // namespace

SecretBytes pack_material(const certs::PushCertificate& c) {
  std::size_t size =
      kMagic.size() + 4 + c.certificate_der.size() + 4 + 4 + c.private_key_der.size();
  for (const auto& d : c.chain_der) size += 4 + d.size();
  SecretBytes out(size);
  std::uint8_t* p = out.data();
  std::memcpy(p, kMagic.data(), kMagic.size());
  p += kMagic.size();
  put(p, span_of(c.certificate_der));
  put_u32(p, static_cast<std::uint32_t>(c.chain_der.size()));
  for (const auto& d : c.chain_der) put(p, span_of(d));
  put(p, c.private_key_der.bytes());
  return out;
}

Result<CredentialMaterial> unpack_material(std::string_view bytes) {
  if (bytes.substr(0, kMagic.size()) != kMagic) return damaged("unknown format");
  Reader r(bytes.substr(kMagic.size()));
  std::string_view cert;
  std::uint32_t chain_count = 0;
  if (!r.field(cert) || cert.empty()) return damaged("certificate");
  if (!r.u32(chain_count) || chain_count > kMaxChainCertificates) return damaged("chain");
  CredentialMaterial m;
  m.certificate_der.assign(cert);
  for (std::uint32_t i = 0; i < chain_count; ++i) {
    std::string_view d;
    if (!r.field(d) || d.empty()) return damaged("chain");
    m.chain_der.emplace_back(d);
  }
  std::string_view key;
  if (!r.field(key) || key.empty()) return damaged("key");
  if (!r.done()) return damaged("trailing bytes");
  m.private_key_der = SecretBytes::copy_of(span_of(key));
  return m;
}

std::string credential_aad(std::string_view customer_id, std::string_view fingerprint_hex) {
  return "credential:" + std::string(customer_id) + ":" + std::string(fingerprint_hex);
}

}  // namespace mp::credentials
