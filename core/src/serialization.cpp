// Behind mpiray/core/serialization.h: payload headers and error payloads.
#include <cstring>

#include "mpiray/core/errors.h"
#include "mpiray/core/serialization.h"

namespace mpiray {
namespace detail {

std::vector<ObjectId>*& NestedRefCollector() {
  thread_local std::vector<ObjectId>* collector = nullptr;
  return collector;
}

const Buffer*& CurrentPayload() {
  thread_local const Buffer* payload = nullptr;
  return payload;
}

std::vector<uint8_t> MakeErrorPayload(StatusCode code, const std::string& message,
                                      const std::string& extra) {
  msgpack::sbuffer sb;
  msgpack::packer<msgpack::sbuffer> pk(sb);
  pk.pack_array(extra.empty() ? 2 : 3);
  pk.pack(static_cast<int>(code));
  pk.pack(message);
  if (!extra.empty()) {
    pk.pack_bin(static_cast<uint32_t>(extra.size()));
    pk.pack_bin_body(extra.data(), static_cast<uint32_t>(extra.size()));
  }
  std::vector<uint8_t> out(sizeof(PayloadHeader) + sb.size());
  PayloadHeader h;
  h.format = static_cast<uint8_t>(PayloadFormat::kError);
  std::memcpy(out.data(), &h, sizeof h);
  std::memcpy(out.data() + sizeof h, sb.data(), sb.size());
  return out;
}

PayloadFormat CheckPayload(const Buffer& payload) {
  PayloadHeader h;
  if (payload.size() < sizeof h) {
    throw Error(StatusCode::kInternal, "corrupt object: " + std::to_string(payload.size()) + " bytes");
  }
  std::memcpy(&h, payload.data(), sizeof h);
  if (h.magic != kPayloadMagic) throw Error(StatusCode::kInternal, "corrupt object: bad magic");
  return static_cast<PayloadFormat>(h.format);
}

Status ErrorFromPayload(const Buffer& payload) {
  try {
    if (CheckPayload(payload) != PayloadFormat::kError) return Internal("not an error payload");
    msgpack::object_handle oh = msgpack::unpack(
        reinterpret_cast<const char*>(payload.data() + sizeof(PayloadHeader)),
        payload.size() - sizeof(PayloadHeader));
    const msgpack::object& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size < 2) return Internal("corrupt error object");
    return Status(static_cast<StatusCode>(o.via.array.ptr[0].as<int>()),
                  o.via.array.ptr[1].as<std::string>());
  } catch (const std::exception& e) {
    return Internal(std::string("corrupt error object: ") + e.what());
  }
}

std::string ErrorExtraFromPayload(const Buffer& payload) {
  try {
    if (CheckPayload(payload) != PayloadFormat::kError) return {};
    msgpack::object_handle oh = msgpack::unpack(
        reinterpret_cast<const char*>(payload.data() + sizeof(PayloadHeader)),
        payload.size() - sizeof(PayloadHeader));
    const msgpack::object& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size < 3) return {};
    const msgpack::object& e = o.via.array.ptr[2];
    if (e.type != msgpack::type::BIN) return {};
    return std::string(e.via.bin.ptr, e.via.bin.size);
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace detail
}  // namespace mpiray
