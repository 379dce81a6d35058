// Buffer: an immutable, shared view of bytes. Small objects own a heap vector; large objects
// point into a shared-memory mapping that stays mapped while any Buffer refers to it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace mpiray {

/// @brief Shared, read-only bytes with a keep-alive owner.
class Buffer {
 public:
  Buffer() = default;
  /// @brief Take ownership of `bytes`.
  explicit Buffer(std::vector<uint8_t> bytes) {
    auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
    data_ = owned->data();
    size_ = owned->size();
    owner_ = std::move(owned);
  }
  /// @brief View `size` bytes at `data`, kept valid by `owner`.
  Buffer(const uint8_t* data, size_t size, std::shared_ptr<const void> owner)
      : data_(data), size_(size), owner_(std::move(owner)) {}
  /// @brief Copy `size` bytes into a new owned buffer.
  static Buffer Copy(const void* data, size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    return Buffer(std::vector<uint8_t>(p, p + size));
  }

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::shared_ptr<const void>& owner() const { return owner_; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<const void> owner_;
};

}  // namespace mpiray
