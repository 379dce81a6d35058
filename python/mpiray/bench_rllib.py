"""RLlib benchmark suite (``python -m mpiray.bench --suite rllib [--against-ray] [--quick]``).

The same workload on mpiray.rllib and on RLlib (Ray's, new API stack), each backend in its
own process with ``init(num_cpus=2)``: PPO on CartPole-v1, 2 env runners with
``num_envs_per_env_runner`` envs each (8; ``--num-envs``), and RLlib's tuned CartPole
hyper-parameters (lr 3e-4, 6 epochs, minibatch 128, train batch 4000, vf_loss_coeff 0.01,
one linear layer of 32, shared value layers), the local learner in the driver.

* ``ppo_time_to_475_s``: wall time of ``train()`` calls until ``env_runners/episode_return_mean``
  (the mean return of the last 100 episodes) reaches 475; the median of 3 seeds (``--quick``: 1).
  A run that does not get there within the cap (``--time-cap``) reports the cap and
  ``ppo_time_to_475_reached: false``.
* ``ppo_env_steps_per_s``: env steps sampled and trained per second of those runs, end to end
  (the median over the seeds).
* ``sampling_env_steps_per_s``: the two env runners alone, sampling rollout fragments with
  fixed weights (no learner), and ``sampling_us_per_env_step`` (one runner's wall time per
  env step).
* mpiray only, in this process: the sampling path's parts per env step, Kokkos env step and
  the policy's forward pass, at the benchmark's ``num_envs`` and at 1024 envs
  (``kokkos_env_us_per_env_step``, ``policy_forward_us_per_env_step``, ``runner_us_per_env_step``).
"""

import json
import os
import statistics
import subprocess
import sys
import time

HPARAMS = {"lr": 3e-4, "num_epochs": 6, "vf_loss_coeff": 0.01, "train_batch_size_per_learner": 4000,
           "minibatch_size": 128}
MODEL = {"fcnet_hiddens": [32], "fcnet_activation": "linear", "vf_share_layers": True}


def _config(backend, seed, num_envs):
    if backend == "ray":
        from ray.rllib.algorithms.ppo import PPOConfig
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    else:
        from mpiray.rllib.algorithms.ppo import PPOConfig
        from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=2, num_envs_per_env_runner=num_envs)
            .training(**HPARAMS)
            .rl_module(model_config=DefaultModelConfig(**MODEL))
            .debugging(seed=seed))


def _time_to_475(backend, seed, num_envs, cap):
    algo = _config(backend, seed, num_envs).build_algo()
    try:
        algo.train()  # warm-up iteration (imports, first forward passes) is not timed
        t0 = time.perf_counter()
        steps0 = None
        reached = False
        its = 0
        while time.perf_counter() - t0 < cap:
            r = algo.train()
            its += 1
            e = r["env_runners"]
            if steps0 is None:
                steps0 = e["num_env_steps_sampled_lifetime"] - e["num_env_steps_sampled"]
            ret = e.get("episode_return_mean", float("nan"))
            if ret == ret and ret >= 475:
                reached = True
                break
        wall = time.perf_counter() - t0
        steps = e["num_env_steps_sampled_lifetime"] - steps0
        print(f"  [{backend}] seed {seed}: return {ret:.1f} after {wall:.1f} s, {steps} env steps, {its} iterations",
              file=sys.stderr, flush=True)
        return {"time_s": wall, "reached": reached, "env_steps": steps, "env_steps_per_s": steps / wall}
    finally:
        algo.stop()


def _sampling(backend, num_envs, rounds):
    algo = _config(backend, 0, num_envs).build_algo()
    try:
        if backend == "ray":
            group = algo.env_runner_group

            def once():
                eps = group.foreach_env_runner(lambda er: er.sample(), local_env_runner=False)
                return sum(sum(len(e) for e in ep) for ep in eps)
        else:
            group = algo.env_runner_group

            def once():
                return sum(m["num_env_steps_sampled"] for _, m in group.sample(algo._weights, algo._weights_seq_no))
        once()
        t0 = time.perf_counter()
        steps = sum(once() for _ in range(rounds))
        wall = time.perf_counter() - t0
        return {"sampling_env_steps_per_s": steps / wall, "sampling_us_per_env_step": 1e6 * wall / (steps / 2)}
    finally:
        algo.stop()


