// The five classic-control environments as device functions: the equations, constants and
// operation order of Gymnasium's classic_control envs (1.x), in float64 like Gymnasium (with
// its float32 steps where numpy computes in float32), so that one step from the same state
// gives the same result to float rounding.
#pragma once

#include <cstdint>

#include "impl/fast_math.h"
#include "impl/parallel.h"

namespace mpiray::kernels::impl {

inline constexpr double kPi = 3.14159265358979323846;

// Random numbers: each env has its own SplitMix64 stream (state = key + counter * golden
// gamma), keyed by a hash of its seed, so draws do not depend on the backend, the thread count
// or the order in which envs run, and streams of different seeds do not overlap in practice.
MPIRAY_KFN uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
inline constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;
/// @brief The stream key of a seed.
MPIRAY_KFN uint64_t SeedKey(uint64_t seed) { return Mix64(Mix64(seed ^ 0x5851f42d4c957f2dull) + kGolden); }
struct Rng {
  uint64_t key;
  uint64_t counter;
  /// Uniform in [low, high), numpy's formula low + (high - low) * random().
  MPIRAY_KFN double Uniform(double low, double high) {
    const uint64_t r = Mix64(key + (++counter) * kGolden);
    return low + (high - low) * (static_cast<double>(r >> 11) * 0x1.0p-53);
  }
};

/// Reset bounds with the env's defaults filled in.
struct Bounds {
  double low, high;
};

// numpy's float64 remainder (sign of the divisor), as Pendulum's angle_normalize uses it.
MPIRAY_KFN double PyMod(double a, double b) {
  double mod = kmath::fmod(a, b);
  if (mod != 0.0) {
    if ((b < 0) != (mod < 0)) mod += b;
  } else {
    mod = (b < 0) ? -0.0 : 0.0;
  }
  return mod;
}

// ---------------------------------------------------------------- CartPole-v1 (cartpole.py)
struct CartPole {
  static constexpr int kStateDim = 4, kObsDim = 4;
  static constexpr bool kDiscrete = true;
  using Action = int64_t;
  // Step<true> uses FastSinCos (vectorisable); blocks with |theta| >= kFastSinCosLimit use
  // std::sin/cos.
  static constexpr bool kHasFast = true;
  bool sutton_barto_reward = false;

  MPIRAY_KFN static bool FastOk(const double* st, int64_t n, int64_t i) {
    return (st[2 * n + i] < kFastSinCosLimit) & (st[2 * n + i] > -kFastSinCosLimit);
  }

  // One step on scalars (references, so that a vectorised loop keeps them in registers).
  template <bool kFast>
  MPIRAY_KFN void Dynamics(double& x, double& x_dot, double& theta, double& theta_dot, Action action,
                           double& reward, bool& terminated) const {
    constexpr double gravity = 9.8, masscart = 1.0, masspole = 0.1;
    constexpr double total_mass = masspole + masscart, length = 0.5;
    constexpr double polemass_length = masspole * length, force_mag = 10.0, tau = 0.02;
    constexpr double theta_threshold = 12 * 2 * kPi / 360, x_threshold = 2.4;
    // (int32, then double: conversions and compares that vectorise on every x86-64)
    const double a = static_cast<double>(static_cast<int32_t>(action));
    const double force = a == 1.0 ? force_mag : -force_mag;
    double costheta, sintheta;
    if constexpr (kFast) {
      FastSinCos(theta, sintheta, costheta);
    } else {
      costheta = kmath::cos(theta);
      sintheta = kmath::sin(theta);
    }
    double temp, thetaacc, xacc;
    if constexpr (kFast) {
      // One division instead of four (the others by the constant total mass become products
      // with its reciprocal): a few ulp from Gymnasium's order, and far cheaper in SIMD.
      constexpr double inv_total_mass = 1.0 / total_mass;
      temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) * inv_total_mass;
      thetaacc = (gravity * sintheta - costheta * temp) /
                 (length * (4.0 / 3.0 - (masspole * inv_total_mass) * (costheta * costheta)));
      xacc = temp - (polemass_length * inv_total_mass) * thetaacc * costheta;
    } else {  // Gymnasium's operations in Gymnasium's order
      temp = (force + polemass_length * (theta_dot * theta_dot) * sintheta) / total_mass;
      thetaacc = (gravity * sintheta - costheta * temp) /
                 (length * (4.0 / 3.0 - masspole * (costheta * costheta) / total_mass));
      xacc = temp - polemass_length * thetaacc * costheta / total_mass;
    }
    x = x + tau * x_dot;  // Euler, as kinematics_integrator == "euler"
    x_dot = x_dot + tau * xacc;
    theta = theta + tau * theta_dot;
    theta_dot = theta_dot + tau * thetaacc;
    terminated = (x < -x_threshold) | (x > x_threshold) | (theta < -theta_threshold) |
                 (theta > theta_threshold);
    // 1 per step; with sutton_barto_reward 0, and -1 on the terminating step (arithmetic
    // rather than a select on the flag, so that the loop vectorises).
    const double base = sutton_barto_reward ? 0.0 : 1.0;
    const double penalty = sutton_barto_reward ? -1.0 : 0.0;
    reward = (terminated ? 1.0 : 0.0) * penalty + base;
  }

