// The scalar operations of ReduceInto, one struct per (op, storage type); used by the Kokkos
// kernel and the plain loop alike.
#pragma once

#include <cstdint>
#include <type_traits>

#include "impl/parallel.h"
#include "mpiray/kernels/half.h"

namespace mpiray::kernels::impl {

struct Sum {
  template <class T>
  MPIRAY_KFN static T Apply(T a, T b) { return a + b; }
};
struct Product {
  template <class T>
  MPIRAY_KFN static T Apply(T a, T b) { return a * b; }
};
// NaN-propagating, as numpy.minimum/maximum (a != a is the NaN test; false for integers).
struct Min {
  template <class T>
  MPIRAY_KFN static T Apply(T a, T b) { return (a != a) ? a : (b != b) ? b : (b < a ? b : a); }
};
struct Max {
  template <class T>
  MPIRAY_KFN static T Apply(T a, T b) { return (a != a) ? a : (b != b) ? b : (b > a ? b : a); }
};

// Floats are computed as themselves; integers in their unsigned twin for sum and product
// (wrap-around without undefined behaviour); 16-bit floats in float32 (Elementwise16).
template <class Op, class T>
struct Elementwise {
  T* dst;
  const T* src;
  MPIRAY_KFN void operator()(int64_t i) const {
    if constexpr (std::is_integral_v<T> && (std::is_same_v<Op, Sum> || std::is_same_v<Op, Product>)) {
      using U = std::make_unsigned_t<T>;
      // uint8 * uint8 promotes to int; do it in unsigned int and truncate.
      using W = std::conditional_t<(sizeof(U) < sizeof(unsigned)), unsigned, U>;
      dst[i] = static_cast<T>(static_cast<U>(
          Op::Apply(static_cast<W>(static_cast<U>(dst[i])), static_cast<W>(static_cast<U>(src[i])))));
    } else {
      dst[i] = Op::Apply(dst[i], src[i]);
    }
  }
};

template <class Op, bool kBF16>
struct Elementwise16 {
  uint16_t* dst;
  const uint16_t* src;
  MPIRAY_KFN void operator()(int64_t i) const {
    if constexpr (kBF16) {
      dst[i] = FloatToBFloat16(Op::Apply(BFloat16ToFloat(dst[i]), BFloat16ToFloat(src[i])));
    } else {
      dst[i] = FloatToFloat16(Op::Apply(Float16ToFloat(dst[i]), Float16ToFloat(src[i])));
    }
  }
};

}  // namespace mpiray::kernels::impl
