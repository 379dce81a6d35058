// float16/bfloat16 conversions against independent references: GCC's _Float16 (libgcc's
// rounding) for float16, and an exact nearest-value search for bfloat16.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "mpiray/kernels/half.h"

using namespace mpiray::kernels;

namespace {

uint16_t RefFloat16Bits(float f) {
  _Float16 h = static_cast<_Float16>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

// Nearest bfloat16 by exact comparison in double, ties to the even pattern.
uint16_t RefBFloat16Bits(float f) {
  if (std::isnan(f)) return 0x7fc0;
  uint32_t u = FloatBits(f);
  uint16_t lo = static_cast<uint16_t>(u >> 16);  // truncation: toward zero
  if ((u & 0xffffu) == 0) return lo;
  uint16_t hi = static_cast<uint16_t>(lo + 1);   // next one away from zero (may be inf)
  double x = f, a = BFloat16ToFloat(lo), b = BFloat16ToFloat(hi);
  if (std::isinf(b)) b = std::copysign(std::ldexp(1.0, 128), x);  // IEEE: overflow as if 2^128
  double da = std::fabs(x - a), db = std::fabs(b - x);
  if (da < db) return lo;
  if (db < da) return hi;
  return (lo & 1) ? hi : lo;
}

}  // namespace

TEST_CASE("float16 -> float is exact for every bit pattern", "[kernels][half]") {
  for (uint32_t b = 0; b < 65536; ++b) {
    _Float16 h;
    const uint16_t bits = static_cast<uint16_t>(b);
    std::memcpy(&h, &bits, 2);
    const float ref = static_cast<float>(h);
    const float got = Float16ToFloat(bits);
    if (std::isnan(ref)) {
      REQUIRE(std::isnan(got));
    } else {
      INFO("bits " << b);
      REQUIRE(FloatBits(got) == FloatBits(ref));
    }
  }
}

TEST_CASE("float -> float16 rounds to nearest even", "[kernels][half]") {
  // Every float16 value, the midpoints between neighbours (ties) and their neighbours.
  for (uint32_t b = 0; b < 0x7c00; ++b) {
    const float v = Float16ToFloat(static_cast<uint16_t>(b));
    const float next = Float16ToFloat(static_cast<uint16_t>(b + 1));
    const float mid = 0.5f * (v + next);  // exact in float
    for (float s : {1.0f, -1.0f}) {
      for (float x : {v, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f)}) {
        INFO("x = " << s * x);
        REQUIRE(FloatToFloat16(s * x) == RefFloat16Bits(s * x));
      }
    }
  }
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    const float x = BitsFloat(bits(rng));
    if (std::isnan(x)) {
      REQUIRE((FloatToFloat16(x) & 0x7e00) == 0x7e00);  // a quiet NaN
      continue;
    }
    INFO("x = " << x);
    REQUIRE(FloatToFloat16(x) == RefFloat16Bits(x));
  }
  REQUIRE(FloatToFloat16(std::numeric_limits<float>::infinity()) == 0x7c00);
  REQUIRE(FloatToFloat16(-std::numeric_limits<float>::infinity()) == 0xfc00);
  REQUIRE(FloatToFloat16(65520.0f) == 0x7c00);  // the tie above the largest finite goes to inf
  REQUIRE(FloatToFloat16(65519.0f) == 0x7bff);
}

TEST_CASE("float <-> bfloat16 rounds to nearest even", "[kernels][half]") {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint16_t bits = static_cast<uint16_t>(b);
    const float v = BFloat16ToFloat(bits);
    REQUIRE(FloatBits(v) == (b << 16));
    if (!std::isnan(v)) REQUIRE(FloatToBFloat16(v) == bits);
  }
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = bits(rng);
    if (i % 4 == 0) u = (u & 0xffff0000u) | 0x8000u;  // exact ties
    const float x = BitsFloat(u);
    if (std::isnan(x)) {
      REQUIRE(std::isnan(BFloat16ToFloat(FloatToBFloat16(x))));
      continue;
    }
    INFO("x = " << x);
    REQUIRE(FloatToBFloat16(x) == RefBFloat16Bits(x));
  }
}
