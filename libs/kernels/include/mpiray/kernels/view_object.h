// Kokkos Views as objects in mpiray's store (C++ API).
//
//   Kokkos::View<double**> a("a", 1000, 1000);
//   auto ref = mpiray::Put(a);                              // ObjectRef<Kokkos::View<double**>>
//   auto sum = mpiray::Task(Sum).Remote(ref);               // Sum(mpiray::kernels::HostView<double**>)
//   mpiray::kernels::HostView<double**> h = mpiray::kernels::GetView(ref);  // zero copy
//   Kokkos::View<double**> b = *mpiray::Get(ref);           // a new managed copy (any memory space)
//
// A View travels as its element type, layout, extents and bytes (msgpack: ["mpiray.kokkos.View",
// type code, layout, [extents], padding, data]). Read back as a HostView on the node that holds
// the object (every Get reads from its own node's store; other nodes' objects are fetched into
// it first), the View points straight into the shared memory: no copy. The bytes of a View
// stored on its own (Put, a task argument or return value) start 64-byte aligned; inside a
// larger value they may not be, and a HostView then copies them once into aligned memory.
// Reading into a managed Kokkos::View allocates it in the View's memory space and copies the
// bytes there once (host -> device directly for a device View); storing a device View copies it
// to the host once.
//
// Kokkos must be initialised on every rank before objects are read (Kokkos::ScopeGuard or
// Kokkos::initialize before mpiray::Init, as MPI+Kokkos programs do; the kernels library
// initialises it on first use otherwise). Element types: arithmetic types (float, double,
// integers, bool); layouts: LayoutRight and LayoutLeft (a strided View is stored as LayoutRight).
#pragma once

#include <Kokkos_Core.hpp>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "mpiray/core/api.h"
#include "mpiray/core/errors.h"
#include "mpiray/core/object_ref.h"
#include "mpiray/core/serialization.h"
#include "mpiray/kernels/runtime.h"

