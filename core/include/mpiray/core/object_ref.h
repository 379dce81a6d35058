// ObjectRef<T>: a counted handle to an object in the cluster. While any ObjectRef (in any
// process, or nested inside another live object) refers to an object, it is kept; when the
// last one goes, the object is freed.
#pragma once

#include <memory>
#include <vector>

#include "mpiray/core/detail/core_client.h"
#include "mpiray/core/serialization.h"

namespace mpiray {

namespace detail {
struct AdoptRef {};  // the id's local reference was already counted by the runtime
inline constexpr int kExtObjectRef = 1;
inline constexpr int kExtActorHandle = 2;
}  // namespace detail

/// @brief A reference to a (possibly not yet computed) object of type T.
template <class T>
class ObjectRef {
 public:
  ObjectRef() = default;
  /// @brief A new handle to `id` (counts a reference).
  explicit ObjectRef(const ObjectId& id) : id_(id), epoch_(detail::ClientEpoch()) {
    if (!id_.nil()) detail::Client()->AddLocalRef(id_);
  }
  ObjectRef(const ObjectId& id, detail::AdoptRef) : id_(id), epoch_(detail::ClientEpoch()) {}
  ObjectRef(const ObjectRef& o) : id_(o.id_), epoch_(o.epoch_) {
    if (!id_.nil() && Current()) detail::Client()->AddLocalRef(id_);
  }
  ObjectRef(ObjectRef&& o) noexcept : id_(o.id_), epoch_(o.epoch_) { o.id_ = ObjectId(); }
  ObjectRef& operator=(const ObjectRef& o) {
    if (this != &o) {
      ObjectRef tmp(o);
      std::swap(id_, tmp.id_);
      std::swap(epoch_, tmp.epoch_);
    }
    return *this;
  }
  ObjectRef& operator=(ObjectRef&& o) noexcept {
    if (this != &o) {
      Reset();
      id_ = o.id_;
      epoch_ = o.epoch_;
      o.id_ = ObjectId();
    }
    return *this;
  }
  ~ObjectRef() { Reset(); }

  /// @brief The object's id (throws if the handle belongs to an earlier Init).
  const ObjectId& ID() const {
    if (!id_.nil() && !Current()) {
      throw Error(StatusCode::kObjectLost, "this ObjectRef belongs to an earlier mpiray session");
    }
    return id_;
  }
  bool IsNil() const { return id_.nil(); }
  friend bool operator==(const ObjectRef& a, const ObjectRef& b) {
    return a.id_ == b.id_ && a.epoch_ == b.epoch_;
  }

  /// @brief Same as mpiray::Get(*this, timeout_ms).
  auto Get(int64_t timeout_ms = -1) const;

 private:
  bool Current() const { return epoch_ == detail::ClientEpoch(); }
  void Reset() {
    if (!id_.nil()) {
      if (auto* c = detail::ClientOrNull(); c && Current()) c->RemoveLocalRef(id_);
      id_ = ObjectId();
    }
  }
  ObjectId id_;
  uint32_t epoch_ = 0;
};

}  // namespace mpiray

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  // An ObjectRef inside a value travels as a 16-byte ext; packing records it as a nested ref.
  template <class T>
  struct pack<mpiray::ObjectRef<T>> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const mpiray::ObjectRef<T>& v) const {
      const mpiray::ObjectId id = v.IsNil() ? mpiray::ObjectId() : v.ID();
      char raw[16];
      std::memcpy(raw, &id.task, 8);
      std::memcpy(raw + 8, &id.index, 4);
      std::memcpy(raw + 12, &id.kind, 4);
      o.pack_ext(16, mpiray::detail::kExtObjectRef);
      o.pack_ext_body(raw, 16);
      if (auto* c = mpiray::detail::NestedRefCollector(); c && !id.nil()) c->push_back(id);
      return o;
    }
  };
  template <class T>
  struct convert<mpiray::ObjectRef<T>> {
    const msgpack::object& operator()(const msgpack::object& o, mpiray::ObjectRef<T>& v) const {
      if (o.type != msgpack::type::EXT || o.via.ext.type() != mpiray::detail::kExtObjectRef ||
          o.via.ext.size != 16) {
        throw msgpack::type_error();
      }
      mpiray::ObjectId id;
      std::memcpy(&id.task, o.via.ext.data(), 8);
      std::memcpy(&id.index, o.via.ext.data() + 8, 4);
      std::memcpy(&id.kind, o.via.ext.data() + 12, 4);
      v = mpiray::ObjectRef<T>(id);
      return o;
    }
  };
  }  // namespace adaptor
}
}  // namespace msgpack
