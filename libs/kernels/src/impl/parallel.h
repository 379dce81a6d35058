// The one place where kernels meet Kokkos: ParallelFor over an index range on the device
// (default execution space) or on the host, and device buffers. Without Kokkos
// (MPIRAY_KERNELS_KOKKOS undefined) the same functors run in plain loops over std::vector.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#ifdef MPIRAY_KERNELS_KOKKOS
#include <Kokkos_Core.hpp>
#define MPIRAY_KFN KOKKOS_INLINE_FUNCTION
#else
#include <cmath>
#define MPIRAY_KFN inline
#endif

#include "mpiray/kernels/runtime.h"

namespace mpiray::kernels::impl {

// Math usable in kernels on every backend (Kokkos moved these from Experimental in 3.7).
namespace kmath {
#if defined(MPIRAY_KERNELS_KOKKOS) && KOKKOS_VERSION >= 30700
using Kokkos::cos;
using Kokkos::fmod;
using Kokkos::sin;
#elif defined(MPIRAY_KERNELS_KOKKOS)
using Kokkos::Experimental::cos;
using Kokkos::Experimental::fmod;
using Kokkos::Experimental::sin;
#else
using std::cos;
using std::fmod;
using std::sin;
#endif
}  // namespace kmath

#ifdef MPIRAY_KERNELS_KOKKOS
using DeviceSpace = Kokkos::DefaultExecutionSpace;
using HostSpace = Kokkos::DefaultHostExecutionSpace;
using DeviceMemory = DeviceSpace::memory_space;
/// True when the device can read host memory directly (Serial, OpenMP): then kernels work on
/// the caller's arrays in place, with no copies.
inline constexpr bool kDeviceIsHost =
    Kokkos::SpaceAccessibility<DeviceSpace, Kokkos::HostSpace>::accessible;

/// @brief f(i) for i in [0, n) on the device.
template <class F>
void DeviceFor(const char* name, int64_t n, const F& f) {
  EnsureInitialized();
  Kokkos::parallel_for(name, Kokkos::RangePolicy<DeviceSpace, Kokkos::IndexType<int64_t>>(0, n), f);
}
/// @brief f(i) for i in [0, n) on the host execution space.
template <class F>
void HostFor(const char* name, int64_t n, const F& f) {
  EnsureInitialized();
  Kokkos::parallel_for(name, Kokkos::RangePolicy<HostSpace, Kokkos::IndexType<int64_t>>(0, n), f);
}
inline void DeviceFence() { Kokkos::fence(); }

/// @brief A 1-D array in device memory (a Kokkos View; a std::vector without Kokkos).
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const std::string& label, size_t n) { Resize(label, n); }
  void Resize(const std::string& label, size_t n) {
    EnsureInitialized();
    view_ = Kokkos::View<T*, DeviceMemory>(label, n);
  }
  T* data() const { return view_.data(); }
  size_t size() const { return view_.extent(0); }
  /// @brief Copy n elements from host memory into this array (one transfer).
  void FromHost(const T* src, size_t n) {
    Kokkos::View<const T*, Kokkos::HostSpace, Kokkos::MemoryUnmanaged> h(src, n);
    Kokkos::deep_copy(Kokkos::subview(view_, std::make_pair(size_t{0}, n)), h);
  }
  /// @brief Copy n elements of this array into host memory (one transfer).
  void ToHost(T* dst, size_t n) const {
    Kokkos::View<T*, Kokkos::HostSpace, Kokkos::MemoryUnmanaged> h(dst, n);
    Kokkos::deep_copy(h, Kokkos::subview(view_, std::make_pair(size_t{0}, n)));
  }

 private:
  Kokkos::View<T*, DeviceMemory> view_;
};
#else
inline constexpr bool kDeviceIsHost = true;
template <class F>
void DeviceFor(const char*, int64_t n, const F& f) {
  for (int64_t i = 0; i < n; ++i) f(i);
}
template <class F>
void HostFor(const char*, int64_t n, const F& f) {
  for (int64_t i = 0; i < n; ++i) f(i);
}
inline void DeviceFence() {}

template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const std::string& label, size_t n) { Resize(label, n); }
  void Resize(const std::string&, size_t n) { v_.assign(n, T{}); }
  T* data() const { return const_cast<T*>(v_.data()); }
  size_t size() const { return v_.size(); }
  void FromHost(const T* src, size_t n) { std::memcpy(v_.data(), src, n * sizeof(T)); }
  void ToHost(T* dst, size_t n) const { std::memcpy(dst, v_.data(), n * sizeof(T)); }

 private:
  std::vector<T> v_;
};
#endif

/// @brief Host input as the device sees it: the caller's array itself when the device reads
/// host memory, else one copy into device memory. Null stays null.
template <class T>
class DeviceIn {
 public:
  DeviceIn(const T* host, size_t n) : ptr_(host) {
    if (!kDeviceIsHost && host != nullptr && n > 0) {
      copy_.Resize("mpiray::kernels::in", n);
      copy_.FromHost(host, n);
      ptr_ = copy_.data();
    }
  }
  const T* data() const { return ptr_; }

 private:
  const T* ptr_;
  DeviceArray<T> copy_;
};

/// @brief Host output as the device writes it: the caller's array itself when the device
/// reads host memory, else a device buffer copied back by Finish() (one transfer).
template <class T>
class DeviceOut {
 public:
  DeviceOut(T* host, size_t n) : host_(host), n_(n), ptr_(host) {
    if (!kDeviceIsHost && host != nullptr && n > 0) {
      buf_.Resize("mpiray::kernels::out", n);
      ptr_ = buf_.data();
    }
  }
  T* data() const { return ptr_; }
  /// @brief Start the device buffer from the host array's contents (for partial writes).
  void FromHostInit(const T* host) {
    if (!kDeviceIsHost && host != nullptr && n_ > 0) buf_.FromHost(host, n_);
  }
  void Finish() {
    if (!kDeviceIsHost && host_ != nullptr && n_ > 0) buf_.ToHost(host_, n_);
  }

 private:
  T* host_;
  size_t n_;
  T* ptr_;
  DeviceArray<T> buf_;
};

}  // namespace mpiray::kernels::impl
