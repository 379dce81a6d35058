"""An RLlib script that runs unchanged on mpiray: PPO on CartPole-v1 with 2 env runners whose
16 envs each step in one Kokkos kernel (mpiray's batched CartPole), until the mean return of
the last 100 episodes reaches 475; then a checkpoint, and acting greedily from the restored
module.

    python examples/python/rllib_ppo_cartpole.py [--target 475] [--max-iters 100]
    srun --mpi=pmix python examples/python/rllib_ppo_cartpole.py   # env runners across the nodes
"""
import argparse
import tempfile
import time

import numpy as np
import torch

import mpiray as ray                                                      # was: import ray
from mpiray.rllib.algorithms.algorithm import Algorithm                   # was: from ray.rllib...
from mpiray.rllib.algorithms.ppo import PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--target", type=float, default=475.0)
    p.add_argument("--max-iters", type=int, default=100)
    args = p.parse_args()
    ray.init()
    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=2, num_envs_per_env_runner=16)   # > 1: Kokkos batched envs
        .training(lr=3e-4, num_epochs=6, vf_loss_coeff=0.01, train_batch_size_per_learner=4000,
                  minibatch_size=128)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear"))
        .debugging(seed=0)
    )
    algo = config.build_algo()
    t0 = time.time()
    for i in range(args.max_iters):
        result = algo.train()
        ret = result["env_runners"]["episode_return_mean"]
        steps = result["env_runners"]["num_env_steps_sampled_lifetime"]
        print(f"iter {i + 1:3d}  return {ret:6.1f}  env steps {steps:7d}  "
              f"loss {result['learners']['default_policy']['total_loss']:.3f}  {time.time() - t0:5.1f} s", flush=True)
        if ret >= args.target:
            break
    path = algo.save_to_path(tempfile.mkdtemp(prefix="ppo_cartpole_"))
    algo.stop()

    restored = Algorithm.from_checkpoint(path)
    module = restored.get_module()
    import gymnasium as gym
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=123)
    total, done = 0.0, False
    while not done:
        logits = module.forward_inference({"obs": torch.from_numpy(np.asarray(obs)[None])})["action_dist_inputs"]
        obs, r, term, trunc, _ = env.step(int(torch.argmax(logits, -1)[0]))
        total += r
        done = term or trunc
    restored.stop()
    print(f"checkpoint {path}; greedy episode from the restored module: return {total:.0f}; "
          f"rllib example OK" if ret >= args.target else "target not reached")
