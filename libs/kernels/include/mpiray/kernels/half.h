// float16 (IEEE binary16) and bfloat16 conversions, round to nearest even, usable in kernels on
// host and device. Header-only and free of Kokkos.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define MPIRAY_KERNELS_HD __host__ __device__
#else
#define MPIRAY_KERNELS_HD
#endif

namespace mpiray::kernels {

/// @brief The bits of a float (memcpy: no aliasing problems, compiles to a move).
MPIRAY_KERNELS_HD inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
/// @brief The float with these bits.
MPIRAY_KERNELS_HD inline float BitsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

/// @brief bfloat16 bits -> float (exact).
MPIRAY_KERNELS_HD inline float BFloat16ToFloat(uint16_t h) {
  return BitsFloat(static_cast<uint32_t>(h) << 16);
}

/// @brief float -> bfloat16 bits, rounded to nearest even; NaN stays a (quiet) NaN.
MPIRAY_KERNELS_HD inline uint16_t FloatToBFloat16(float f) {
  uint32_t u = FloatBits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep the sign, force a quiet payload
    return static_cast<uint16_t>((u >> 16) | 0x0040u);
  }
  u += 0x7fffu + ((u >> 16) & 1u);  // round half to even (overflow carries into inf: right)
  return static_cast<uint16_t>(u >> 16);
}

/// @brief float16 bits -> float (exact, subnormals included).
MPIRAY_KERNELS_HD inline float Float16ToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return BitsFloat(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return BitsFloat(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return BitsFloat(sign);  // +-0
  // Subnormal: mant * 2^-24, normalised for float.
  int e = 113;  // 127 - 14
  while ((mant & 0x400u) == 0) {
    mant <<= 1;
    --e;
  }
  return BitsFloat(sign | (static_cast<uint32_t>(e) << 23) | ((mant & 0x3ffu) << 13));
}

/// @brief float -> float16 bits, rounded to nearest even (overflow to inf, subnormals and
/// underflow to zero as IEEE says; NaN stays a quiet NaN).
MPIRAY_KERNELS_HD inline uint16_t FloatToFloat16(float f) {
  const uint32_t u = FloatBits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520: inf
  if (a >= 0x38800000u) {  // normal float16 (>= 2^-14)
    const uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // round half to even at bit 13
    return static_cast<uint16_t>(sign | ((r - 0x38000000u) >> 13));
  }
  if (a < 0x33000000u) return sign;  // < 2^-25: rounds to zero (2^-25 itself is a tie -> 0)
  // Subnormal float16: value = m * 2^-24 with m = round(a_value * 2^24).
  const uint32_t exp = a >> 23;                       // 102..112
  const uint32_t mant = (a & 0x7fffffu) | 0x800000u;  // 24-bit significand
  const uint32_t shift = 126u - exp;                  // 14..24: bits to drop
  const uint32_t q = mant >> shift;
  const uint32_t rem = mant & ((1u << shift) - 1u);
  const uint32_t half = 1u << (shift - 1u);
  const uint32_t m = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
  return static_cast<uint16_t>(sign | m);  // m == 0x400 carries into the smallest normal
}

}  // namespace mpiray::kernels
