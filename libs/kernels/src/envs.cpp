// BatchedEnv: N classic-control environments in structure-of-arrays device memory, stepped by
// one kernel per Step. The kernel works in blocks of envs: a first loop runs the dynamics of
// every env of the block (straight-line code the compiler can vectorise on CPUs), a second
// handles the few that end or reset. On GPUs a block is one env, one thread.
#include "mpiray/kernels/envs.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "impl/classic_control.h"
#include "impl/parallel.h"
#include "mpiray/core/errors.h"

namespace mpiray::kernels {

// Fully unrolled small loops (over state or observation components), so that the loop over
// envs around them is one straight-line body the compiler can vectorise.
#if defined(__clang__)
#define MPIRAY_UNROLL _Pragma("unroll")
#elif defined(__GNUC__) && !defined(__CUDACC__)
#define MPIRAY_UNROLL _Pragma("GCC unroll 16")
#else
#define MPIRAY_UNROLL
#endif

namespace {

using impl::Bounds;
using impl::Rng;

constexpr int64_t kBlock = impl::kDeviceIsHost ? 1024 : 1;

enum class Kind { kCartPole, kPendulum, kMountainCar, kMountainCarContinuous, kAcrobot };

struct IdEntry {
  const char* id;
  Kind kind;
};
constexpr IdEntry kIds[] = {
    {"CartPole-v1", Kind::kCartPole},
    {"Pendulum-v1", Kind::kPendulum},
    {"MountainCar-v0", Kind::kMountainCar},
    {"MountainCarContinuous-v0", Kind::kMountainCarContinuous},
    {"Acrobot-v1", Kind::kAcrobot},
};

Kind KindOf(const std::string& id) {
  for (const auto& e : kIds) {
    if (id == e.id) return e.kind;
  }
  std::string known;
  for (const auto& e : kIds) known += std::string(known.empty() ? "" : ", ") + e.id;
  throw InvalidArgumentError("unknown environment id '" + id + "' (mpiray.kernels has: " + known + ")");
}

EnvInfo InfoOf(Kind kind) {
  EnvInfo i;
  const float inf = std::numeric_limits<float>::infinity();
  switch (kind) {
    case Kind::kCartPole: {
      const float th = static_cast<float>(12 * 2 * impl::kPi / 360 * 2), x = 4.8f;
      i = {"CartPole-v1", 4, 4, true, 2, 0, {-x, -inf, -th, -inf}, {x, inf, th, inf}, {}, {}, 500};
      break;
    }
    case Kind::kPendulum:
      i = {"Pendulum-v1", 3, 2, false, 0, 1, {-1.f, -1.f, -8.f}, {1.f, 1.f, 8.f}, {-2.f}, {2.f}, 200};
      break;
    case Kind::kMountainCar:
      i = {"MountainCar-v0", 2, 2, true, 3, 0, {-1.2f, -0.07f}, {0.6f, 0.07f}, {}, {}, 200};
      break;
    case Kind::kMountainCarContinuous:
      i = {"MountainCarContinuous-v0", 2, 2, false, 0, 1, {-1.2f, -0.07f}, {0.6f, 0.07f},
           {-1.f}, {1.f}, 999};
      break;
    case Kind::kAcrobot: {
      const float v1 = static_cast<float>(4 * impl::kPi), v2 = static_cast<float>(9 * impl::kPi);
      i = {"Acrobot-v1", 6, 4, true, 3, 0, {-1.f, -1.f, -1.f, -1.f, -v1, -v2},
           {1.f, 1.f, 1.f, 1.f, v1, v2}, {}, {}, 500};
      break;
    }
  }
  return i;
}

/// Device-side state of all envs, and the kernels over it.
/// f(i) for every i in [begin, end) where a[i] (or b[i], when b is not null) is nonzero; the
/// flags are 0 or 1, so 8 of them are read as one word and only the set ones are visited.
template <class F>
MPIRAY_KFN void ForEachSet(const uint8_t* a, const uint8_t* b, int64_t begin, int64_t end, const F& f) {
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    uint64_t w;
    std::memcpy(&w, a + i, 8);
    if (b) {
      uint64_t wb;
      std::memcpy(&wb, b + i, 8);
      w |= wb;
    }
    while (w != 0) {  // one bit per set flag (bit 0 of its byte)
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
      const int bit = __ffsll(static_cast<long long>(w)) - 1;
#else
      const int bit = __builtin_ctzll(w);
#endif
      f(i + bit / 8);
      w &= w - 1;
    }
  }
  for (; i < end; ++i) {
    if (a[i] | (b ? b[i] : 0)) f(i);
  }
}

template <class Env>
struct Kernels {
  static constexpr int D = Env::kStateDim, O = Env::kObsDim;
  using Action = typename Env::Action;

