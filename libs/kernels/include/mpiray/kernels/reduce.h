// Element-wise reductions for the collectives: dst[i] = op(dst[i], src[i]) on host memory.
// This header does not include Kokkos; the kernels are in src/reduce.cpp (Kokkos when the
// build has it, a plain C++ loop otherwise), so any library can link them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mpiray::kernels {

/// @brief The reduction applied element by element (Ray's ReduceOp: SUM, PRODUCT, MIN, MAX).
enum class ReduceOp : uint8_t { kSum, kProduct, kMin, kMax };

/// @brief Element types the reductions handle. kFloat16 is IEEE binary16, kBFloat16 is
/// bfloat16 (the upper half of a float32); both are stored as 16-bit patterns.
enum class DType : uint8_t { kFloat16, kBFloat16, kFloat32, kFloat64, kInt32, kInt64, kUInt8 };

/// @brief Size in bytes of one element of `dtype`.
size_t DTypeSize(DType dtype);

/// @brief The numpy-style name of `dtype` ("float16", "bfloat16", "float32", ...).
const char* DTypeName(DType dtype);

/// @brief The name of `op` ("sum", "product", "min", "max").
const char* ReduceOpName(ReduceOp op);

/// @brief dst[i] = op(dst[i], src[i]) for i in [0, n), elementwise, on host memory.
///
/// A Kokkos kernel on the default host execution space (Serial, or OpenMP threads in a Spack
/// build with +openmp); small arrays take a plain loop to keep latency low. float16 and
/// bfloat16 are computed in float32 and rounded to nearest even. Integers wrap around on
/// overflow (as numpy). MIN and MAX propagate NaN (as numpy.minimum/maximum). `dst` and `src`
/// may be the same array; otherwise they must not overlap.
/// @throws mpiray::InvalidArgumentError for an op or dtype outside the enums, or null
/// pointers with n > 0.
void ReduceInto(ReduceOp op, DType dtype, void* dst, const void* src, size_t n);

}  // namespace mpiray::kernels
