// The batched environments: one CartPole step checked against the equations evaluated here in
// long double, the fast (vectorised) and exact paths against each other, the three autoreset
// modes, seeding, and errors. (tests/python/kernels compares every env with Gymnasium.)
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "mpiray/core/errors.h"
#include "mpiray/kernels/envs.h"

using namespace mpiray::kernels;

namespace {

struct Out {
  std::vector<float> obs;
  std::vector<double> rew;
  std::vector<uint8_t> term, trunc;
  std::vector<float> final_obs;
  explicit Out(const BatchedEnv& e)
      : obs(e.num_envs() * e.info().obs_dim),
        rew(e.num_envs()),
        term(e.num_envs()),
        trunc(e.num_envs()),
        final_obs(e.num_envs() * e.info().obs_dim, -99.f) {}
};

BatchedEnvOptions Opts(int64_t n, AutoresetMode mode = AutoresetMode::kNextStep, int limit = -1) {
  BatchedEnvOptions o;
  o.num_envs = n;
  o.autoreset_mode = mode;
  o.max_episode_steps = limit;
  return o;
}

}  // namespace

TEST_CASE("a CartPole step follows the cart-pole equations", "[kernels][envs]") {
  BatchedEnv env("CartPole-v1", Opts(2));
  Out o(env);
  env.Reset(o.obs.data(), nullptr, nullptr, ResetBounds{});
  const double s0[8] = {0.01, -0.2, 0.03, 0.4, 0.5, 1.0, -0.1, -0.3};
  env.SetState(s0, nullptr, nullptr);
  const int64_t actions[2] = {1, 0};
  env.Step(actions, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr);
  double s1[8];
  env.GetState(s1, nullptr);
  for (int e = 0; e < 2; ++e) {
    const long double x = s0[4 * e], xd = s0[4 * e + 1], th = s0[4 * e + 2], thd = s0[4 * e + 3];
    const long double f = actions[e] == 1 ? 10.0L : -10.0L;
    const long double c = std::cos(th), s = std::sin(th);
    const long double temp = (f + 0.05L * thd * thd * s) / 1.1L;
    const long double thacc = (9.8L * s - c * temp) / (0.5L * (4.0L / 3.0L - 0.1L * c * c / 1.1L));
    const long double xacc = temp - 0.05L * thacc * c / 1.1L;
    const long double expect[4] = {x + 0.02L * xd, xd + 0.02L * xacc, th + 0.02L * thd, thd + 0.02L * thacc};
    for (int d = 0; d < 4; ++d) {
      REQUIRE(s1[4 * e + d] == Approx(static_cast<double>(expect[d])).epsilon(1e-12).margin(1e-15));
      REQUIRE(o.obs[4 * e + d] == static_cast<float>(s1[4 * e + d]));
    }
    REQUIRE(o.rew[e] == 1.0);
    REQUIRE(o.term[e] == 0);
  }
}

TEST_CASE("the vectorised CartPole path agrees with the exact one", "[kernels][envs]") {
  // A block whose angles are all small runs the fast path; one huge angle sends the block to
  // std::sin/cos. Same states, same actions: the results agree to a few ulp.
  const int64_t n = 2048;
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(-0.2, 0.2);
  std::vector<double> s(4 * n);
  for (auto& v : s) v = u(rng);
  std::vector<int64_t> a(n);
  for (int64_t i = 0; i < n; ++i) a[i] = i % 2;
  BatchedEnv fast("CartPole-v1", Opts(n)), exact("CartPole-v1", Opts(n));
  Out of(fast), oe(exact);
  fast.Reset(of.obs.data(), nullptr, nullptr, ResetBounds{});
  exact.Reset(oe.obs.data(), nullptr, nullptr, ResetBounds{});
  std::vector<double> s_exact = s;
  for (int64_t blk = 0; blk < n; blk += 256) s_exact[4 * blk + 2] = 1e6;  // one per block
  fast.SetState(s.data(), nullptr, nullptr);
  exact.SetState(s_exact.data(), nullptr, nullptr);
  fast.Step(a.data(), of.obs.data(), of.rew.data(), of.term.data(), of.trunc.data(), nullptr);
  exact.Step(a.data(), oe.obs.data(), oe.rew.data(), oe.term.data(), oe.trunc.data(), nullptr);
  std::vector<double> sf(4 * n), se(4 * n);
  fast.GetState(sf.data(), nullptr);
  exact.GetState(se.data(), nullptr);
  for (int64_t i = 0; i < n; ++i) {
    if (i % 256 == 0) continue;  // the env with the huge angle
    for (int d = 0; d < 4; ++d) REQUIRE(sf[4 * i + d] == Approx(se[4 * i + d]).epsilon(1e-13).margin(1e-15));
    REQUIRE(of.term[i] == oe.term[i]);
  }
  REQUIRE(oe.term[0] == 1);  // the huge angle ends its episode
}