namespace mpiray::kernels {

namespace view_detail {

inline constexpr const char kTag[] = "mpiray.kokkos.View";
inline constexpr uint32_t kTagLen = sizeof(kTag) - 1;
inline constexpr size_t kAlign = 64;
enum : uint8_t { kLayoutRight = 0, kLayoutLeft = 1 };

/// A stable code per element type: kind (0 float, 1 signed, 2 unsigned, 3 bool) * 16 + size.
template <class T>
constexpr uint8_t TypeCode() {
  static_assert(std::is_arithmetic_v<T>, "Views as objects hold arithmetic element types");
  if constexpr (std::is_same_v<T, bool>) return 3 * 16 + 1;
  if constexpr (std::is_floating_point_v<T>) return static_cast<uint8_t>(0 * 16 + sizeof(T));
  if constexpr (std::is_signed_v<T>) return static_cast<uint8_t>(1 * 16 + sizeof(T));
  return static_cast<uint8_t>(2 * 16 + sizeof(T));
}
inline std::string TypeName(uint8_t code) {
  static const char* kinds[] = {"float", "int", "uint", "bool"};
  if (code == 3 * 16 + 1) return "bool";
  return std::string(code / 16 < 4 ? kinds[code / 16] : "?") + std::to_string(8 * (code % 16));
}

template <class Layout>
constexpr uint8_t LayoutCode() {
  return std::is_same_v<Layout, Kokkos::LayoutLeft> ? kLayoutLeft : kLayoutRight;
}

inline size_t BinHeader(size_t n) { return n < 256 ? 2 : (n < 65536 ? 3 : 5); }

/// Padding that puts the data at a 64-byte boundary of the payload when the View is the whole
/// value (the payload's 8-byte header, then this encoding; the payload itself is page-aligned
/// in shared memory).
inline size_t Padding(size_t rank, size_t bytes) {
  const size_t before = sizeof(mpiray::detail::PayloadHeader) + 1 /*array*/ + 1 + kTagLen /*tag*/ +
                        1 /*type*/ + 1 /*layout*/ + 1 + 9 * rank /*extents*/ + 2 /*pad header*/ +
                        BinHeader(bytes);
  return (kAlign - before % kAlign) % kAlign;
}

/// Pack a contiguous host array as a View of `rank` extents.
template <class Stream, class T>
void PackView(msgpack::packer<Stream>& o, const T* data, const size_t* extents, size_t rank,
              uint8_t layout) {
  size_t count = 1;
  for (size_t r = 0; r < rank; ++r) count *= extents[r];
  const size_t bytes = count * sizeof(T);
  if (bytes > 0xffffffffull) {
    throw InvalidArgumentError("a Kokkos View of " + std::to_string(bytes) +
                               " bytes is too large for one object (4 GiB at most)");
  }
  o.pack_array(6);
  o.pack_str(kTagLen);
  o.pack_str_body(kTag, kTagLen);
  o.pack_uint8(TypeCode<T>());
  o.pack_uint8(layout);
  o.pack_array(static_cast<uint32_t>(rank));
  for (size_t r = 0; r < rank; ++r) o.pack_fix_uint64(extents[r]);
  const size_t pad = Padding(rank, bytes);
  static const char zeros[kAlign] = {};
  o.pack_bin(static_cast<uint32_t>(pad));
  o.pack_bin_body(zeros, static_cast<uint32_t>(pad));
  o.pack_bin(static_cast<uint32_t>(bytes));
  o.pack_bin_body(reinterpret_cast<const char*>(data), static_cast<uint32_t>(bytes));
}

/// What a stored View says about itself.
struct Stored {
  uint8_t type = 0;
  uint8_t layout = 0;
  size_t rank = 0;
  std::array<size_t, 8> extents{};
  const char* data = nullptr;
  size_t bytes = 0;
};

inline Stored Parse(const msgpack::object& o) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 6) throw msgpack::type_error();
  const msgpack::object* f = o.via.array.ptr;
  if (f[0].type != msgpack::type::STR || f[0].via.str.size != kTagLen ||
      std::memcmp(f[0].via.str.ptr, kTag, kTagLen) != 0) {
    throw msgpack::type_error();
  }
  Stored s;
  s.type = f[1].as<uint8_t>();
  s.layout = f[2].as<uint8_t>();
  if (f[3].type != msgpack::type::ARRAY || f[3].via.array.size > 8) throw msgpack::type_error();
  s.rank = f[3].via.array.size;
  for (size_t r = 0; r < s.rank; ++r) s.extents[r] = f[3].via.array.ptr[r].as<uint64_t>();
  if (f[5].type != msgpack::type::BIN) throw msgpack::type_error();
  s.data = f[5].via.bin.ptr;
  s.bytes = f[5].via.bin.size;
  return s;
}

/// Check a stored View against the requested element type and rank (clear errors).
template <class ViewType>
void Check(const Stored& s, const char* what) {
  using T = typename ViewType::non_const_value_type;
  constexpr size_t rank = ViewType::rank;
  if (s.type != TypeCode<T>()) {
    throw InvalidArgumentError(std::string(what) + ": the object holds a View of " + TypeName(s.type) +
                               ", not of " + TypeName(TypeCode<T>()));
  }
  if (s.rank != rank) {
    throw InvalidArgumentError(std::string(what) + ": the object holds a View of rank " +
                               std::to_string(s.rank) + ", not " + std::to_string(rank));
  }
  size_t count = 1;
  for (size_t r = 0; r < s.rank; ++r) {
    count *= s.extents[r];
    if (r >= ViewType::rank_dynamic) {  // a compile-time extent, e.g. the 3 of double*[3]
      const size_t want = ViewType::static_extent(static_cast<unsigned>(r));
      if (want != s.extents[r]) {
        throw InvalidArgumentError(std::string(what) + ": extent " + std::to_string(r) + " is " +
                                   std::to_string(s.extents[r]) + ", the View type says " +
                                   std::to_string(want));
      }
    }
  }
  if (count * sizeof(T) != s.bytes) throw msgpack::type_error();
}