  Env env;
  int64_t N;
  int max_steps;
  AutoresetMode mode;
  Bounds defaults;
  double* state;  // [D][N]
  int32_t* steps;
  uint8_t* pending;
  uint64_t* key;
  uint64_t* ctr;

  MPIRAY_KFN void Load(int64_t i, double* s) const {
    MPIRAY_UNROLL
    for (int d = 0; d < D; ++d) s[d] = state[d * N + i];
  }
  MPIRAY_KFN void Store(int64_t i, const double* s) const {
    MPIRAY_UNROLL
    for (int d = 0; d < D; ++d) state[d * N + i] = s[d];
  }
  MPIRAY_KFN void WriteObs(const double* s, float* row) const {
    float o[O];
    Env::Observe(s, o);
    for (int d = 0; d < O; ++d) row[d] = o[d];
  }
  MPIRAY_KFN void ResetOne(int64_t i, const Bounds& b, float* obs_row) const {
    Rng rng{key[i], ctr[i]};
    double s[D];
    Env::Reset(s, rng, b, 0.0, 0.0);
    ctr[i] = rng.counter;
    Store(i, s);
    steps[i] = 0;
    pending[i] = 0;
    WriteObs(s, obs_row);
  }
};

// CartPole's dynamics over a range of envs on the host, as one loop the compiler vectorises;
// on x86-64 also built for AVX2 and picked at run time (4 doubles per instruction instead of
// 2). No FMA contraction either way (-std=c++20 implies -ffp-contract=off), so every variant
// computes the same bits.
struct CartPoleRange {
  impl::CartPole env;
  double* st;
  int64_t n;
  const int64_t* actions;
  float* obs;
  double* rew;
  uint8_t* term;
  uint8_t* trunc;
  int32_t* steps;
  int max_steps;
};

// The loop is a macro, expanded inside each target-specific function: a helper inlined into
// them would be vectorised for the baseline target (GCC 12 then picks 16-byte vectors).
#if defined(MPIRAY_KERNELS_OPENMP_SIMD)
#define MPIRAY_SIMD _Pragma("omp simd")
#else
#define MPIRAY_SIMD
#endif
#define MPIRAY_CARTPOLE_LOOP(kFast)                                                 \
  MPIRAY_SIMD for (int64_t i = b; i < e; ++i) {                                     \
    double r;                                                                       \
    bool t;                                                                         \
    env.StepSoA<kFast>(st, n, i, actions[i], r, t, obs + i * 4);                    \
    const int32_t k = steps[i] + 1;                                                 \
    steps[i] = k;                                                                   \
    rew[i] = r;                                                                     \
    term[i] = t;                                                                    \
    trunc[i] = (max_steps > 0) & (k >= max_steps); /* TimeLimit */                  \
  }
// All envs of [b, e) within FastSinCos' range (an integer count: vectorised), then the loop.
#define MPIRAY_CARTPOLE_RANGE(c, b, e)                                              \
  double* __restrict st = c.st;                                                     \
  const int64_t* __restrict actions = c.actions;                                    \
  float* __restrict obs = c.obs;                                                    \
  double* __restrict rew = c.rew;                                                   \
  uint8_t* __restrict term = c.term;                                                \
  uint8_t* __restrict trunc = c.trunc;                                              \
  int32_t* __restrict steps = c.steps;                                              \
  const impl::CartPole env = c.env;                                                 \
  const int64_t n = c.n;                                                            \
  const int max_steps = c.max_steps;                                                \
  const double* __restrict theta = st + 2 * n;                                      \
  int64_t slow = 0;                                                                 \
  for (int64_t i = b; i < e; ++i) {                                                 \
    slow += (theta[i] >= impl::kFastSinCosLimit) | (theta[i] <= -impl::kFastSinCosLimit); \
  }                                                                                 \
  if (slow == 0) {                                                                  \
    MPIRAY_CARTPOLE_LOOP(true)                                                      \
  } else {                                                                          \
    MPIRAY_CARTPOLE_LOOP(false)                                                     \
  }

void CartPoleGeneric(const CartPoleRange& c, int64_t b, int64_t e) { MPIRAY_CARTPOLE_RANGE(c, b, e) }
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__) && !defined(__HIPCC__)
#define MPIRAY_KERNELS_X86_DISPATCH 1
[[gnu::target("avx2,fma")]] void CartPoleAvx2(const CartPoleRange& c, int64_t b, int64_t e) {
  MPIRAY_CARTPOLE_RANGE(c, b, e)
}
[[gnu::target("avx512f,avx512dq,avx512vl,avx512bw,prefer-vector-width=512")]] void CartPoleAvx512(
    const CartPoleRange& c, int64_t b, int64_t e) {
  MPIRAY_CARTPOLE_RANGE(c, b, e)
}
#endif

