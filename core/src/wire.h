// msgpack adaptors for runtime types on the wire (internal; user types use the public
// serialization in mpiray/core/serialization.h).
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#include <msgpack.hpp>

#include "mpiray/core/buffer.h"
#include "mpiray/core/ids.h"

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <>
  struct pack<mpiray::TaskId> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const mpiray::TaskId& v) const {
      o.pack_uint64(v.value);
      return o;
    }
  };
  template <>
  struct convert<mpiray::TaskId> {
    const msgpack::object& operator()(const msgpack::object& o, mpiray::TaskId& v) const {
      v.value = o.as<uint64_t>();
      return o;
    }
  };

  template <>
  struct pack<mpiray::ObjectId> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const mpiray::ObjectId& v) const {
      o.pack_array(3);
      o.pack_uint64(v.task);
      o.pack_uint32(v.index);
      o.pack_uint32(v.kind);
      return o;
    }
  };
  template <>
  struct convert<mpiray::ObjectId> {
    const msgpack::object& operator()(const msgpack::object& o, mpiray::ObjectId& v) const {
      if (o.type != msgpack::type::ARRAY || o.via.array.size != 3) throw msgpack::type_error();
      v.task = o.via.array.ptr[0].as<uint64_t>();
      v.index = o.via.array.ptr[1].as<uint32_t>();
      v.kind = o.via.array.ptr[2].as<uint32_t>();
      return o;
    }
  };

  // Buffer travels as msgpack bin; unpacking copies out of the (reused) receive zone.
  template <>
  struct pack<mpiray::Buffer> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const mpiray::Buffer& v) const {
      o.pack_bin(static_cast<uint32_t>(v.size()));
      if (v.size() > 0) {
        o.pack_bin_body(reinterpret_cast<const char*>(v.data()), static_cast<uint32_t>(v.size()));
      }
      return o;
    }
  };
  template <>
  struct convert<mpiray::Buffer> {
    const msgpack::object& operator()(const msgpack::object& o, mpiray::Buffer& v) const {
      if (o.type == msgpack::type::NIL) {
        v = mpiray::Buffer();
      } else if (o.type == msgpack::type::BIN) {
        v = mpiray::Buffer::Copy(o.via.bin.ptr, o.via.bin.size);
      } else {
        throw msgpack::type_error();
      }
      return o;
    }
  };

  }  // namespace adaptor
}
}  // namespace msgpack
