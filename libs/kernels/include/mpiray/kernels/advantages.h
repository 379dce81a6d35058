// Discounted returns and generalized advantage estimation (GAE) over time-major [T, N]
// rollouts (T steps of N environments, row-major: element (t, n) at t * N + n), with episode
// boundaries. No Kokkos in this header; the kernels are in src/advantages.cpp.
//
// Conventions (Gymnasium's, and RLlib's compute_value_targets):
//   terminated[t, n]: the episode ended at step t in a terminal state: nothing follows, the
//                     value after it is 0 and nothing propagates back across it.
//   truncated[t, n]:  the episode was cut at step t (time limit): the state after it is not
//                     terminal, so its value V(s_{t+1}) is still the bootstrap; nothing
//                     propagates back across the boundary. V(s_{t+1}) is taken from
//                     `final_values[t, n]` when given, otherwise from values[t + 1, n] (the
//                     layout of a NEXT_STEP-autoreset vector env, where the row after the last
//                     step of an episode holds its final observation), or bootstrap_values[n]
//                     at t = T - 1.
//   bootstrap_values[n]: V(s_T), the value of the observation after the last row (0 if null).
// Rows of a NEXT_STEP-autoreset env that only reset (reward 0 after a done row) are not
// transitions: mask them out of the loss, as RLlib does.
#pragma once

#include <cstdint>

namespace mpiray::kernels {

/// @brief A [T, N] rollout in caller memory (host). Pointers that may be null say so.
template <class Real>
struct RolloutView {
  int64_t num_steps = 0;              ///< T
  int64_t num_envs = 0;               ///< N
  const Real* rewards = nullptr;      ///< [T, N]
  const Real* values = nullptr;       ///< [T, N] V(s_t) (GAE only)
  const uint8_t* terminated = nullptr;  ///< [T, N], 0/1; null: none
  const uint8_t* truncated = nullptr;   ///< [T, N], 0/1; null: none
  const Real* bootstrap_values = nullptr;  ///< [N] V(s_T); null: 0
  const Real* final_values = nullptr;      ///< [T, N] V(final obs) where truncated; null: see above
};

/// @brief Options of ComputeGae.
struct GaeOptions {
  double gamma = 0.99;   ///< discount
  double lambda = 0.95;  ///< GAE lambda (1: Monte-Carlo advantages, 0: one-step TD)
};

/// @brief GAE advantages and value targets (targets = advantages + values), one kernel over
/// the N columns, each walking back over T.
///
///   delta_t = r_t + gamma * (1 - term_t) * V_next(t) - V(s_t)
///   A_t     = delta_t + gamma * lambda * (1 - term_t) * (1 - trunc_t) * A_{t+1},  A_T = 0
/// @param advantages, value_targets [T, N] outputs (either may be null).
/// @throws mpiray::InvalidArgumentError on negative sizes or missing rewards/values.
void ComputeGae(const RolloutView<float>& rollout, const GaeOptions& options, float* advantages,
                float* value_targets);
/// @brief ComputeGae in double precision.
void ComputeGae(const RolloutView<double>& rollout, const GaeOptions& options, double* advantages,
                double* value_targets);

/// @brief Discounted returns per episode:
///   G_t = r_t + gamma * next_t,  next_t = 0 if term_t; V(s_{t+1}) if trunc_t (final_values,
///   else values[t + 1] when values are given, else 0); G_{t+1} otherwise; G_T =
///   bootstrap_values (0 if null). `rollout.values` is optional here.
/// @param returns [T, N] output.
void DiscountedReturns(const RolloutView<float>& rollout, double gamma, float* returns);
/// @brief DiscountedReturns in double precision.
void DiscountedReturns(const RolloutView<double>& rollout, double gamma, double* returns);

}  // namespace mpiray::kernels