using CartPoleFn = void (*)(const CartPoleRange&, int64_t, int64_t);
CartPoleFn PickCartPole() {
#ifdef MPIRAY_KERNELS_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")) {
    return &CartPoleAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &CartPoleAvx2;
#endif
  return &CartPoleGeneric;
}
const CartPoleFn kCartPoleHost = PickCartPole();

template <class Env>
struct StepKernel {
  Kernels<Env> k;
  const typename Env::Action* actions;
  float* obs;
  double* rew;
  uint8_t* term;
  uint8_t* trunc;
  float* final_obs;

  // The dynamics of envs [begin, end): straight-line code, vectorised on CPUs.
  template <bool kFast>
  MPIRAY_KFN void Dynamics(int64_t begin, int64_t end) const {
    constexpr int D = Env::kStateDim, O = Env::kObsDim;
#if defined(_OPENMP) || defined(MPIRAY_KERNELS_OPENMP_SIMD)
#pragma omp simd
#endif
    for (int64_t i = begin; i < end; ++i) {
      double r = 0;
      bool t = false;
      double s[D];
      k.Load(i, s);
      if constexpr (Env::kHasFast) {
        k.env.template Step<kFast>(s, actions[i], r, t);
      } else {
        k.env.Step(s, actions[i], r, t);
      }
      k.Store(i, s);
      float o[O];
      Env::Observe(s, o);
      MPIRAY_UNROLL
      for (int d = 0; d < O; ++d) obs[i * O + d] = o[d];
      const int32_t n = k.steps[i] + 1;
      k.steps[i] = n;
      rew[i] = r;
      term[i] = t;
      trunc[i] = (k.max_steps > 0) & (n >= k.max_steps);  // TimeLimit
    }
  }

  MPIRAY_KFN void operator()(int64_t b) const {
    constexpr int D = Env::kStateDim, O = Env::kObsDim;
    (void)D;
    const int64_t begin = b * kBlock;
    const int64_t end = begin + kBlock < k.N ? begin + kBlock : k.N;
    // 1. Dynamics of every env in the block (those about to reset too: overwritten below).
    if constexpr (std::is_same_v<Env, impl::CartPole> && impl::kDeviceIsHost) {
      const CartPoleRange c{k.env, k.state, k.N,   actions, obs,
                            rew,   term,    trunc, k.steps, k.max_steps};
      kCartPoleHost(c, begin, end);
    } else {
      Dynamics<false>(begin, end);
    }
    // 2. Episode ends and resets: the few envs concerned are found 8 flags at a time.
    switch (k.mode) {
      case AutoresetMode::kNextStep:  // envs that ended last step only reset in this one
        ForEachSet(k.pending, nullptr, begin, end, [&](int64_t i) {
          k.ResetOne(i, k.defaults, obs + i * O);
          rew[i] = 0;
          term[i] = 0;
          trunc[i] = 0;
        });
        for (int64_t i = begin; i < end; ++i) k.pending[i] = term[i] | trunc[i];
        break;
      case AutoresetMode::kSameStep:
        ForEachSet(term, trunc, begin, end, [&](int64_t i) {
          if (final_obs) {
            for (int d = 0; d < O; ++d) final_obs[i * O + d] = obs[i * O + d];
          }
          k.ResetOne(i, k.defaults, obs + i * O);
        });
        break;
      case AutoresetMode::kDisabled:
        for (int64_t i = begin; i < end; ++i) k.pending[i] = term[i] | trunc[i];
        break;
    }
  }
};

