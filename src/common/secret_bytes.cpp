// SecretBytes: allocation, move and wiping.
#include "common/secret_bytes.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <ostream>
#include <utility>

namespace mp {

SecretBytes::SecretBytes(std::size_t size)
    : data_(size == 0 ? nullptr : std::make_unique<std::uint8_t[]>(size)), size_(size) {}

SecretBytes::SecretBytes(std::string_view bytes) : SecretBytes(bytes.size()) {
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(data_.get()));
}

SecretBytes SecretBytes::copy_of(std::span<const std::uint8_t> bytes) {
  SecretBytes out(bytes.size());
  std::copy(bytes.begin(), bytes.end(), out.data());
  return out;
}

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::move(other.data_)), size_(std::exchange(other.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    clear();
    data_ = std::move(other.data_);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecretBytes::~SecretBytes() {
  clear();
}

void SecretBytes::clear() noexcept {
  if (data_) OPENSSL_cleanse(data_.get(), size_);
  data_.reset();
  size_ = 0;
}

std::ostream& operator<<(std::ostream& out, const SecretBytes& secret) {
  return out << "[secret: " << secret.size() << " bytes]";
}

}  // namespace mp