  template <bool kFast = false>
  MPIRAY_KFN void Step(double* s, Action action, double& reward, bool& terminated) const {
    Dynamics<kFast>(s[0], s[1], s[2], s[3], action, reward, terminated);
  }
  /// Step env i of a structure-of-arrays state [4][n], writing its observation to `o`.
  template <bool kFast>
  MPIRAY_KFN void StepSoA(double* st, int64_t n, int64_t i, Action action, double& reward,
                          bool& terminated, float* o) const {
    double x = st[i], x_dot = st[n + i], theta = st[2 * n + i], theta_dot = st[3 * n + i];
    Dynamics<kFast>(x, x_dot, theta, theta_dot, action, reward, terminated);
    st[i] = x;
    st[n + i] = x_dot;
    st[2 * n + i] = theta;
    st[3 * n + i] = theta_dot;
    o[0] = static_cast<float>(x);
    o[1] = static_cast<float>(x_dot);
    o[2] = static_cast<float>(theta);
    o[3] = static_cast<float>(theta_dot);
  }
  MPIRAY_KFN static void Observe(const double* s, float* o) {
    o[0] = static_cast<float>(s[0]);
    o[1] = static_cast<float>(s[1]);
    o[2] = static_cast<float>(s[2]);
    o[3] = static_cast<float>(s[3]);
  }
  static Bounds DefaultBounds() { return {-0.05, 0.05}; }
  MPIRAY_KFN static void Reset(double* s, Rng& rng, const Bounds& b, double, double) {
    for (int d = 0; d < 4; ++d) s[d] = rng.Uniform(b.low, b.high);
  }
};

// ---------------------------------------------------------------- Pendulum-v1 (pendulum.py)
struct Pendulum {
  static constexpr int kStateDim = 2, kObsDim = 3;
  static constexpr bool kDiscrete = false;
  static constexpr bool kHasFast = false;
  using Action = float;
  double g = 10.0;

  MPIRAY_KFN static double AngleNormalize(double x) { return PyMod(x + kPi, 2 * kPi) - kPi; }

  MPIRAY_KFN void Step(double* s, Action action, double& reward, bool& terminated) const {
    constexpr double max_speed = 8, dt = 0.05, m = 1.0, l = 1.0;
    const double th = s[0], thdot = s[1];
    // u = np.clip(u, -2, 2)[0] stays float32, and so do the terms numpy computes from it.
    const float u = action < -2.0f ? -2.0f : (action > 2.0f ? 2.0f : action);
    const double an = AngleNormalize(th);
    const float u_cost = 0.001f * (u * u);
    const double costs = an * an + 0.1 * (thdot * thdot) + static_cast<double>(u_cost);
    const float torque_term = static_cast<float>(3.0 / (m * l * l)) * u;
    double newthdot =
        thdot + (3 * g / (2 * l) * kmath::sin(th) + static_cast<double>(torque_term)) * dt;
    newthdot = newthdot < -max_speed ? -max_speed : (newthdot > max_speed ? max_speed : newthdot);
    const double newth = th + newthdot * dt;
    s[0] = newth;
    s[1] = newthdot;
    reward = -costs;
    terminated = false;
  }
  MPIRAY_KFN static void Observe(const double* s, float* o) {
    o[0] = static_cast<float>(kmath::cos(s[0]));
    o[1] = static_cast<float>(kmath::sin(s[0]));
    o[2] = static_cast<float>(s[1]);
  }
  static Bounds DefaultBounds() { return {kPi, 1.0}; }  // x_init, y_init
  MPIRAY_KFN static void Reset(double* s, Rng& rng, const Bounds& b, double, double) {
    s[0] = rng.Uniform(-b.low, b.low);    // theta in [-x_init, x_init)
    s[1] = rng.Uniform(-b.high, b.high);  // theta_dot in [-y_init, y_init)
  }
};