template <class Env>
struct ResetKernel {
  Kernels<Env> k;
  Bounds bounds;
  const uint64_t* seeds;
  const uint8_t* mask;
  float* obs;

  MPIRAY_KFN void operator()(int64_t i) const {
    if (mask && !mask[i]) return;
    if (seeds) {
      k.key[i] = impl::SeedKey(seeds[i]);
      k.ctr[i] = 0;
    }
    k.ResetOne(i, bounds, obs + i * Env::kObsDim);
  }
};

template <class Env>
struct ObserveKernel {
  Kernels<Env> k;
  float* obs;
  MPIRAY_KFN void operator()(int64_t i) const {
    double s[Env::kStateDim];
    k.Load(i, s);
    k.WriteObs(s, obs + i * Env::kObsDim);
  }
};

}  // namespace

namespace {
// Any a[i] outside [0, n)? One vectorised pass.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
[[gnu::target_clones("avx2", "default")]]
#endif
bool AnyOutOfRange(const int64_t* a, int64_t count, int64_t n) {
  int64_t bad = 0;  // an integer count of signed compares: vectorised
  for (int64_t i = 0; i < count; ++i) bad += (a[i] < 0) | (a[i] >= n);
  return bad != 0;
}
}  // namespace

std::vector<std::string> EnvIds() {
  std::vector<std::string> out;
  for (const auto& e : kIds) out.emplace_back(e.id);
  return out;
}

EnvInfo GetEnvInfo(const std::string& id) { return InfoOf(KindOf(id)); }

struct BatchedEnv::Impl {
  Kind kind;
  EnvInfo info;
  BatchedEnvOptions opt;
  int max_steps = 0;
  bool was_reset = false;
  impl::DeviceArray<double> state;
  impl::DeviceArray<int32_t> steps;
  impl::DeviceArray<uint8_t> pending;
  impl::DeviceArray<uint64_t> key, ctr;
  impl::CartPole cartpole;
  impl::Pendulum pendulum;
  impl::MountainCar mountain_car;
  impl::MountainCarContinuous mountain_car_continuous;
  impl::Acrobot acrobot;

  template <class F>
  void Visit(F&& f) {
    switch (kind) {
      case Kind::kCartPole: return f(cartpole);
      case Kind::kPendulum: return f(pendulum);
      case Kind::kMountainCar: return f(mountain_car);
      case Kind::kMountainCarContinuous: return f(mountain_car_continuous);
      case Kind::kAcrobot: return f(acrobot);
    }
  }

  template <class Env>
  Kernels<Env> MakeKernels(const Env& env) {
    return Kernels<Env>{env,        opt.num_envs, max_steps,  opt.autoreset_mode,
                        Env::DefaultBounds(),     state.data(), steps.data(), pending.data(),
                        key.data(), ctr.data()};
  }

  std::vector<uint8_t> PendingOnHost() {
    std::vector<uint8_t> p(static_cast<size_t>(opt.num_envs));
    pending.ToHost(p.data(), p.size());
    return p;
  }
};

