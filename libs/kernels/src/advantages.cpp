// Discounted returns and GAE: one kernel over the N columns of a [T, N] rollout; each column
// walks back over T (a sequential recurrence), so consecutive n touch consecutive memory.
#include "mpiray/kernels/advantages.h"

#include <string>

#include "impl/parallel.h"
#include "mpiray/core/errors.h"

namespace mpiray::kernels {

namespace {

template <class Real>
void CheckRollout(const RolloutView<Real>& r, bool need_values, const char* what) {
  if (r.num_steps < 0 || r.num_envs < 0) {
    throw InvalidArgumentError(std::string(what) + ": negative rollout size [" +
                               std::to_string(r.num_steps) + ", " + std::to_string(r.num_envs) + "]");
  }
  if (r.num_steps * r.num_envs == 0) return;
  if (r.rewards == nullptr) throw InvalidArgumentError(std::string(what) + ": rewards are missing");
  if (need_values && r.values == nullptr) {
    throw InvalidArgumentError(std::string(what) + ": values are missing");
  }
}

// On CPUs each call handles a block of columns, walking back over T with the block's columns in
// the inner loop: consecutive memory, vectorised. On GPUs a block is one column per thread
// (neighbouring threads read neighbouring memory).
constexpr int64_t kCols = impl::kDeviceIsHost ? 512 : 1;

template <class Real>
struct GaeKernel {
  int64_t T, N;
  Real gamma, gamma_lambda;
  const Real* rewards;
  const Real* values;
  const uint8_t* term;
  const uint8_t* trunc;
  const Real* bootstrap;
  const Real* final_values;
  Real* adv;
  Real* targets;

  MPIRAY_KFN void operator()(int64_t b) const {
    const int64_t n0 = b * kCols;
    const int64_t w = n0 + kCols < N ? kCols : N - n0;
    Real next_value[kCols], next_adv[kCols];
    for (int64_t j = 0; j < w; ++j) {
      next_value[j] = bootstrap ? bootstrap[n0 + j] : Real(0);
      next_adv[j] = 0;
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t row = t * N + n0;
#if defined(MPIRAY_KERNELS_OPENMP_SIMD)
#pragma omp simd
#endif
      for (int64_t j = 0; j < w; ++j) {
        const int64_t k = row + j;
        const bool is_term = term ? term[k] != 0 : false;
        const bool is_trunc = trunc ? trunc[k] != 0 : false;
        Real v_next = next_value[j];  // V(s_{t+1}): values[t + 1] or the bootstrap
        if (final_values) v_next = is_trunc ? final_values[k] : v_next;
        v_next = is_term ? Real(0) : v_next;
        const Real v = values[k];
        const Real delta = rewards[k] + gamma * v_next - v;
        const Real a = (is_term | is_trunc) ? delta : delta + gamma_lambda * next_adv[j];
        if (adv) adv[k] = a;
        if (targets) targets[k] = a + v;
        next_adv[j] = a;
        next_value[j] = v;
      }
    }
  }
};

template <class Real>
struct ReturnsKernel {
  int64_t T, N;
  Real gamma;
  const Real* rewards;
  const Real* values;
  const uint8_t* term;
  const uint8_t* trunc;
  const Real* bootstrap;
  const Real* final_values;
  Real* out;

  MPIRAY_KFN void operator()(int64_t b) const {
    const int64_t n0 = b * kCols;
    const int64_t w = n0 + kCols < N ? kCols : N - n0;
    Real next_return[kCols], next_value[kCols];
    for (int64_t j = 0; j < w; ++j) {
      next_return[j] = bootstrap ? bootstrap[n0 + j] : Real(0);
      next_value[j] = next_return[j];  // V(s_{t+1}) for a truncation (values given)
    }
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t row = t * N + n0;
#if defined(MPIRAY_KERNELS_OPENMP_SIMD)
#pragma omp simd
#endif
      for (int64_t j = 0; j < w; ++j) {
        const int64_t k = row + j;
        const bool is_term = term ? term[k] != 0 : false;
        const bool is_trunc = trunc ? trunc[k] != 0 : false;
        Real at_trunc = final_values ? final_values[k] : (values ? next_value[j] : Real(0));
        Real next = is_trunc ? at_trunc : next_return[j];
        next = is_term ? Real(0) : next;
        const Real g = rewards[k] + gamma * next;
        out[k] = g;
        next_return[j] = g;
        if (values) next_value[j] = values[k];
      }
    }
  }
};

template <class Real>
void Gae(const RolloutView<Real>& r, const GaeOptions& o, Real* adv, Real* targets) {
  CheckRollout(r, true, "ComputeGae");
  const size_t TN = static_cast<size_t>(r.num_steps * r.num_envs);
  if (TN == 0 || (adv == nullptr && targets == nullptr)) return;
  const size_t N = static_cast<size_t>(r.num_envs);
  impl::DeviceIn<Real> rew(r.rewards, TN), val(r.values, TN), boot(r.bootstrap_values, N),
      fin(r.final_values, TN);
  impl::DeviceIn<uint8_t> term(r.terminated, TN), trunc(r.truncated, TN);
  impl::DeviceOut<Real> a(adv, TN), tg(targets, TN);
  GaeKernel<Real> k{r.num_steps,
                    r.num_envs,
                    static_cast<Real>(o.gamma),
                    static_cast<Real>(o.gamma * o.lambda),
                    rew.data(),
                    val.data(),
                    term.data(),
                    trunc.data(),
                    boot.data(),
                    fin.data(),
                    a.data(),
                    tg.data()};
  impl::DeviceFor("mpiray::kernels::ComputeGae", (r.num_envs + kCols - 1) / kCols, k);
  impl::DeviceFence();
  a.Finish();
  tg.Finish();
}

template <class Real>
void Returns(const RolloutView<Real>& r, double gamma, Real* out) {
  CheckRollout(r, false, "DiscountedReturns");
  const size_t TN = static_cast<size_t>(r.num_steps * r.num_envs);
  if (TN == 0) return;
  if (out == nullptr) throw InvalidArgumentError("DiscountedReturns: no output array");
  const size_t N = static_cast<size_t>(r.num_envs);
  impl::DeviceIn<Real> rew(r.rewards, TN), val(r.values, TN), boot(r.bootstrap_values, N),
      fin(r.final_values, TN);
  impl::DeviceIn<uint8_t> term(r.terminated, TN), trunc(r.truncated, TN);
  impl::DeviceOut<Real> o(out, TN);
  ReturnsKernel<Real> k{r.num_steps,   r.num_envs,   static_cast<Real>(gamma), rew.data(),
                        val.data(),    term.data(),  trunc.data(),             boot.data(),
                        fin.data(),    o.data()};
  impl::DeviceFor("mpiray::kernels::DiscountedReturns", (r.num_envs + kCols - 1) / kCols, k);
  impl::DeviceFence();
  o.Finish();
}

}  // namespace

void ComputeGae(const RolloutView<float>& r, const GaeOptions& o, float* adv, float* targets) {
  Gae(r, o, adv, targets);
}
void ComputeGae(const RolloutView<double>& r, const GaeOptions& o, double* adv, double* targets) {
  Gae(r, o, adv, targets);
}
void DiscountedReturns(const RolloutView<float>& r, double gamma, float* out) {
  Returns(r, gamma, out);
}
void DiscountedReturns(const RolloutView<double>& r, double gamma, double* out) {
  Returns(r, gamma, out);
}

}  // namespace mpiray::kernels