def _path_parts(num_envs):
    """mpiray's sampling path per env step: Kokkos env, policy forward, the runner's loop."""
    import numpy as np
    import gymnasium as gym
    from mpiray.kernels.envs import make_vec
    from mpiray.rllib.algorithms.ppo import PPOConfig
    from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from mpiray.rllib.env._policy import ModulePolicy
    from mpiray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
    from mpiray.rllib.env.utils import resolve_env
    from mpiray.rllib.utils._threads import limit_threads
    limit_threads(1)
    out = {}
    for n in sorted({num_envs, 1024}):
        env = make_vec("CartPole-v1", num_envs=n)
        env.reset(seed=0)
        acts = np.zeros(n, np.int64)
        reps = max(20, 40000 // n)
        for _ in range(5):
            env.step(acts)
        t = time.perf_counter()
        for _ in range(reps):
            env.step(acts)
        env_us = 1e6 * (time.perf_counter() - t) / (reps * n)
        cfg = PPOConfig().rl_module(model_config=DefaultModelConfig(**MODEL))
        obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        module = cfg.get_rl_module_spec("default_policy", obs_space, gym.spaces.Discrete(2)).build()
        pol = ModulePolicy(module, obs_space, gym.spaces.Discrete(2))
        obs = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
        rng = np.random.default_rng(0)
        for _ in range(5):
            pol.act(obs, rng)
        t = time.perf_counter()
        for _ in range(reps):
            pol.act(obs, rng)
        pol_us = 1e6 * (time.perf_counter() - t) / (reps * n)
        rc = (PPOConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=n)
              .rl_module(model_config=DefaultModelConfig(**MODEL)).debugging(seed=0))
        rc._env_spec = resolve_env("CartPole-v1", {}, {})
        runner = SingleAgentEnvRunner(rc, worker_index=1, num_workers=1)
        T = max(10, 40000 // n)
        runner.sample(num_timesteps=T)
        t = time.perf_counter()
        runner.sample(num_timesteps=T)
        run_us = 1e6 * (time.perf_counter() - t) / (T * n)
        out[f"kokkos_env_us_per_env_step_{n}envs"] = env_us
        out[f"policy_forward_us_per_env_step_{n}envs"] = pol_us
        out[f"runner_us_per_env_step_{n}envs"] = run_us
        print(f"  [mpiray] {n} envs per runner: Kokkos env {env_us:.3f} us + policy {pol_us:.3f} us per env step; "
              f"the runner's whole loop {run_us:.3f} us", file=sys.stderr, flush=True)
    return out


def run_backend(backend, quick, num_envs, cap):
    import importlib
    ray = importlib.import_module(backend)
    if backend == "ray":
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(num_cpus=2)
    try:
        seeds = [0] if quick else [0, 1, 2]
        runs = [_time_to_475(backend, s, num_envs, cap) for s in seeds]
        out = {"ppo_time_to_475_s": statistics.median(r["time_s"] for r in runs),
               "ppo_time_to_475_reached": all(r["reached"] for r in runs),
               "ppo_time_to_475_s_per_seed": [r["time_s"] for r in runs],
               "ppo_env_steps_per_s": statistics.median(r["env_steps_per_s"] for r in runs)}
        out.update(_sampling(backend, num_envs, 3 if quick else 10))
    finally:
        ray.shutdown()
    if backend == "mpiray":
        out.update(_path_parts(num_envs))
    return out


def run_suite(against_ray, quick, num_envs=8, cap=None):
    cap = cap or (600.0 if quick else 1200.0)

    def child(backend):
        cmd = [sys.executable, "-m", "mpiray.bench_rllib", "--backend", backend, "--num-envs", str(num_envs),
               "--time-cap", str(cap)] + (["--quick"] if quick else [])
        env = dict(os.environ, RLLIB_TEST_NO_TF_IMPORT="1", PYTHONWARNINGS="ignore")
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True, text=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    ours = child("mpiray")
    config = {"algorithm": "PPO", "env": "CartPole-v1", "num_env_runners": 2, "num_envs_per_env_runner": num_envs,
              **HPARAMS, "model": MODEL, "seeds": 1 if quick else 3, "time_cap_s": cap}
    if not against_ray:
        return {"mpiray": ours, "config": config, "cores": os.cpu_count()}
    theirs = child("ray")
    ratio = {}
    for k in ("ppo_env_steps_per_s", "sampling_env_steps_per_s"):
        if theirs.get(k) and ours.get(k):
            ratio[k] = ours[k] / theirs[k]
    if theirs.get("ppo_time_to_475_s") and ours.get("ppo_time_to_475_s"):
        # theirs / ours (how many times faster); a lower bound when Ray did not reach 475 in the cap
        ratio["ppo_time_to_475_s"] = theirs["ppo_time_to_475_s"] / ours["ppo_time_to_475_s"]
        ratio["ppo_time_to_475_is_lower_bound"] = not theirs.get("ppo_time_to_475_reached", True)
    if theirs.get("sampling_us_per_env_step") and ours.get("sampling_us_per_env_step"):
        ratio["sampling_us_per_env_step"] = theirs["sampling_us_per_env_step"] / ours["sampling_us_per_env_step"]
    return {"mpiray": ours, "ray": theirs, "ratio": ratio, "config": config, "cores": os.cpu_count()}


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--backend", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--time-cap", type=float, default=1200.0)
    a = p.parse_args()
    print(json.dumps(run_backend(a.backend, a.quick, a.num_envs, a.time_cap)))
