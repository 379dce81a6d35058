// sin and cos together, in straight-line code that compilers vectorise (glibc's sin/cos are
// calls that stop a loop from being vectorised, and cost ~20 ns each). Accurate to ~1 ulp
// for |x| < kFastSinCosLimit (Cody-Waite reduction by pi/2 in three exact parts, then Taylor
// polynomials on [-pi/4, pi/4]); callers use std::sin/cos beyond. On GPUs the device's own
// sin/cos are used instead.
#pragma once

#include "impl/parallel.h"

namespace mpiray::kernels::impl {

inline constexpr double kFastSinCosLimit = 1e5;

MPIRAY_KFN void FastSinCos(double x, double& s, double& c) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  s = kmath::sin(x);
  c = kmath::cos(x);
#else
  // n = nearest integer to x / (pi/2), by the 1.5 * 2^52 trick (round to nearest even).
  constexpr double kTwoOverPi = 0.63661977236758134308;
  constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  const double n = (x * kTwoOverPi + kRound) - kRound;
  // pi/2 split into pieces of 33 significant bits, so that n * piece is exact for |n| < 2^20.
  constexpr double kP1 = 1.57079632673412561417e+00;
  constexpr double kP2 = 6.07710050630396597660e-11;
  constexpr double kP3 = 2.02226624871116645580e-21;
  constexpr double kP4 = 8.47842766036889956997e-32;
  const double y = (((x - n * kP1) - n * kP2) - n * kP3) - n * kP4;
  const double z = y * y;
  // Taylor series of sin and cos to x^15 / x^16 (error below 2^-60 on [-pi/4, pi/4]).
  const double ps =
      -1.0 / 6 +
      z * (1.0 / 120 +
           z * (-1.0 / 5040 +
                z * (1.0 / 362880 +
                     z * (-1.0 / 39916800 + z * (1.0 / 6227020800.0 + z * (-1.0 / 1307674368000.0))))));
  const double pc =
      1.0 / 24 +
      z * (-1.0 / 720 +
           z * (1.0 / 40320 +
                z * (-1.0 / 3628800 +
                     z * (1.0 / 479001600.0 +
                          z * (-1.0 / 87178291200.0 + z * (1.0 / 20922789888000.0))))));
  const double sy = y + y * z * ps;
  const double cy = (1.0 - 0.5 * z) + z * z * pc;
  // Quadrant q = n mod 4: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s). Computed in double
  // (floor(n / 4) = round(n / 4 - 3/8) for integer n), so that only double compares and selects
  // appear: those vectorise on every x86-64, integer-to-double masks do not.
  const double q = n - 4.0 * (((n * 0.25 - 0.375) + kRound) - kRound);
  const bool odd = (q == 1.0) | (q == 3.0);
  const double a = odd ? cy : sy;
  const double b = odd ? sy : cy;
  s = (q >= 2.0) ? -a : a;
  c = ((q == 1.0) | (q == 2.0)) ? -b : b;
#endif
}

}  // namespace mpiray::kernels::impl
