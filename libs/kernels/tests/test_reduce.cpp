// ReduceInto: every op x dtype against a reference written independently (plain scalar code,
// 128-bit integers for wrap-around, GCC's _Float16 for float16, exact search for bfloat16), on
// sizes below and above the kernel threshold, with NaN, infinities, zeros of both signs and
// integer overflow in the data.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "mpiray/core/errors.h"
#include "mpiray/kernels/half.h"
#include "mpiray/kernels/reduce.h"
#include "mpiray/kernels/runtime.h"

using namespace mpiray::kernels;

namespace {

template <class T>
T RefFloat(ReduceOp op, T a, T b) {
  switch (op) {
    case ReduceOp::kSum: return a + b;
    case ReduceOp::kProduct: return a * b;
    case ReduceOp::kMin:
      if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
      return b < a ? b : a;
    case ReduceOp::kMax:
      if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<T>::quiet_NaN();
      return b > a ? b : a;
  }
  return 0;
}

template <class T>
T RefInt(ReduceOp op, T a, T b) {
  const __int128 x = a, y = b;
  __int128 r = 0;
  switch (op) {
    case ReduceOp::kSum: r = x + y; break;
    case ReduceOp::kProduct: r = x * y; break;
    case ReduceOp::kMin: r = x < y ? x : y; break;
    case ReduceOp::kMax: r = x > y ? x : y; break;
  }
  // Wrap to the width of T (two's complement), as numpy does.
  using U = std::make_unsigned_t<T>;
  const U bits = static_cast<U>(static_cast<unsigned __int128>(r));
  T out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

uint16_t RefHalf(ReduceOp op, uint16_t a, uint16_t b) {
  _Float16 ha, hb;
  std::memcpy(&ha, &a, 2);
  std::memcpy(&hb, &b, 2);
  const _Float16 r = static_cast<_Float16>(RefFloat<float>(op, static_cast<float>(ha), static_cast<float>(hb)));
  uint16_t out;
  std::memcpy(&out, &r, 2);
  return out;
}

uint16_t RefBf16Round(float f) {
  if (std::isnan(f)) return 0x7fc0;
  const uint32_t u = FloatBits(f);
  const uint16_t lo = static_cast<uint16_t>(u >> 16);
  if ((u & 0xffffu) == 0) return lo;
  const uint16_t hi = static_cast<uint16_t>(lo + 1);
  double b = BFloat16ToFloat(hi);
  if (std::isinf(b)) b = std::copysign(std::ldexp(1.0, 128), static_cast<double>(f));  // IEEE overflow
  const double x = f, da = std::fabs(x - BFloat16ToFloat(lo)), db = std::fabs(b - x);
  if (da != db) return da < db ? lo : hi;
  return (lo & 1) ? hi : lo;
}

uint16_t RefBf16(ReduceOp op, uint16_t a, uint16_t b) {
  return RefBf16Round(RefFloat<float>(op, BFloat16ToFloat(a), BFloat16ToFloat(b)));
}

bool IsNanBits(DType dt, const void* p) {
  switch (dt) {
    case DType::kFloat16: { uint16_t b; std::memcpy(&b, p, 2); return (b & 0x7fff) > 0x7c00; }
    case DType::kBFloat16: { uint16_t b; std::memcpy(&b, p, 2); return (b & 0x7fff) > 0x7f80; }
    case DType::kFloat32: { float f; std::memcpy(&f, p, 4); return std::isnan(f); }
    case DType::kFloat64: { double d; std::memcpy(&d, p, 8); return std::isnan(d); }
    default: return false;
  }
}

// Random test data of `dtype` with special values mixed in.
std::vector<uint8_t> RandomData(DType dt, size_t n, std::mt19937_64& rng) {
  std::vector<uint8_t> out(n * DTypeSize(dt));
  std::uniform_real_distribution<double> u(-4.0, 4.0);
  std::uniform_int_distribution<int> pick(0, 99);
  std::uniform_int_distribution<uint64_t> any;
  for (size_t i = 0; i < n; ++i) {
    const int p = pick(rng);
    double v = u(rng);
    if (p == 0) v = std::numeric_limits<double>::quiet_NaN();
    if (p == 1) v = std::numeric_limits<double>::infinity();
    if (p == 2) v = -0.0;
    if (p == 3) v = 0.0;
    if (p == 4) v = 1e30;  // overflows 16-bit floats
    if (p == 5) v = 1e-7;  // float16 subnormal
    uint8_t* dst = out.data() + i * DTypeSize(dt);
    switch (dt) {
      case DType::kFloat16: { uint16_t b = FloatToFloat16(static_cast<float>(v)); std::memcpy(dst, &b, 2); break; }
      case DType::kBFloat16: { uint16_t b = FloatToBFloat16(static_cast<float>(v)); std::memcpy(dst, &b, 2); break; }
      case DType::kFloat32: { float f = static_cast<float>(v); std::memcpy(dst, &f, 4); break; }
      case DType::kFloat64: std::memcpy(dst, &v, 8); break;
      case DType::kInt32: { int32_t x = static_cast<int32_t>(any(rng)); if (p < 50) x %= 1000; std::memcpy(dst, &x, 4); break; }
      case DType::kInt64: { int64_t x = static_cast<int64_t>(any(rng)); if (p < 50) x %= 100000; std::memcpy(dst, &x, 8); break; }
      case DType::kUInt8: { uint8_t x = static_cast<uint8_t>(any(rng)); *dst = x; break; }
    }
  }
  return out;
}

void Reference(ReduceOp op, DType dt, uint8_t* dst, const uint8_t* src, size_t n) {
  const size_t s = DTypeSize(dt);
  for (size_t i = 0; i < n; ++i) {
    uint8_t* d = dst + i * s;
    const uint8_t* x = src + i * s;
    switch (dt) {
      case DType::kFloat16: { uint16_t a, b; std::memcpy(&a, d, 2); std::memcpy(&b, x, 2); a = RefHalf(op, a, b); std::memcpy(d, &a, 2); break; }
      case DType::kBFloat16: { uint16_t a, b; std::memcpy(&a, d, 2); std::memcpy(&b, x, 2); a = RefBf16(op, a, b); std::memcpy(d, &a, 2); break; }
      case DType::kFloat32: { float a, b; std::memcpy(&a, d, 4); std::memcpy(&b, x, 4); a = RefFloat(op, a, b); std::memcpy(d, &a, 4); break; }
      case DType::kFloat64: { double a, b; std::memcpy(&a, d, 8); std::memcpy(&b, x, 8); a = RefFloat(op, a, b); std::memcpy(d, &a, 8); break; }
      case DType::kInt32: { int32_t a, b; std::memcpy(&a, d, 4); std::memcpy(&b, x, 4); a = RefInt(op, a, b); std::memcpy(d, &a, 4); break; }
      case DType::kInt64: { int64_t a, b; std::memcpy(&a, d, 8); std::memcpy(&b, x, 8); a = RefInt(op, a, b); std::memcpy(d, &a, 8); break; }
      case DType::kUInt8: { uint8_t a = *d; a = static_cast<uint8_t>(RefInt<int32_t>(op, a, *x)); *d = a; break; }
    }
  }
}

constexpr DType kDTypes[] = {DType::kFloat16, DType::kBFloat16, DType::kFloat32, DType::kFloat64,
                             DType::kInt32,   DType::kInt64,    DType::kUInt8};
constexpr ReduceOp kOps[] = {ReduceOp::kSum, ReduceOp::kProduct, ReduceOp::kMin, ReduceOp::kMax};

}  // namespace

TEST_CASE("ReduceInto matches the reference for every op and dtype", "[kernels][reduce]") {
  std::mt19937_64 rng(42);
  // Below and above the kernel threshold (the plain loop and the Kokkos kernel), odd sizes.
  for (size_t n : {size_t{1}, size_t{7}, size_t{1000}, size_t{(1 << 15) + 3}, size_t{100000}}) {
    for (DType dt : kDTypes) {
      for (ReduceOp op : kOps) {
        INFO(ReduceOpName(op) << " " << DTypeName(dt) << " n=" << n);
        auto dst = RandomData(dt, n, rng);
        const auto src = RandomData(dt, n, rng);
        auto ref = dst;
        Reference(op, dt, ref.data(), src.data(), n);
        ReduceInto(op, dt, dst.data(), src.data(), n);
        const size_t s = DTypeSize(dt);
        size_t mismatches = 0;
        for (size_t i = 0; i < n; ++i) {
          const bool nan_ref = IsNanBits(dt, ref.data() + i * s);
          const bool nan_got = IsNanBits(dt, dst.data() + i * s);
          if (nan_ref || nan_got) {
            mismatches += nan_ref != nan_got;
          } else {
            mismatches += std::memcmp(ref.data() + i * s, dst.data() + i * s, s) != 0;
          }
        }
        REQUIRE(mismatches == 0);
      }
    }
  }
}

TEST_CASE("ReduceInto in place (dst == src) and over several sources", "[kernels][reduce]") {
  std::vector<float> a(50000), b(50000), c(50000);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 97) - 48.0f;
    b[i] = static_cast<float>(i % 13);
    c[i] = -2.0f * static_cast<float>(i % 5);
  }
  auto acc = a;
  ReduceInto(ReduceOp::kSum, DType::kFloat32, acc.data(), b.data(), acc.size());
  ReduceInto(ReduceOp::kSum, DType::kFloat32, acc.data(), c.data(), acc.size());
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(acc[i] == a[i] + b[i] + c[i]);
  ReduceInto(ReduceOp::kProduct, DType::kFloat32, acc.data(), acc.data(), acc.size());
  for (size_t i = 0; i < a.size(); ++i) REQUIRE(acc[i] == (a[i] + b[i] + c[i]) * (a[i] + b[i] + c[i]));
}