BatchedEnv::BatchedEnv(const std::string& id, const BatchedEnvOptions& options)
    : impl_(std::make_unique<Impl>()) {
  auto& m = *impl_;
  m.kind = KindOf(id);
  m.info = InfoOf(m.kind);
  m.opt = options;
  if (options.num_envs < 1) {
    throw InvalidArgumentError("num_envs must be at least 1, got " + std::to_string(options.num_envs));
  }
  if (options.max_episode_steps < -1) {
    throw InvalidArgumentError("max_episode_steps must be >= 0 (or -1 for the default), got " +
                               std::to_string(options.max_episode_steps));
  }
  m.max_steps = options.max_episode_steps == -1 ? m.info.max_episode_steps : options.max_episode_steps;
  m.cartpole.sutton_barto_reward = options.sutton_barto_reward;
  m.pendulum.g = options.g;
  m.mountain_car.goal_velocity = options.goal_velocity;
  m.mountain_car_continuous.goal_velocity = options.goal_velocity;
  const size_t n = static_cast<size_t>(options.num_envs);
  m.state.Resize("mpiray::kernels::env_state", n * static_cast<size_t>(m.info.state_dim));
  m.steps.Resize("mpiray::kernels::env_steps", n);
  m.pending.Resize("mpiray::kernels::env_pending", n);
  m.key.Resize("mpiray::kernels::env_key", n);
  m.ctr.Resize("mpiray::kernels::env_ctr", n);
  // Until a seeded reset: distinct random streams (as Gymnasium's unseeded envs).
  std::random_device rd;
  const uint64_t base = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  std::vector<uint64_t> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = impl::SeedKey(base + i);
  m.key.FromHost(keys.data(), n);
}

BatchedEnv::~BatchedEnv() = default;

const EnvInfo& BatchedEnv::info() const { return impl_->info; }
const BatchedEnvOptions& BatchedEnv::options() const { return impl_->opt; }
int64_t BatchedEnv::num_envs() const { return impl_->opt.num_envs; }
int BatchedEnv::max_episode_steps() const { return impl_->max_steps; }

void BatchedEnv::Reset(float* obs, const uint64_t* seeds, const uint8_t* mask,
                       const ResetBounds& bounds) {
  auto& m = *impl_;
  const size_t n = static_cast<size_t>(m.opt.num_envs);
  if (obs == nullptr) throw InvalidArgumentError("Reset: no observation array");
  if (!m.was_reset && mask != nullptr) {
    throw InvalidArgumentError("the first reset must reset every env (no reset_mask)");
  }
  m.Visit([&](auto& env) {
    using Env = std::decay_t<decltype(env)>;
    Bounds b = Env::DefaultBounds();
    if constexpr (std::is_same_v<Env, impl::Pendulum>) {
      if (!std::isnan(bounds.x_init)) b.low = bounds.x_init;
      if (!std::isnan(bounds.y_init)) b.high = bounds.y_init;
    } else {
      if (!std::isnan(bounds.low)) b.low = bounds.low;
      if (!std::isnan(bounds.high)) b.high = bounds.high;
      if (b.low > b.high) {
        throw InvalidArgumentError("Lower bound (" + std::to_string(b.low) +
                                   ") must be lower than higher bound (" + std::to_string(b.high) + ").");
      }
    }
    impl::DeviceIn<uint64_t> s(seeds, n);
    impl::DeviceIn<uint8_t> mk(mask, n);
    impl::DeviceOut<float> o(obs, n * Env::kObsDim);
    if (!impl::kDeviceIsHost && mask != nullptr) o.FromHostInit(obs);  // rows not reset stay
    ResetKernel<Env> k{m.MakeKernels(env), b, s.data(), mk.data(), o.data()};
    impl::DeviceFor("mpiray::kernels::BatchedEnv::Reset", m.opt.num_envs, k);
    impl::DeviceFence();
    o.Finish();
  });
  m.was_reset = true;
}

