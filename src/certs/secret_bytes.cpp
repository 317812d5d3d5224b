// SecretBytes: allocation, cleansing and the size-only printer.
#include "certs/secret_bytes.hpp"

#include <openssl/crypto.h>

#include <cstring>
#include <ostream>
#include <utility>

namespace mp::certs {

SecretBytes::SecretBytes(std::size_t size)
    : bytes_(size == 0 ? nullptr : std::make_unique<std::uint8_t[]>(size)), size_(size) {}

SecretBytes::SecretBytes(std::string_view bytes) : SecretBytes(bytes.size()) {
  if (!bytes.empty()) std::memcpy(bytes_.get(), bytes.data(), bytes.size());
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : bytes_(std::move(other.bytes_)), size_(std::exchange(other.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    clear();
    bytes_ = std::move(other.bytes_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() {
  clear();
}

void SecretBytes::clear() noexcept {
  if (bytes_) OPENSSL_cleanse(bytes_.get(), size_);
  bytes_.reset();
  size_ = 0;
}

std::ostream& operator<<(std::ostream& out, const SecretBytes& secret) {
  return out << "[secret: " << secret.size() << " bytes]";
}

}  // namespace mp::certs
