// Batched classic-control environments: N copies of CartPole-v1, Pendulum-v1, MountainCar-v0,
// MountainCarContinuous-v0 or Acrobot-v1 stepped together in one kernel, with Gymnasium's
// dynamics, rewards, termination, time-limit truncation and observation/action spaces, and the
// autoreset modes of Gymnasium's vector environments. Python: mpiray.kernels.envs.make_vec.
// No Kokkos in this header; the kernels are in src/envs.cpp.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace mpiray::kernels {

/// @brief What happens after an episode ends (gymnasium.vector.AutoresetMode).
enum class AutoresetMode : uint8_t {
  kNextStep,  ///< the next Step resets the env (ignoring its action): reward 0, not done
  kSameStep,  ///< Step resets at once; the final observation goes to `final_obs`
  kDisabled,  ///< the caller resets done envs with Reset(mask); stepping one is an error
};

/// @brief Static description of an environment, as Gymnasium's spaces say.
struct EnvInfo {
  std::string id;              ///< e.g. "CartPole-v1"
  int obs_dim = 0;             ///< observation: float32[obs_dim] in Box(obs_low, obs_high)
  int state_dim = 0;           ///< internal state (float64), see GetState
  bool discrete = true;        ///< action: int in [0, num_actions) or float32[action_dim]
  int num_actions = 0;         ///< Discrete(n)
  int action_dim = 0;          ///< Box(action_low, action_high, (action_dim,))
  std::vector<float> obs_low, obs_high, action_low, action_high;
  int max_episode_steps = 0;   ///< Gymnasium's TimeLimit for this id
};

/// @brief The environment ids this library implements.
std::vector<std::string> EnvIds();
/// @brief The description of `id` (throws InvalidArgumentError naming the known ids).
EnvInfo GetEnvInfo(const std::string& id);

/// @brief Options of a BatchedEnv (Gymnasium's make/make_vec keyword arguments).
struct BatchedEnvOptions {
  int64_t num_envs = 1;
  int max_episode_steps = -1;  ///< -1: the id's default (TimeLimit); 0: no time limit
  AutoresetMode autoreset_mode = AutoresetMode::kNextStep;
  bool sutton_barto_reward = false;  ///< CartPole
  double g = 10.0;                   ///< Pendulum gravity
  double goal_velocity = 0.0;        ///< MountainCar, MountainCarContinuous
};

/// @brief Per-reset bounds of the initial state (Gymnasium's reset options). NaN: default.
struct ResetBounds {
  double low = kDefault;     ///< CartPole, Acrobot, MountainCar*: options["low"]
  double high = kDefault;    ///< options["high"]
  double x_init = kDefault;  ///< Pendulum: options["x_init"] (theta bound)
  double y_init = kDefault;  ///< Pendulum: options["y_init"] (angular velocity bound)
  static constexpr double kDefault = std::numeric_limits<double>::quiet_NaN();
};

/// @brief N environments of one id, stepped in one kernel. All arrays are host memory owned by
/// the caller, row-major with the env index first; the kernels read and write them in place
/// (or copy each once to and from the device on GPU builds).
class BatchedEnv {
 public:
  /// @throws InvalidArgumentError for an unknown id or bad options.
  BatchedEnv(const std::string& id, const BatchedEnvOptions& options);
  ~BatchedEnv();
  BatchedEnv(const BatchedEnv&) = delete;
  BatchedEnv& operator=(const BatchedEnv&) = delete;

  const EnvInfo& info() const;
  const BatchedEnvOptions& options() const;
  int64_t num_envs() const;
  int max_episode_steps() const;  ///< 0: none

  /// @brief Reset the envs where `mask` is set (null: all) into `obs` [N, obs_dim] (rows of
  /// envs not reset are left as they are). `seeds` [N] (null: keep each env's random stream)
  /// re-seeds the reset envs. Clears their step counters and pending autoresets.
  void Reset(float* obs, const uint64_t* seeds, const uint8_t* mask, const ResetBounds& bounds);

  /// @brief Step every env with `actions` (int64 [N] for discrete ids, float32 [N, action_dim]
  /// otherwise). Writes obs [N, obs_dim], rewards [N], terminated [N], truncated [N] (0/1).
  /// kSameStep: `final_obs` [N, obs_dim] receives the last observation of envs that ended
  /// (others untouched; may be null), and `obs` holds their reset observation.
  /// @throws InvalidArgumentError for a discrete action out of range (naming the env), or, in
  /// kDisabled mode, for an env that ended and was not reset; before Reset was called.
  void Step(const void* actions, float* obs, double* rewards, uint8_t* terminated,
            uint8_t* truncated, float* final_obs);

  /// @brief Copy the internal states out, [N, state_dim] float64 (CartPole: x, x_dot, theta,
  /// theta_dot; Pendulum: theta, theta_dot; MountainCar*: position, velocity; Acrobot:
  /// theta1, theta2, dtheta1, dtheta2), and the steps taken in the current episodes [N].
  void GetState(double* state, int32_t* elapsed_steps) const;
  /// @brief Overwrite the states (and step counters, when not null); clears pending resets.
  /// `obs` (may be null) receives the matching observations.
  void SetState(const double* state, const int32_t* elapsed_steps, float* obs);
  /// @brief Envs whose episode ended and that the next Step resets (kNextStep) or that must
  /// be reset (kDisabled), [N] 0/1.
  void GetPendingResets(uint8_t* pending) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mpiray::kernels