/// Extent r for the constructor of a View of type V: its runtime extents only (Kokkos' "not
/// given" for compile-time ones and beyond the rank).
template <class V>
size_t Ext(const Stored& s, size_t r) {
  return r < V::rank_dynamic ? s.extents[r] : KOKKOS_IMPL_CTOR_DEFAULT_ARG;
}

/// An unmanaged host View of layout L over stored bytes.
template <class DataType, class L>
auto Unmanaged(const Stored& s, const void* data) {
  using V = Kokkos::View<typename Kokkos::View<DataType>::const_data_type, L, Kokkos::HostSpace,
                         Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using T = typename V::non_const_value_type;
  const T* p = static_cast<const T*>(data);
  return V(p, Ext<V>(s, 0), Ext<V>(s, 1), Ext<V>(s, 2), Ext<V>(s, 3), Ext<V>(s, 4), Ext<V>(s, 5),
           Ext<V>(s, 6), Ext<V>(s, 7));
}

}  // namespace view_detail

/// @brief A read-only host View of an object's bytes, and what keeps them alive: on the node
/// holding the object, the View points into the shared-memory store (no copy). Copyable; the
/// memory stays valid while any copy exists. Also a task parameter type: a task taking a
/// HostView reads its View argument in place.
template <class DataType, class Layout = Kokkos::LayoutRight>
class HostView {
 public:
  using view_type = Kokkos::View<typename Kokkos::View<DataType>::const_data_type, Layout,
                                 Kokkos::HostSpace, Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using value_type = typename view_type::non_const_value_type;

  HostView() = default;
  /// @brief Wrap a host-accessible View (kept alive by this HostView): what a caller passes
  /// where a task takes a HostView.
  template <class D, class... P>
  HostView(const Kokkos::View<D, P...>& v) {  // NOLINT: implicit on purpose (task arguments)
    using Src = Kokkos::View<D, P...>;
    static_assert(Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename Src::memory_space>::accessible,
                  "HostView wraps host-accessible Views only; copy device Views with create_mirror_view_and_copy");
    static_assert(std::is_same_v<typename Src::array_layout, Layout> || Src::rank <= 1,
                  "HostView<..., Layout> of a View with another layout");
    auto keep = std::make_shared<Src>(v);
    view_ = view_type(keep->data(), Extent(*keep, 0), Extent(*keep, 1), Extent(*keep, 2),
                      Extent(*keep, 3), Extent(*keep, 4), Extent(*keep, 5), Extent(*keep, 6),
                      Extent(*keep, 7));
    keep_ = std::move(keep);
  }
  HostView(view_type view, std::shared_ptr<const void> keep, bool zero_copy)
      : view_(view), keep_(std::move(keep)), zero_copy_(zero_copy) {}

  /// @brief The unmanaged host View (valid while this HostView or a copy lives).
  const view_type& view() const { return view_; }
  operator const view_type&() const { return view_; }  // NOLINT
  const value_type* data() const { return view_.data(); }
  size_t extent(unsigned r) const { return view_.extent(r); }
  size_t size() const { return view_.size(); }
  template <class... I>
  const value_type& operator()(I... i) const {
    return view_(i...);
  }
  /// @brief True when the View points into the object's payload (shared memory for objects
  /// in the store), false when it had to be copied (a misaligned View inside a larger value).
  bool zero_copy() const { return zero_copy_; }

 private:
  template <class V>
  static size_t Extent(const V& v, unsigned r) {
    return r < V::rank_dynamic ? v.extent(r) : KOKKOS_IMPL_CTOR_DEFAULT_ARG;
  }
  view_type view_;
  std::shared_ptr<const void> keep_;
  bool zero_copy_ = false;
};

