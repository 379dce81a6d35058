"""A custom environment, written in the script itself, registered with ``tune.register_env``
and trained with PPO on remote env runners (the class travels to them by value).

The env: a 1-D corridor of ``length`` cells; the agent starts at the left end, moves left or
right, and gets +1 at the right end (the episode ends), -0.01 per step otherwise.

    python examples/python/rllib_custom_env.py [--length 12] [--max-iters 30]
"""
import argparse

import gymnasium as gym
import numpy as np

import mpiray as ray
from mpiray import tune
from mpiray.rllib.algorithms.ppo import PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig


class Corridor(gym.Env):
    def __init__(self, config):
        self.length = config.get("length", 12)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        done = self.pos >= self.length - 1
        obs = np.array([self.pos / (self.length - 1)], np.float32)
        return obs, (1.0 if done else -0.01), done, False, {}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--length", type=int, default=12)
    p.add_argument("--max-iters", type=int, default=30)
    args = p.parse_args()
    ray.init()
    tune.register_env("corridor", lambda env_config: Corridor(env_config))
    config = (
        PPOConfig()
        .environment("corridor", env_config={"length": args.length})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=4, rollout_fragment_length=100)
        .env_runners(max_requests_in_flight_per_env_runner=1)
        .training(lr=1e-3, train_batch_size_per_learner=800, minibatch_size=100, num_epochs=4)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16]))
        .debugging(seed=0)
    )
    algo = config.build_algo()
    best_len = args.length - 1   # the fewest steps to the goal
    for i in range(args.max_iters):
        r = algo.train()
        e = r["env_runners"]
        print(f"iter {i + 1:2d}  return {e['episode_return_mean']:.3f}  mean length {e['episode_len_mean']:.1f}",
              flush=True)
        if e["episode_len_mean"] <= best_len * 1.2:
            break
    ev = algo.evaluate()["env_runners"]
    algo.stop()
    ok = ev["episode_len_mean"] <= best_len * 1.2
    print(f"greedy evaluation: mean length {ev['episode_len_mean']:.1f} (best {best_len}); "
          + ("custom env example OK" if ok else "did not learn the corridor"))
