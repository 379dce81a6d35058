// How values become object payloads. A payload is an 8-byte header (magic, format) followed by
// the body; C++ values are msgpack (msgpack-cxx: make your types serializable with
// MSGPACK_DEFINE). Serialize() measures first and writes second, so a large value is written
// exactly once, straight into shared memory.
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mpiray/core/buffer.h"
#include "mpiray/core/errors.h"
#include "mpiray/core/ids.h"

namespace mpiray {

namespace detail {

inline constexpr uint32_t kPayloadMagic = 0x5952504d;  // "MPRY"
enum class PayloadFormat : uint8_t { kMsgpack = 1, kError = 2, kPython = 3, kRaw = 4 };

struct PayloadHeader {
  uint32_t magic = kPayloadMagic;
  uint8_t format = 0;
  uint8_t reserved[3] = {0, 0, 0};
};
static_assert(sizeof(PayloadHeader) == 8);

/// @brief A value ready to be written: its size is known before any byte is written.
struct SerializedValue {
  PayloadFormat format = PayloadFormat::kMsgpack;
  size_t body_size = 0;
  /// Writes exactly body_size bytes; may refer to the original value, so call it before the
  /// value goes away.
  std::function<void(uint8_t*)> write_body;
  /// ObjectRefs found inside the value (kept alive as long as the object lives).
  std::vector<ObjectId> nested;

  size_t size() const { return sizeof(PayloadHeader) + body_size; }
  void WriteTo(uint8_t* dst) const {
    PayloadHeader h;
    h.format = static_cast<uint8_t>(format);
    std::memcpy(dst, &h, sizeof h);
    if (body_size) write_body(dst + sizeof h);
  }
  std::vector<uint8_t> ToVector() const {
    std::vector<uint8_t> v(size());
    WriteTo(v.data());
    return v;
  }
};

/// Collects ObjectRefs met while packing (null: not collecting).
std::vector<ObjectId>*& NestedRefCollector();
/// The payload being unpacked, so byte arrays can point into it instead of copying.
const Buffer*& CurrentPayload();

struct CountingStream {
  size_t n = 0;
  void write(const char*, size_t len) { n += len; }
};
struct RawStream {
  uint8_t* p;
  void write(const char* d, size_t len) {
    if (len == 0) return;  // d may be null for empty ranges
    std::memcpy(p, d, len);
    p += len;
  }
};

/// @brief Serialize a C++ value with msgpack. The result refers to `value`.
template <class T>
SerializedValue Serialize(const T& value) {
  SerializedValue out;
  CountingStream counter;
  {
    auto* saved = NestedRefCollector();
    NestedRefCollector() = &out.nested;
    msgpack::packer<CountingStream> pk(counter);
    try {
      pk.pack(value);
    } catch (...) {
      NestedRefCollector() = saved;
      throw;
    }
    NestedRefCollector() = saved;
  }
  out.body_size = counter.n;
  out.write_body = [&value](uint8_t* dst) {
    auto* saved = NestedRefCollector();
    NestedRefCollector() = nullptr;
    RawStream rs{dst};
    msgpack::packer<RawStream> pk(rs);
    pk.pack(value);
    NestedRefCollector() = saved;
  };
  return out;
}

/// @brief An error payload (what Get raises for a failed task). `extra` carries
/// language-specific detail (Python: the pickled exception, to re-raise its type).
std::vector<uint8_t> MakeErrorPayload(StatusCode code, const std::string& message,
                                      const std::string& extra = {});
/// @brief `extra` of a system error that reached a task through one of its arguments (see
/// head::ArgumentErrorPayload).
inline constexpr std::string_view kArgumentErrorMark = "mpiray:argument-error";
/// @brief The status stored in an error payload (kInternal if it is not one).
Status ErrorFromPayload(const Buffer& payload);
/// @brief The `extra` bytes of an error payload (empty if none).
std::string ErrorExtraFromPayload(const Buffer& payload);
/// @brief Validates the header; returns the format (throws on garbage).
PayloadFormat CheckPayload(const Buffer& payload);

inline bool ReferenceBins(msgpack::type::object_type type, std::size_t, void*) {
  return type == msgpack::type::BIN || type == msgpack::type::EXT;
}

/// @brief Read a C++ value back; error payloads are thrown as the matching exception.
template <class T>
T Deserialize(const Buffer& payload) {
  PayloadFormat f = CheckPayload(payload);
  if (f == PayloadFormat::kError) {
    ThrowIfError(ErrorFromPayload(payload));
  }
  if (f != PayloadFormat::kMsgpack) {
    throw Error(StatusCode::kInvalidArgument,
                "object was not produced by C++ code (payload format " +
                    std::to_string(static_cast<int>(f)) + "); it cannot be read as a C++ value");
  }
  const auto* body = reinterpret_cast<const char*>(payload.data() + sizeof(PayloadHeader));
  size_t len = payload.size() - sizeof(PayloadHeader);
  const Buffer* saved = CurrentPayload();
  CurrentPayload() = &payload;
  try {
    msgpack::object_handle oh = msgpack::unpack(body, len, ReferenceBins);
    T value = oh.get().as<T>();
    CurrentPayload() = saved;
    return value;
  } catch (const msgpack::type_error&) {
    CurrentPayload() = saved;
    throw Error(StatusCode::kInvalidArgument,
                "object does not hold the requested C++ type (msgpack type mismatch)");
  } catch (...) {
    CurrentPayload() = saved;
    throw;
  }
}

}  // namespace detail

/// @brief Bytes that are read zero-copy from the object store: a Blob got from a large object
/// points straight into the node's shared memory.
class Blob {
 public:
  Blob() = default;
  explicit Blob(std::vector<uint8_t> bytes) : buf_(std::move(bytes)) {}
  Blob(const void* data, size_t size) : buf_(Buffer::Copy(data, size)) {}
  explicit Blob(Buffer buffer) : buf_(std::move(buffer)) {}
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return buf_.size(); }
  const Buffer& buffer() const { return buf_; }

 private:
  Buffer buf_;
};

}  // namespace mpiray

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct pack<mpiray::Blob> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const mpiray::Blob& v) const {
      o.pack_bin(static_cast<uint32_t>(v.size()));
      if (v.size() > 0) {
        o.pack_bin_body(reinterpret_cast<const char*>(v.data()), static_cast<uint32_t>(v.size()));
      }
      return o;
    }
  };
  template <>
  struct convert<mpiray::Blob> {
    const msgpack::object& operator()(const msgpack::object& o, mpiray::Blob& v) const {
      if (o.type != msgpack::type::BIN) throw msgpack::type_error();
      const auto* p = reinterpret_cast<const uint8_t*>(o.via.bin.ptr);
      const mpiray::Buffer* src = mpiray::detail::CurrentPayload();
      if (src && p >= src->data() && p + o.via.bin.size <= src->data() + src->size()) {
        v = mpiray::Blob(mpiray::Buffer(p, o.via.bin.size, src->owner()));  // zero-copy
      } else {
        v = mpiray::Blob(p, o.via.bin.size);
      }
      return o;
    }
  };
  }  // namespace adaptor
}
}  // namespace msgpack
