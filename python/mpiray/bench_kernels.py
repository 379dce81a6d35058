"""Throughputs of the Kokkos kernels (libs/kernels), as JSON; part of
``python -m mpiray.bench --suite collective`` (see bench_collective.py), or alone:

    python -m mpiray.bench_kernels [--quick]

Keys (millions of env steps or rollout steps per second, higher is better):
  gae_msteps_per_s                    mpiray.kernels.gae on a [128, 4096] float32 rollout
  numpy_gae_msteps_per_s              the same with a numpy loop over T (vectorised over N)
  cartpole_vec_msteps_per_s           mpiray.kernels.envs.make_vec("CartPole-v1", 4096).step
  gymnasium_cartpole_vec_msteps_per_s gymnasium.make_vec("CartPole-v1", 4096).step (Gymnasium's
                                      own numpy-vectorised CartPoleVectorEnv, its default)
  gymnasium_sync_cartpole_vec_msteps_per_s  SyncVectorEnv of 4096 gymnasium.make envs
  cartpole_vs_gymnasium               cartpole_vec / gymnasium_cartpole_vec

Each workload runs in short windows, alternating with its comparison, and keeps the best
window (the machine may be shared); actions are random, so episodes end and reset as in
training.
"""

import argparse
import json
import sys
import time

import numpy as np

NUM_ENVS = 4096
GAE_SHAPE = (128, 4096)


def _best_rate(fns, window, rounds):
    """{name: best units/s} over `rounds` alternating windows of each fn(n) -> units."""
    best = {name: 0.0 for name in fns}
    for _ in range(rounds):
        for name, (fn, units_per_call) in fns.items():
            fn(1)  # warm
            calls, start = 0, time.perf_counter()
            while True:
                fn(4)
                calls += 4
                dt = time.perf_counter() - start
                if dt >= window:
                    break
            best[name] = max(best[name], calls * units_per_call / dt)
    return best


def _numpy_gae(rewards, values, terminated, truncated, bootstrap, gamma=0.99, lam=0.95):
    T = rewards.shape[0]
    adv = np.empty_like(rewards)
    next_adv = np.zeros(rewards.shape[1], rewards.dtype)
    next_value = bootstrap
    for t in range(T - 1, -1, -1):
        nonterm = 1.0 - terminated[t]
        delta = rewards[t] + gamma * nonterm * next_value - values[t]
        next_adv = delta + gamma * lam * nonterm * (1.0 - truncated[t]) * next_adv
        adv[t] = next_adv
        next_value = values[t]
    return adv, adv + values


def gae_rates(window=0.3, rounds=3):
    from mpiray import kernels
    rng = np.random.default_rng(0)
    T, N = GAE_SHAPE
    rew = rng.normal(size=(T, N)).astype(np.float32)
    val = rng.normal(size=(T, N)).astype(np.float32)
    u = rng.random((T, N))
    term, trunc = u < 0.02, (u >= 0.02) & (u < 0.03)
    boot = rng.normal(size=N).astype(np.float32)
    termf, truncf = term.astype(np.float32), trunc.astype(np.float32)

    def ours(k):
        for _ in range(k):
            kernels.gae(rew, val, term, trunc, bootstrap_values=boot)

    def ref(k):
        for _ in range(k):
            _numpy_gae(rew, val, termf, truncf, boot)

    best = _best_rate({"ours": (ours, T * N), "numpy": (ref, T * N)}, window, rounds)
    return {"gae_msteps_per_s": best["ours"] / 1e6, "numpy_gae_msteps_per_s": best["numpy"] / 1e6}


def cartpole_rates(window=0.5, rounds=3, sync=True):
    import gymnasium as gym
    from mpiray.kernels.envs import make_vec
    ours = make_vec("CartPole-v1", num_envs=NUM_ENVS)
    theirs = gym.make_vec("CartPole-v1", num_envs=NUM_ENVS)
    ours.reset(seed=0)
    theirs.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 2, NUM_ENVS) for _ in range(16)]

    def stepper(env):
        i = [0]

        def step(k):
            for _ in range(k):
                env.step(actions[i[0] % 16])
                i[0] += 1
        return step

    best = _best_rate({"ours": (stepper(ours), NUM_ENVS), "gym": (stepper(theirs), NUM_ENVS)},
                      window, rounds)
    out = {"cartpole_vec_msteps_per_s": best["ours"] / 1e6,
           "gymnasium_cartpole_vec_msteps_per_s": best["gym"] / 1e6}
    if sync:
        sync_env = gym.make_vec("CartPole-v1", num_envs=NUM_ENVS, vectorization_mode="sync")
        sync_env.reset(seed=0)
        out["gymnasium_sync_cartpole_vec_msteps_per_s"] = _best_rate(
            {"sync": (stepper(sync_env), NUM_ENVS)}, window, 1)["sync"] / 1e6
        sync_env.close()
    out["cartpole_vs_gymnasium"] = out["cartpole_vec_msteps_per_s"] / out[
        "gymnasium_cartpole_vec_msteps_per_s"]
    ours.close()
    theirs.close()
    return out


def run(quick=False):
    """The kernel keys of the collective suite (an empty dict when mpiray.kernels is not built)."""
    try:
        from mpiray import kernels
    except ImportError as e:
        print(f"[bench_kernels] skipped: {e}", file=sys.stderr)
        return {}
    window, rounds = (0.2, 2) if quick else (0.5, 4)
    out = {"kernels_backend": kernels.backend()}
    out.update(gae_rates(window, rounds))
    try:
        out.update(cartpole_rates(window, rounds))
    except ImportError as e:  # gymnasium missing
        print(f"[bench_kernels] CartPole skipped: {e}", file=sys.stderr)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpiray.bench_kernels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter windows")
    args = p.parse_args(argv)
    print(json.dumps(run(quick=args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
