// SecretBytes: a move-only byte buffer for keys, passwords' products and plaintext credentials,
// wiped (OPENSSL_cleanse) when freed or reassigned, and printed only as its size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <string_view>

namespace mp {

// std::string and std::vector are not used for secrets: a short string keeps its bytes inline
// and copies them on move, and a growing vector frees its old storage unwiped. Here the bytes
// live in one heap block that only moves by pointer and is wiped before it is freed.
class SecretBytes {
 public:
  SecretBytes() = default;
  // `size` zero bytes, to be filled through data().
  explicit SecretBytes(std::size_t size);
  // A copy of `bytes`; the caller remains responsible for wiping its own copy.
  explicit SecretBytes(std::string_view bytes);
  static SecretBytes copy_of(std::span<const std::uint8_t> bytes);

  SecretBytes(SecretBytes&& other) noexcept;
  SecretBytes& operator=(SecretBytes&& other) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes();

  std::uint8_t* data() noexcept { return data_.get(); }
  const std::uint8_t* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const std::uint8_t> bytes() const noexcept { return {data_.get(), size_}; }
  // The bytes as text (e.g. PEM) for the one consumer that needs them; the view dies with this
  // object.
  std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(data_.get()), size_};
  }

  // Wipes and frees now rather than at destruction.
  void clear() noexcept;

 private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t size_ = 0;
};

// "[secret: N bytes]": a secret that reaches a stream by mistake shows nothing.
std::ostream& operator<<(std::ostream& out, const SecretBytes& secret);

}  // namespace mp