/// @brief Read a stored View in place (on this node: no copy): Get of a Kokkos View object as
/// a HostView.
template <class D, class... P>
HostView<D, typename Kokkos::View<D, P...>::array_layout> GetView(
    const ObjectRef<Kokkos::View<D, P...>>& ref, int64_t timeout_ms = -1) {
  using H = HostView<D, typename Kokkos::View<D, P...>::array_layout>;
  return *mpiray::Get(ObjectRef<H>(ref.ID()), timeout_ms);
}

}  // namespace mpiray::kernels

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <class D, class... P>
  struct pack<Kokkos::View<D, P...>> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const Kokkos::View<D, P...>& v) const {
      namespace vd = mpiray::kernels::view_detail;
      using V = Kokkos::View<D, P...>;
      using T = typename V::non_const_value_type;
      using L = typename V::array_layout;
      constexpr bool kHost =
          Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename V::memory_space>::accessible;
      constexpr bool kKnownLayout =
          std::is_same_v<L, Kokkos::LayoutRight> || std::is_same_v<L, Kokkos::LayoutLeft>;
      size_t ext[8];
      for (unsigned r = 0; r < 8; ++r) ext[r] = r < V::rank ? v.extent(r) : KOKKOS_IMPL_CTOR_DEFAULT_ARG;
      if constexpr (std::is_same_v<Stream, mpiray::detail::CountingStream>) {
        // Measuring pass: only sizes matter; nothing is read (no device copy).
        vd::PackView<Stream, T>(o, nullptr, ext, V::rank, vd::LayoutCode<L>());
      } else if constexpr (kHost && kKnownLayout) {
        if (v.span_is_contiguous() || v.size() == 0) {
          vd::PackView<Stream, T>(o, v.data(), ext, V::rank, vd::LayoutCode<L>());
        } else {  // a strided subview: copy into a contiguous host View of the same layout
          auto c = Kokkos::create_mirror(Kokkos::HostSpace(), v);
          Kokkos::deep_copy(c, v);
          vd::PackView<Stream, T>(o, c.data(), ext, V::rank, vd::LayoutCode<L>());
        }
      } else if constexpr (kKnownLayout) {  // device memory: one copy to the host
        auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
        vd::PackView<Stream, T>(o, h.data(), ext, V::rank, vd::LayoutCode<L>());
      } else {  // LayoutStride and others: stored as LayoutRight
        size_t d[8];
        for (unsigned r = 0; r < 8; ++r) d[r] = r < V::rank_dynamic ? ext[r] : KOKKOS_IMPL_CTOR_DEFAULT_ARG;
        Kokkos::View<typename V::non_const_data_type, Kokkos::LayoutRight, Kokkos::HostSpace> h(
            "mpiray::View copy", d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
        auto m = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), v);
        Kokkos::deep_copy(h, m);
        vd::PackView<Stream, T>(o, h.data(), ext, V::rank, vd::kLayoutRight);
      }
      return o;
    }
  };

  // Reading into a managed View: allocated in its memory space, the bytes copied there once.
  template <class D, class... P>
  struct convert<Kokkos::View<D, P...>> {
    const msgpack::object& operator()(const msgpack::object& o, Kokkos::View<D, P...>& v) const {
      namespace vd = mpiray::kernels::view_detail;
      using V = Kokkos::View<D, P...>;
      static_assert(!V::traits::memory_traits::is_unmanaged,
                    "an unmanaged View cannot own what it reads: read into a managed View, or "
                    "use mpiray::kernels::HostView (zero copy) / GetView");
      const vd::Stored s = vd::Parse(o);
      vd::Check<V>(s, "reading a Kokkos View");
      mpiray::kernels::EnsureInitialized();
      V out(Kokkos::view_alloc(std::string("mpiray::Get"), Kokkos::WithoutInitializing),
            vd::Ext<V>(s, 0), vd::Ext<V>(s, 1), vd::Ext<V>(s, 2), vd::Ext<V>(s, 3), vd::Ext<V>(s, 4),
            vd::Ext<V>(s, 5), vd::Ext<V>(s, 6), vd::Ext<V>(s, 7));
      // The bytes may sit anywhere in the payload: copy them to aligned host memory first when
      // they are not aligned for the element type.
      using T = typename V::non_const_value_type;
      std::unique_ptr<T[]> aligned;
      const void* src = s.data;
      if (reinterpret_cast<uintptr_t>(src) % alignof(T) != 0) {
        aligned.reset(new T[s.bytes / sizeof(T) + 1]);
        std::memcpy(aligned.get(), s.data, s.bytes);
        src = aligned.get();
      }
      using L = typename V::array_layout;
      constexpr bool kHost =
          Kokkos::SpaceAccessibility<Kokkos::HostSpace, typename V::memory_space>::accessible;
      auto copy_from = [&](auto host_src) {
        using HS = decltype(host_src);
        if constexpr (kHost || std::is_same_v<typename HS::array_layout, L>) {
          Kokkos::deep_copy(out, host_src);  // host -> device directly when layouts agree
        } else {
          auto mirror = Kokkos::create_mirror_view(out);
          Kokkos::deep_copy(mirror, host_src);
          Kokkos::deep_copy(out, mirror);
        }
      };
      if (s.layout == vd::kLayoutLeft) {
        copy_from(vd::Unmanaged<D, Kokkos::LayoutLeft>(s, src));
      } else {
        copy_from(vd::Unmanaged<D, Kokkos::LayoutRight>(s, src));
      }
      Kokkos::fence();
      v = out;
      return o;
    }
  };

  template <class D, class L>
  struct pack<mpiray::kernels::HostView<D, L>> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const mpiray::kernels::HostView<D, L>& h) const {
      return o << h.view();
    }
  };

  // Reading into a HostView: zero copy when the bytes are in the payload and aligned.
  template <class D, class L>
  struct convert<mpiray::kernels::HostView<D, L>> {
    const msgpack::object& operator()(const msgpack::object& o,
                                      mpiray::kernels::HostView<D, L>& h) const {
      namespace vd = mpiray::kernels::view_detail;
      using H = mpiray::kernels::HostView<D, L>;
      using T = typename H::value_type;
      const vd::Stored s = vd::Parse(o);
      vd::Check<typename H::view_type>(s, "reading a Kokkos View");
      if (s.layout != vd::LayoutCode<L>() && s.rank > 1) {
        throw mpiray::InvalidArgumentError(
            std::string("reading a Kokkos View: the object holds a ") +
            (s.layout == vd::kLayoutLeft ? "LayoutLeft" : "LayoutRight") +
            " View; read it as HostView<..., Kokkos::" +
            (s.layout == vd::kLayoutLeft ? "LayoutLeft" : "LayoutRight") + ">");
      }
      const mpiray::Buffer* payload = mpiray::detail::CurrentPayload();
      const auto* p = reinterpret_cast<const uint8_t*>(s.data);
      const bool in_payload =
          payload && p >= payload->data() && p + s.bytes <= payload->data() + payload->size();
      if (in_payload && reinterpret_cast<uintptr_t>(p) % alignof(T) == 0) {
        h = H(vd::Unmanaged<D, L>(s, p), payload->owner(), true);
      } else {  // misaligned (inside a larger value): one copy into aligned memory
        auto mem = std::shared_ptr<T[]>(new T[s.bytes / sizeof(T) + 1]);
        std::memcpy(mem.get(), s.data, s.bytes);
        h = H(vd::Unmanaged<D, L>(s, mem.get()), std::shared_ptr<const void>(mem, mem.get()), false);
      }
      return o;
    }
  };

  }  // namespace adaptor
}
}  // namespace msgpack