TEST_CASE("NEXT_STEP autoreset: the step after an end only resets", "[kernels][envs]") {
  BatchedEnv env("MountainCar-v0", Opts(3, AutoresetMode::kNextStep, 2));
  Out o(env);
  env.Reset(o.obs.data(), nullptr, nullptr, ResetBounds{});
  const int64_t a[3] = {0, 1, 2};
  env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr);
  REQUIRE(o.trunc == std::vector<uint8_t>{0, 0, 0});
  env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr);
  REQUIRE(o.trunc == std::vector<uint8_t>{1, 1, 1});  // the time limit of 2
  std::vector<uint8_t> pending(3);
  env.GetPendingResets(pending.data());
  REQUIRE(pending == std::vector<uint8_t>{1, 1, 1});
  env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(o.rew[i] == 0.0);
    REQUIRE(o.trunc[i] == 0);
    REQUIRE(o.obs[2 * i] >= -0.6f);
    REQUIRE(o.obs[2 * i] < -0.4f);
    REQUIRE(o.obs[2 * i + 1] == 0.0f);
  }
  int32_t steps[3];
  env.GetState(nullptr, steps);
  REQUIRE(steps[0] == 0);
}

TEST_CASE("SAME_STEP autoreset returns the final observation", "[kernels][envs]") {
  BatchedEnv env("CartPole-v1", Opts(2, AutoresetMode::kSameStep));
  Out o(env);
  env.Reset(o.obs.data(), nullptr, nullptr, ResetBounds{});
  const double s[8] = {2.39, 5.0, 0, 0, 0, 0, 0, 0};  // env 0 leaves the track this step
  env.SetState(s, nullptr, nullptr);
  const int64_t a[2] = {1, 1};
  env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), o.final_obs.data());
  REQUIRE(o.term[0] == 1);
  REQUIRE(o.term[1] == 0);
  REQUIRE(o.final_obs[0] == Approx(2.39 + 0.02 * 5.0));  // where it ended
  REQUIRE(std::fabs(o.obs[0]) < 0.05f);                  // and it is already reset
  REQUIRE(o.final_obs[4] == -99.f);                      // untouched for env 1
}

TEST_CASE("DISABLED autoreset refuses to step an ended env until it is reset", "[kernels][envs]") {
  BatchedEnv env("Pendulum-v1", Opts(2, AutoresetMode::kDisabled, 1));
  Out o(env);
  env.Reset(o.obs.data(), nullptr, nullptr, ResetBounds{});
  const float a[2] = {0.5f, -3.0f};
  env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr);
  REQUIRE(o.trunc == std::vector<uint8_t>{1, 1});
  REQUIRE_THROWS_WITH(env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr),
                      Catch::Contains("was not reset"));
  const uint8_t mask[2] = {1, 1};
  env.Reset(o.obs.data(), nullptr, mask, ResetBounds{});
  env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr);
}

TEST_CASE("seeds make resets reproducible, per env", "[kernels][envs]") {
  BatchedEnv a("Acrobot-v1", Opts(4)), b("Acrobot-v1", Opts(4));
  Out oa(a), ob(b);
  const uint64_t seeds[4] = {7, 8, 9, 10};
  a.Reset(oa.obs.data(), seeds, nullptr, ResetBounds{});
  b.Reset(ob.obs.data(), seeds, nullptr, ResetBounds{});
  REQUIRE(oa.obs == ob.obs);
  REQUIRE(oa.obs[0] != oa.obs[6]);  // envs differ
  ResetBounds wide;
  wide.low = -1.0;
  wide.high = 1.0;
  a.Reset(oa.obs.data(), seeds, nullptr, wide);
  REQUIRE(oa.obs != ob.obs);
}

TEST_CASE("environment errors name the cause", "[kernels][envs]") {
  REQUIRE_THROWS_WITH(BatchedEnv("Pong-v5", Opts(1)), Catch::Contains("CartPole-v1"));
  REQUIRE_THROWS_WITH(BatchedEnv("CartPole-v1", Opts(0)), Catch::Contains("num_envs"));
  BatchedEnv env("CartPole-v1", Opts(2));
  Out o(env);
  const int64_t a[2] = {0, 5};
  REQUIRE_THROWS_WITH(env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr),
                      Catch::Contains("reset() before step()"));
  env.Reset(o.obs.data(), nullptr, nullptr, ResetBounds{});
  REQUIRE_THROWS_WITH(env.Step(a, o.obs.data(), o.rew.data(), o.term.data(), o.trunc.data(), nullptr),
                      Catch::Contains("env 1: action 5"));
  ResetBounds bad;
  bad.low = 1.0;
  bad.high = 0.0;
  REQUIRE_THROWS_WITH(env.Reset(o.obs.data(), nullptr, nullptr, bad), Catch::Contains("Lower bound"));
  REQUIRE(GetEnvInfo("Acrobot-v1").obs_dim == 6);
  REQUIRE(EnvIds().size() == 5);
}