void BatchedEnv::Step(const void* actions, float* obs, double* rewards, uint8_t* terminated,
                      uint8_t* truncated, float* final_obs) {
  auto& m = *impl_;
  const int64_t N = m.opt.num_envs;
  const size_t n = static_cast<size_t>(N);
  if (!m.was_reset) throw InvalidArgumentError("call reset() before step()");
  if (!actions || !obs || !rewards || !terminated || !truncated) {
    throw InvalidArgumentError("Step: missing action or output array");
  }
  if (m.info.discrete) {
    const auto* a = static_cast<const int64_t*>(actions);
    const int64_t na = m.info.num_actions;
    if (AnyOutOfRange(a, N, na)) {
      for (int64_t i = 0; i < N; ++i) {
        if (a[i] < 0 || a[i] >= na) {
          throw InvalidArgumentError("env " + std::to_string(i) + ": action " + std::to_string(a[i]) +
                                     " is not in Discrete(" + std::to_string(na) + ") of " + m.info.id);
        }
      }
    }
  }
  if (m.opt.autoreset_mode == AutoresetMode::kDisabled) {
    const auto p = m.PendingOnHost();
    for (size_t i = 0; i < n; ++i) {
      if (p[i]) {
        throw InvalidArgumentError(
            "env " + std::to_string(i) + " of " + m.info.id +
            " has ended (terminated or truncated) and was not reset; with autoreset_mode DISABLED, "
            "call reset(options={'reset_mask': mask}) for the ended envs before step()");
      }
    }
  }
  m.Visit([&](auto& env) {
    using Env = std::decay_t<decltype(env)>;
    using Action = typename Env::Action;
    constexpr int O = Env::kObsDim;
    impl::DeviceIn<Action> a(static_cast<const Action*>(actions), n);
    impl::DeviceOut<float> o(obs, n * O);
    impl::DeviceOut<double> r(rewards, n);
    impl::DeviceOut<uint8_t> te(terminated, n), tr(truncated, n);
    impl::DeviceOut<float> fo(final_obs, n * O);
    if (!impl::kDeviceIsHost && final_obs != nullptr) fo.FromHostInit(final_obs);
    StepKernel<Env> k{m.MakeKernels(env), a.data(), o.data(), r.data(), te.data(), tr.data(), fo.data()};
    impl::DeviceFor("mpiray::kernels::BatchedEnv::Step", (N + kBlock - 1) / kBlock, k);
    impl::DeviceFence();
    o.Finish();
    r.Finish();
    te.Finish();
    tr.Finish();
    fo.Finish();
  });
}

void BatchedEnv::GetState(double* state, int32_t* elapsed_steps) const {
  auto& m = *impl_;
  const size_t n = static_cast<size_t>(m.opt.num_envs);
  const size_t D = static_cast<size_t>(m.info.state_dim);
  if (state) {
    std::vector<double> soa(n * D);
    m.state.ToHost(soa.data(), soa.size());
    for (size_t i = 0; i < n; ++i) {
      for (size_t d = 0; d < D; ++d) state[i * D + d] = soa[d * n + i];
    }
  }
  if (elapsed_steps) m.steps.ToHost(elapsed_steps, n);
}

void BatchedEnv::SetState(const double* state, const int32_t* elapsed_steps, float* obs) {
  auto& m = *impl_;
  const size_t n = static_cast<size_t>(m.opt.num_envs);
  const size_t D = static_cast<size_t>(m.info.state_dim);
  if (state == nullptr) throw InvalidArgumentError("SetState: no state array");
  std::vector<double> soa(n * D);
  for (size_t i = 0; i < n; ++i) {
    for (size_t d = 0; d < D; ++d) soa[d * n + i] = state[i * D + d];
  }
  m.state.FromHost(soa.data(), soa.size());
  if (elapsed_steps) m.steps.FromHost(elapsed_steps, n);
  std::vector<uint8_t> zeros(n, 0);
  m.pending.FromHost(zeros.data(), n);
  m.was_reset = true;
  if (obs) {
    m.Visit([&](auto& env) {
      using Env = std::decay_t<decltype(env)>;
      impl::DeviceOut<float> o(obs, n * Env::kObsDim);
      ObserveKernel<Env> k{m.MakeKernels(env), o.data()};
      impl::DeviceFor("mpiray::kernels::BatchedEnv::Observe", m.opt.num_envs, k);
      impl::DeviceFence();
      o.Finish();
    });
  }
}

void BatchedEnv::GetPendingResets(uint8_t* pending) const {
  if (pending) impl_->pending.ToHost(pending, static_cast<size_t>(impl_->opt.num_envs));
}

}  // namespace mpiray::kernels