// ---------------------------------------------------------------- MountainCar-v0 (mountain_car.py)
struct MountainCar {
  static constexpr int kStateDim = 2, kObsDim = 2;
  static constexpr bool kDiscrete = true;
  static constexpr bool kHasFast = false;
  using Action = int64_t;
  double goal_velocity = 0.0;

  MPIRAY_KFN void Step(double* s, Action action, double& reward, bool& terminated) const {
    constexpr double min_position = -1.2, max_position = 0.6, max_speed = 0.07;
    constexpr double goal_position = 0.5, force = 0.001, gravity = 0.0025;
    double position = s[0], velocity = s[1];
    velocity += static_cast<double>(action - 1) * force + kmath::cos(3 * position) * (-gravity);
    velocity = velocity < -max_speed ? -max_speed : (velocity > max_speed ? max_speed : velocity);
    position += velocity;
    position = position < min_position ? min_position
                                        : (position > max_position ? max_position : position);
    if (position == min_position && velocity < 0) velocity = 0;
    terminated = position >= goal_position && velocity >= goal_velocity;
    reward = -1.0;
    s[0] = position;
    s[1] = velocity;
  }
  MPIRAY_KFN static void Observe(const double* s, float* o) {
    o[0] = static_cast<float>(s[0]);
    o[1] = static_cast<float>(s[1]);
  }
  static Bounds DefaultBounds() { return {-0.6, -0.4}; }
  MPIRAY_KFN static void Reset(double* s, Rng& rng, const Bounds& b, double, double) {
    s[0] = rng.Uniform(b.low, b.high);
    s[1] = 0.0;
  }
};

// ------------------------------------- MountainCarContinuous-v0 (continuous_mountain_car.py)
// Gymnasium keeps this env's state in float32 (np.array(..., dtype=np.float32) after each
// step): so does this one, computing each step in float64 from the float32 state.
struct MountainCarContinuous {
  static constexpr int kStateDim = 2, kObsDim = 2;
  static constexpr bool kDiscrete = false;
  static constexpr bool kHasFast = false;
  using Action = float;
  double goal_velocity = 0.0;

  MPIRAY_KFN void Step(double* s, Action action, double& reward, bool& terminated) const {
    constexpr double min_position = -1.2, max_position = 0.6, max_speed = 0.07;
    constexpr double power = 0.0015;
    constexpr float goal_position = 0.45f;  // compared with the float32 position
    double position = s[0], velocity = s[1];
    const double a = static_cast<double>(action);
    const double force = a < -1.0 ? -1.0 : (a > 1.0 ? 1.0 : a);
    velocity += force * power - 0.0025 * kmath::cos(3 * position);
    if (velocity > max_speed) velocity = max_speed;
    if (velocity < -max_speed) velocity = -max_speed;
    position += velocity;
    if (position > max_position) position = max_position;
    if (position < min_position) position = min_position;
    if (position == min_position && velocity < 0) velocity = 0;
    const float p32 = static_cast<float>(position), v32 = static_cast<float>(velocity);
    terminated = p32 >= goal_position && v32 >= static_cast<float>(goal_velocity);
    reward = (terminated ? 100.0 : 0.0) - (a * a) * 0.1;  // the unclipped action, as Gymnasium
    s[0] = p32;
    s[1] = v32;
  }
  MPIRAY_KFN static void Observe(const double* s, float* o) {
    o[0] = static_cast<float>(s[0]);
    o[1] = static_cast<float>(s[1]);
  }
  static Bounds DefaultBounds() { return {-0.6, -0.4}; }
  MPIRAY_KFN static void Reset(double* s, Rng& rng, const Bounds& b, double, double) {
    s[0] = rng.Uniform(b.low, b.high);
    s[1] = 0.0;
  }
};

// ---------------------------------------------------------------- Acrobot-v1 (acrobot.py)
struct Acrobot {
  static constexpr int kStateDim = 4, kObsDim = 6;
  static constexpr bool kDiscrete = true;
  static constexpr bool kHasFast = false;
  using Action = int64_t;

