// ReduceInto: one Kokkos kernel per (op, dtype) on the host execution space, or a plain loop
// (small arrays, and builds without Kokkos).
#include "mpiray/kernels/reduce.h"

#include <string>

#include "impl/parallel.h"
#include "impl/reduce_ops.h"
#include "mpiray/core/errors.h"

namespace mpiray::kernels {

namespace {

// Below this many elements a plain loop beats launching a kernel (an OpenMP fork/join costs
// microseconds; the collectives' small-message latency depends on it).
constexpr size_t kKernelThreshold = 1 << 15;

template <class F>
void Run(size_t n, const F& f) {
  if (n < kKernelThreshold) {
    for (size_t i = 0; i < n; ++i) f(static_cast<int64_t>(i));
  } else {
    impl::HostFor("mpiray::kernels::ReduceInto", static_cast<int64_t>(n), f);
  }
}

template <class Op>
void Dispatch(DType dtype, void* dst, const void* src, size_t n) {
  switch (dtype) {
    case DType::kFloat16:
      Run(n, impl::Elementwise16<Op, false>{static_cast<uint16_t*>(dst),
                                            static_cast<const uint16_t*>(src)});
      return;
    case DType::kBFloat16:
      Run(n, impl::Elementwise16<Op, true>{static_cast<uint16_t*>(dst),
                                           static_cast<const uint16_t*>(src)});
      return;
    case DType::kFloat32:
      Run(n, impl::Elementwise<Op, float>{static_cast<float*>(dst), static_cast<const float*>(src)});
      return;
    case DType::kFloat64:
      Run(n, impl::Elementwise<Op, double>{static_cast<double*>(dst), static_cast<const double*>(src)});
      return;
    case DType::kInt32:
      Run(n, impl::Elementwise<Op, int32_t>{static_cast<int32_t*>(dst), static_cast<const int32_t*>(src)});
      return;
    case DType::kInt64:
      Run(n, impl::Elementwise<Op, int64_t>{static_cast<int64_t*>(dst), static_cast<const int64_t*>(src)});
      return;
    case DType::kUInt8:
      Run(n, impl::Elementwise<Op, uint8_t>{static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src)});
      return;
  }
  throw InvalidArgumentError("ReduceInto: unknown dtype " + std::to_string(static_cast<int>(dtype)));
}

}  // namespace

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kUInt8:
      return 1;
  }
  throw InvalidArgumentError("unknown dtype " + std::to_string(static_cast<int>(dtype)));
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat32: return "float32";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
  }
  return "unknown";
}

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kProduct: return "product";
    case ReduceOp::kMin: return "min";
    case ReduceOp::kMax: return "max";
  }
  return "unknown";
}

void ReduceInto(ReduceOp op, DType dtype, void* dst, const void* src, size_t n) {
  if (n == 0) return;
  if (dst == nullptr || src == nullptr) {
    throw InvalidArgumentError("ReduceInto: null buffer for " + std::to_string(n) + " elements");
  }
  switch (op) {
    case ReduceOp::kSum: return Dispatch<impl::Sum>(dtype, dst, src, n);
    case ReduceOp::kProduct: return Dispatch<impl::Product>(dtype, dst, src, n);
    case ReduceOp::kMin: return Dispatch<impl::Min>(dtype, dst, src, n);
    case ReduceOp::kMax: return Dispatch<impl::Max>(dtype, dst, src, n);
  }
  throw InvalidArgumentError("ReduceInto: unknown op " + std::to_string(static_cast<int>(op)));
}

}  // namespace mpiray::kernels
