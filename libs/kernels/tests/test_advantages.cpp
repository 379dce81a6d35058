// GAE and discounted returns against a reference that sums discounted TD residuals and rewards
// episode by episode (a different formulation from the kernels' backward recursion).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "mpiray/core/errors.h"
#include "mpiray/kernels/advantages.h"

using namespace mpiray::kernels;

namespace {

struct Rollout {
  int64_t T, N;
  std::vector<double> rewards, values, bootstrap, finals;
  std::vector<uint8_t> term, trunc;
};

Rollout Random(int64_t T, int64_t N, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> g;
  std::uniform_real_distribution<double> u;
  Rollout r{T, N, {}, {}, {}, {}, {}, {}};
  for (int64_t k = 0; k < T * N; ++k) {
    r.rewards.push_back(g(rng));
    r.values.push_back(g(rng));
    r.finals.push_back(g(rng));
    const double x = u(rng);
    r.term.push_back(x < 0.05);
    r.trunc.push_back(x >= 0.05 && x < 0.08);
  }
  for (int64_t n = 0; n < N; ++n) r.bootstrap.push_back(g(rng));
  return r;
}

// V(s_{t+1}) by the conventions of advantages.h.
double NextValue(const Rollout& r, bool use_finals, int64_t t, int64_t n) {
  const int64_t k = t * r.N + n;
  if (r.term[k]) return 0.0;
  if (r.trunc[k] && use_finals) return r.finals[k];
  return t + 1 < r.T ? r.values[k + r.N] : r.bootstrap[n];
}

void ReferenceGae(const Rollout& r, bool use_finals, double gamma, double lambda, std::vector<double>& adv) {
  adv.assign(r.T * r.N, 0.0);
  for (int64_t n = 0; n < r.N; ++n) {
    int64_t start = 0;
    for (int64_t t = 0; t < r.T; ++t) {
      const int64_t k = t * r.N + n;
      const bool last = r.term[k] || r.trunc[k] || t == r.T - 1;
      if (!last) continue;
      // episode [start, t]: A_i = sum_{l >= 0} (gamma lambda)^l delta_{i+l}
      for (int64_t i = start; i <= t; ++i) {
        double sum = 0, w = 1;
        for (int64_t j = i; j <= t; ++j) {
          const int64_t kj = j * r.N + n;
          const double delta = r.rewards[kj] + gamma * NextValue(r, use_finals, j, n) - r.values[kj];
          sum += w * delta;
          w *= gamma * lambda;
        }
        adv[i * r.N + n] = sum;
      }
      start = t + 1;
    }
  }
}

}  // namespace

TEST_CASE("GAE matches the episode-sum reference", "[kernels][advantages]") {
  for (bool use_finals : {false, true}) {
    const Rollout r = Random(40, 13, use_finals ? 2 : 1);
    RolloutView<double> v{r.T, r.N, r.rewards.data(), r.values.data(), r.term.data(), r.trunc.data(),
                          r.bootstrap.data(), use_finals ? r.finals.data() : nullptr};
    std::vector<double> adv(r.T * r.N), targets(r.T * r.N), ref;
    ComputeGae(v, GaeOptions{0.97, 0.9}, adv.data(), targets.data());
    ReferenceGae(r, use_finals, 0.97, 0.9, ref);
    for (size_t k = 0; k < adv.size(); ++k) {
      REQUIRE(adv[k] == Approx(ref[k]).margin(1e-10));
      REQUIRE(targets[k] == Approx(ref[k] + r.values[k]).margin(1e-10));
    }
    // float32 agrees to float precision.
    std::vector<float> rf(r.rewards.begin(), r.rewards.end()), vf(r.values.begin(), r.values.end()),
        bf(r.bootstrap.begin(), r.bootstrap.end()), ff(r.finals.begin(), r.finals.end());
    RolloutView<float> v32{r.T, r.N, rf.data(), vf.data(), r.term.data(), r.trunc.data(), bf.data(),
                           use_finals ? ff.data() : nullptr};
    std::vector<float> adv32(r.T * r.N);
    ComputeGae(v32, GaeOptions{0.97, 0.9}, adv32.data(), nullptr);
    for (size_t k = 0; k < adv.size(); ++k) REQUIRE(adv32[k] == Approx(ref[k]).margin(1e-4));
  }
}

TEST_CASE("discounted returns stop at terminations and bootstrap truncations", "[kernels][advantages]") {
  // One env, T = 6: episode [0..2] terminated, [3..4] truncated, [5] cut by the rollout's end.
  std::vector<double> rew{1, 2, 3, 4, 5, 6}, val{0, 0, 0, 0, 0, 9}, boot{10};
  std::vector<uint8_t> term{0, 0, 1, 0, 0, 0}, trunc{0, 0, 0, 0, 1, 0};
  RolloutView<double> v{6, 1, rew.data(), val.data(), term.data(), trunc.data(), boot.data(), nullptr};
  std::vector<double> g(6);
  DiscountedReturns(v, 0.5, g.data());
  // Truncation at t=4 bootstraps with values[5] = 9.
  const std::vector<double> expect{1 + 0.5 * (2 + 0.5 * 3), 2 + 0.5 * 3, 3, 4 + 0.5 * (5 + 0.5 * 9),
                                   5 + 0.5 * 9, 6 + 0.5 * 10};
  for (int t = 0; t < 6; ++t) REQUIRE(g[t] == Approx(expect[t]));
  // Without values, a truncation bootstraps nothing.
  v.values = nullptr;
  DiscountedReturns(v, 0.5, g.data());
  REQUIRE(g[4] == Approx(5.0));
  REQUIRE(g[3] == Approx(4 + 0.5 * 5));
}

TEST_CASE("advantage kernels refuse bad input", "[kernels][advantages]") {
  std::vector<float> x(4);
  RolloutView<float> v{2, 2, x.data(), nullptr, nullptr, nullptr, nullptr, nullptr};
  REQUIRE_THROWS_WITH(ComputeGae(v, GaeOptions{}, x.data(), nullptr), Catch::Contains("values are missing"));
  v.num_steps = -1;
  REQUIRE_THROWS_AS(DiscountedReturns(v, 0.9, x.data()), mpiray::InvalidArgumentError);
  v.num_steps = 0;
  DiscountedReturns(v, 0.9, nullptr);  // empty: nothing to do
}