TEST_CASE("ReduceInto rejects bad input with a clear error", "[kernels][reduce]") {
  float x = 1.0f;
  REQUIRE_THROWS_AS(ReduceInto(ReduceOp::kSum, DType::kFloat32, nullptr, &x, 1),
                    mpiray::InvalidArgumentError);
  REQUIRE_THROWS_WITH(ReduceInto(static_cast<ReduceOp>(9), DType::kFloat32, &x, &x, 1),
                      Catch::Contains("unknown op"));
  REQUIRE_THROWS_WITH(ReduceInto(ReduceOp::kSum, static_cast<DType>(42), &x, &x, 1),
                      Catch::Contains("unknown dtype"));
  ReduceInto(ReduceOp::kSum, DType::kFloat32, nullptr, nullptr, 0);  // nothing to do: fine
  REQUIRE(DTypeSize(DType::kBFloat16) == 2);
  REQUIRE(DTypeSize(DType::kInt64) == 8);
  REQUIRE(std::string(DTypeName(DType::kUInt8)) == "uint8");
}

TEST_CASE("the kernels report their backend", "[kernels][runtime]") {
  const std::string b = Backend();
  if (UsesKokkos()) {
    REQUIRE(b.rfind("Kokkos ", 0) == 0);
  } else {
    REQUIRE(b.find("no Kokkos") != std::string::npos);
  }
}
