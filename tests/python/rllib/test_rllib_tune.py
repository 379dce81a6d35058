"""RLlib under Tune: ``Tuner("PPO", param_space=config)`` with an env registered in the
driver, and PBT over a PPO config (exploits restore the donor's RLlib checkpoint)."""

import sys

import cloudpickle
import gymnasium as gym
import pytest

from mpiray import tune
from mpiray.rllib.algorithms.ppo import PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from mpiray.tune.schedulers import PopulationBasedTraining

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.usefixtures("ray_cluster")


def small_config(env="CartPole-v1", runners=0):
    return (PPOConfig().environment(env)
            .env_runners(num_env_runners=runners, num_envs_per_env_runner=4)
            .training(lr=1e-3, num_epochs=2, train_batch_size_per_learner=400, minibatch_size=100)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16]))
            .debugging(seed=0))


@pytest.mark.timeout(300)
def test_tuner_runs_ppo_by_name_on_a_registered_env(tmp_path):
    made = []
    tune.register_env("tuned_cartpole", lambda cfg: made.append(1) or gym.make("CartPole-v1"))
    config = small_config("tuned_cartpole", runners=1)
    grid = tune.Tuner("PPO", param_space=config,
                      tune_config=tune.TuneConfig(metric="env_runners/episode_return_mean", mode="max"),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="ppo",
                                                stop={"training_iteration": 3}, verbose=0)).fit()
    assert grid.num_errors == 0, [r.error for r in grid]
    r = grid[0]
    assert r.metrics["training_iteration"] == 3
    # rows that only reset an env are not env steps: a little under 3 x 400
    assert r.metrics["env_runners"]["num_env_steps_sampled_lifetime"] >= 3 * 400 * 0.9
    assert "total_loss" in r.metrics["learners"]["default_policy"]
    assert r.metrics["env_runners"]["episode_return_mean"] > 0


@pytest.mark.timeout(400)
def test_pbt_over_a_ppo_config(tmp_path):
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                  hyperparam_mutations={"lr": [1e-4, 1e-3, 3e-3]}, quantile_fraction=0.5,
                                  resample_probability=0.0, synch=True)
    def flat_metric(algorithm, result, **kwargs):
        # mpiray.tune's schedulers read top-level keys (Ray's flatten the result first)
        result["episode_return_mean"] = result["env_runners"]["episode_return_mean"]

    config = small_config().callbacks(on_train_result=flat_metric).to_dict()
    config["lr"] = tune.grid_search([1e-5, 3e-3])
    grid = tune.Tuner("PPO", param_space=config,
                      tune_config=tune.TuneConfig(metric="episode_return_mean", mode="max", scheduler=pbt),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="pbt", stop={"training_iteration": 6},
                                                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
                                                verbose=0)).fit()
    assert grid.num_errors == 0, [r.error for r in grid]
    assert grid.num_terminated == 2
    assert pbt.exploits, "PBT never exploited"
    for r in grid:
        assert r.metrics["training_iteration"] == 6
