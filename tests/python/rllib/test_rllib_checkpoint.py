"""Checkpoints (RLlib's layout), restore continuing the same curve, reproducible runs,
evaluation, and acting from a restored module."""

import json
import os

import numpy as np
import pytest
import torch

from mpiray.rllib.algorithms.algorithm import Algorithm
from mpiray.rllib.algorithms.dqn import DQNConfig
from mpiray.rllib.algorithms.ppo import PPO, PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from mpiray.rllib.core.rl_module.rl_module import RLModule

from rllib_helpers import ret, train_until

pytestmark = pytest.mark.usefixtures("ray_cluster")


def single_process_ppo(seed=3):
    """Everything in this process (num_env_runners=0): fixed seeds reproduce the run exactly."""
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=0, num_envs_per_env_runner=1, rollout_fragment_length=500)
            .training(lr=3e-4, num_epochs=4, vf_loss_coeff=0.01, train_batch_size_per_learner=500,
                      minibatch_size=100)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="tanh"))
            .debugging(seed=seed))


def curve(results):
    return [(r["env_runners"]["num_env_steps_sampled_lifetime"], r["env_runners"]["episode_return_mean"],
             r["learners"]["default_policy"]["total_loss"]) for r in results]


def test_fixed_seeds_reproduce_the_learning_curve():
    runs = []
    for _ in range(2):
        algo = single_process_ppo().build_algo()
        try:
            runs.append(curve(train_until(algo, lambda r: False, 4)))
        finally:
            algo.stop()
    assert runs[0] == runs[1]
    algo = single_process_ppo(seed=4).build_algo()
    try:
        other = curve(train_until(algo, lambda r: False, 4))
    finally:
        algo.stop()
    assert other != runs[0]


def test_checkpoint_layout_and_restore_continues_the_same_curve(tmp_path):
    # uninterrupted: 6 iterations
    algo = single_process_ppo().build_algo()
    try:
        full = curve(train_until(algo, lambda r: False, 6))
    finally:
        algo.stop()
    # interrupted after 3: save, new algorithm from the checkpoint, 3 more
    algo = single_process_ppo().build_algo()
    try:
        first = curve(train_until(algo, lambda r: False, 3))
        path = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    for f in ("rllib_checkpoint.json", "algorithm_state.pkl", "class_and_ctor_args.pkl", "env_runner/state.pkl",
              "learner_group/learner/state.pkl",
              "learner_group/learner/rl_module/default_policy/module_state.pkl",
              "learner_group/learner/rl_module/default_policy/class_and_ctor_args.pkl",
              "learner_group/learner/rl_module/default_policy/metadata.json"):
        assert os.path.exists(os.path.join(path, f)), f
    meta = json.load(open(os.path.join(path, "rllib_checkpoint.json")))
    assert meta["type"] == "Algorithm" and meta["checkpoint_version"] == "2.1"
    algo = Algorithm.from_checkpoint(path)
    try:
        assert isinstance(algo, PPO) and algo.iteration == 3
        rest = train_until(algo, lambda r: False, 3)
        assert rest[0]["training_iteration"] == 4
        second = curve(rest)
    finally:
        algo.stop()
    assert first == full[:3]
    np.testing.assert_allclose(np.array(second), np.array(full[3:]), rtol=1e-5)


def test_restore_with_remote_runners_keeps_learning(tmp_path):
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=8)
              .training(lr=3e-4, num_epochs=6, vf_loss_coeff=0.01, train_batch_size_per_learner=4000,
                        minibatch_size=128)
              .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear"))
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        results = train_until(algo, lambda r: ret(r) >= 150, 30)
        assert ret(results[-1]) >= 150
        path = algo.save_to_path(str(tmp_path / "ckpt"))
        obs = torch.tensor(np.random.default_rng(0).uniform(-0.05, 0.05, (16, 4)), dtype=torch.float32)
        ref_out = algo.get_module().forward_inference({"obs": obs})["action_dist_inputs"]
        saved_steps = results[-1]["num_env_steps_sampled_lifetime"]
    finally:
        algo.stop()
    restored = config.build_algo()
    try:
        restored.restore_from_path(path)
        out = restored.get_module().forward_inference({"obs": obs})["action_dist_inputs"]
        torch.testing.assert_close(out, ref_out)
        r = restored.train()
        # the counters and the episode window went on; the policy acts at the saved level
        assert r["num_env_steps_sampled_lifetime"] > saved_steps
        assert ret(r) >= 100
        ev = restored.evaluate()
        assert ev["env_runners"]["num_episodes"] == 10
        assert ev["env_runners"]["episode_return_mean"] >= 150
    finally:
        restored.stop()
    # the module alone, straight from the checkpoint directory
    module = RLModule.from_checkpoint(os.path.join(path, "learner_group", "learner", "rl_module", "default_policy"))
    torch.testing.assert_close(module.forward_inference({"obs": obs})["action_dist_inputs"], ref_out)
    greedy = torch.argmax(module.forward_inference({"obs": obs})["action_dist_inputs"], -1)
    assert greedy.shape == (16,)


def test_restore_into_an_algorithm_with_other_spaces_is_an_error(tmp_path):
    algo = single_process_ppo().build_algo()
    try:
        path = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    other = single_process_ppo().environment("Acrobot-v1").build_algo()
    try:
        with pytest.raises(ValueError, match="does not fit|shape"):
            other.restore_from_path(path)
    finally:
        other.stop()


def test_evaluation_interval_attaches_results_and_dqn_checkpoints(tmp_path):
    algo = (DQNConfig().environment("CartPole-v1").env_runners(num_envs_per_env_runner=2, rollout_fragment_length=8)
            .training(num_steps_sampled_before_learning_starts=100, training_intensity=2,
                      store_buffer_in_checkpoints=True)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16]))
            .reporting(min_sample_timesteps_per_iteration=200)
            .evaluation(evaluation_interval=2, evaluation_duration=3, evaluation_num_env_runners=1)
            .debugging(seed=1)).build_algo()
    try:
        r1, r2 = algo.train(), algo.train()
        assert "evaluation" not in r1
        assert r2["evaluation"]["env_runners"]["num_episodes"] == 3
        path = algo.save_to_path(str(tmp_path / "dqn"))
        stored = r2["replay_buffer"]["default_policy"]["num_env_steps_stored"]
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(path)
    try:
        assert restored._buffers["default_policy"].get_metrics()["num_env_steps_stored"] == stored
        assert restored.train()["training_iteration"] == 3
    finally:
        restored.stop()
