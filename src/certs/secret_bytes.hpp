// SecretBytes: key material held in memory, wiped on destruction, never printed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <string_view>

namespace mp::certs {

// A move-only byte buffer for secrets (a private key's DER). The bytes are cleansed
// (OPENSSL_cleanse, which the compiler cannot elide) when the object dies or is assigned over;
// moves hand the one buffer on, so no uncleansed copy is ever left behind. Printing it shows
// only its size, so a test failure or a log line cannot spill it.
class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::size_t size);  // zero-filled, to be written through data()
  explicit SecretBytes(std::string_view bytes);
  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::uint8_t* data() noexcept { return bytes_.get(); }
  const std::uint8_t* data() const noexcept { return bytes_.get(); }
  std::span<const std::uint8_t> bytes() const noexcept { return {bytes_.get(), size_}; }
  // For the one consumer that needs the bytes (e.g. h2::ClientIdentity::from_der); the view
  // dies with this object.
  std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(bytes_.get()), size_};
  }

  void clear() noexcept;

 private:
  std::unique_ptr<std::uint8_t[]> bytes_;
  std::size_t size_ = 0;
};

// "[secret: 1218 bytes]": never the bytes.
std::ostream& operator<<(std::ostream& out, const SecretBytes& secret);

}  // namespace mp::certs