  // _dsdt with book_or_nips == "book": derivatives of (theta1, theta2, dtheta1, dtheta2).
  MPIRAY_KFN static void Dsdt(const double* s, double a, double* ds) {
    constexpr double m1 = 1.0, m2 = 1.0, l1 = 1.0, lc1 = 0.5, lc2 = 0.5, I1 = 1.0, I2 = 1.0;
    constexpr double g = 9.8;
    const double theta1 = s[0], theta2 = s[1], dtheta1 = s[2], dtheta2 = s[3];
    const double d1 = m1 * (lc1 * lc1) + m2 * (l1 * l1 + lc2 * lc2 + 2 * l1 * lc2 * kmath::cos(theta2)) +
                      I1 + I2;
    const double d2 = m2 * (lc2 * lc2 + l1 * lc2 * kmath::cos(theta2)) + I2;
    const double phi2 = m2 * lc2 * g * kmath::cos(theta1 + theta2 - kPi / 2.0);
    const double phi1 = -m2 * l1 * lc2 * (dtheta2 * dtheta2) * kmath::sin(theta2) -
                        2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * kmath::sin(theta2) +
                        (m1 * lc1 + m2 * l1) * g * kmath::cos(theta1 - kPi / 2) + phi2;
    const double ddtheta2 =
        (a + d2 / d1 * phi1 - m2 * l1 * lc2 * (dtheta1 * dtheta1) * kmath::sin(theta2) - phi2) /
        (m2 * (lc2 * lc2) + I2 - (d2 * d2) / d1);
    const double ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;
    ds[0] = dtheta1;
    ds[1] = dtheta2;
    ds[2] = ddtheta1;
    ds[3] = ddtheta2;
  }
  // wrap(): Gymnasium's loops, which run once or twice for any state a step can produce;
  // fmod first for far-away values (and leave non-finite ones), so that nothing can spin.
  MPIRAY_KFN static double Wrap(double x, double m, double M) {
    const double diff = M - m;
    if (!(x - x == 0.0)) return x;  // inf / NaN
    if (x > M + 64 * diff || x < m - 64 * diff) x = kmath::fmod(x, diff);
    while (x > M) x = x - diff;
    while (x < m) x = x + diff;
    return x;
  }
  MPIRAY_KFN static double Bound(double x, double m, double M) {
    return (x < m ? m : x) > M ? M : (x < m ? m : x);
  }

  MPIRAY_KFN void Step(double* s, Action action, double& reward, bool& terminated) const {
    constexpr double dt = 0.2, max_vel_1 = 4 * kPi, max_vel_2 = 9 * kPi;
    const double torque = action == 0 ? -1.0 : (action == 1 ? 0.0 : 1.0);  // AVAIL_TORQUE[a]
    // rk4 over [0, dt] in one step, as numpy evaluates it.
    double k1[4], k2[4], k3[4], k4[4], y[4];
    const double dt2 = dt / 2.0;
    Dsdt(s, torque, k1);
    for (int d = 0; d < 4; ++d) y[d] = s[d] + dt2 * k1[d];
    Dsdt(y, torque, k2);
    for (int d = 0; d < 4; ++d) y[d] = s[d] + dt2 * k2[d];
    Dsdt(y, torque, k3);
    for (int d = 0; d < 4; ++d) y[d] = s[d] + dt * k3[d];
    Dsdt(y, torque, k4);
    double ns[4];
    for (int d = 0; d < 4; ++d) ns[d] = s[d] + dt / 6.0 * (k1[d] + 2 * k2[d] + 2 * k3[d] + k4[d]);
    s[0] = Wrap(ns[0], -kPi, kPi);
    s[1] = Wrap(ns[1], -kPi, kPi);
    s[2] = Bound(ns[2], -max_vel_1, max_vel_1);
    s[3] = Bound(ns[3], -max_vel_2, max_vel_2);
    terminated = -kmath::cos(s[0]) - kmath::cos(s[1] + s[0]) > 1.0;
    reward = terminated ? 0.0 : -1.0;
  }
  MPIRAY_KFN static void Observe(const double* s, float* o) {
    o[0] = static_cast<float>(kmath::cos(s[0]));
    o[1] = static_cast<float>(kmath::sin(s[0]));
    o[2] = static_cast<float>(kmath::cos(s[1]));
    o[3] = static_cast<float>(kmath::sin(s[1]));
    o[4] = static_cast<float>(s[2]);
    o[5] = static_cast<float>(s[3]);
  }
  static Bounds DefaultBounds() { return {-0.1, 0.1}; }
  MPIRAY_KFN static void Reset(double* s, Rng& rng, const Bounds& b, double, double) {
    // uniform(low, high, size=(4,)).astype(np.float32)
    for (int d = 0; d < 4; ++d) s[d] = static_cast<float>(rng.Uniform(b.low, b.high));
  }
};

}  // namespace mpiray::kernels::impl
