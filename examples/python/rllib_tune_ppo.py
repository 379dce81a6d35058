"""Tune over RLlib's PPO, as in Ray: ``Tuner("PPO", param_space=config)`` with a grid over the
learning rate, then Population Based Training mutating it. Each trial is an actor that builds
its own env runners and learner.

    python examples/python/rllib_tune_ppo.py [storage_dir] [--iters 8]
"""
import argparse
import os
import tempfile

import mpiray as ray
from mpiray import tune
from mpiray.rllib.algorithms.ppo import PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from mpiray.tune.schedulers import PopulationBasedTraining

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("storage", nargs="?", default=os.path.join(tempfile.gettempdir(), "rllib_tune_ppo"))
    p.add_argument("--iters", type=int, default=8)
    args = p.parse_args()
    ray.init()

    def flat_metric(algorithm, result, **kwargs):
        # mpiray.tune's schedulers and ResultGrid read top-level result keys (Ray flattens the
        # result first, so there "env_runners/episode_return_mean" works as the metric)
        result["episode_return_mean"] = result["env_runners"]["episode_return_mean"]

    config = (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=0, num_envs_per_env_runner=8)   # sampling inside each trial
        .training(lr=tune.grid_search([1e-4, 1e-3]), num_epochs=4, vf_loss_coeff=0.01,
                  train_batch_size_per_learner=1000, minibatch_size=128)
        .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear"))
        .callbacks(on_train_result=flat_metric)
    )
    metric = "episode_return_mean"
    grid = tune.Tuner("PPO", param_space=config,
                      tune_config=tune.TuneConfig(metric=metric, mode="max"),
                      run_config=tune.RunConfig(storage_path=args.storage, name="grid",
                                                stop={"training_iteration": args.iters})).fit()
    best = grid.get_best_result()
    print(f"grid: best lr {best.config['lr']} return {best.metrics[metric]:.1f}")

    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": [1e-4, 3e-4, 1e-3, 3e-3]}, quantile_fraction=0.5)
    space = config.to_dict()
    space["lr"] = tune.grid_search([1e-5, 1e-3])
    grid = tune.Tuner("PPO", param_space=space,
                      tune_config=tune.TuneConfig(metric=metric, mode="max", scheduler=pbt),
                      run_config=tune.RunConfig(storage_path=args.storage, name="pbt",
                                                stop={"training_iteration": args.iters},
                                                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1))).fit()
    best = grid.get_best_result()
    print(f"pbt: best return {best.metrics[metric]:.1f} "
          f"({len(pbt.exploits)} exploits); rllib tune example OK")
