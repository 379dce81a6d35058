"""AlgorithmConfig builders, dict round trips and bad options (no cluster needed)."""

import gymnasium as gym
import numpy as np
import pytest

from mpiray.rllib.algorithms.algorithm_config import AlgorithmConfig
from mpiray.rllib.algorithms.appo import APPOConfig
from mpiray.rllib.algorithms.dqn import DQNConfig
from mpiray.rllib.algorithms.impala import IMPALAConfig
from mpiray.rllib.algorithms.ppo import PPO, PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from mpiray.rllib.env.utils import resolve_env
from mpiray.rllib.policy.policy import PolicySpec


def test_builders_chain_and_set_ray_names():
    c = (PPOConfig()
         .environment("CartPole-v1", env_config={})
         .framework("torch")
         .env_runners(num_env_runners=3, num_envs_per_env_runner=16, rollout_fragment_length=64)
         .learners(num_learners=0, num_gpus_per_learner=0)
         .training(lr=3e-4, gamma=0.98, lambda_=0.95, train_batch_size_per_learner=2048, minibatch_size=256,
                   num_epochs=4, clip_param=0.2, entropy_coeff=0.01, vf_loss_coeff=0.5)
         .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64, 64], fcnet_activation="relu"))
         .evaluation(evaluation_interval=2, evaluation_duration=5)
         .debugging(seed=7))
    assert isinstance(c, PPOConfig)
    assert (c.num_env_runners, c.num_envs_per_env_runner, c.rollout_fragment_length) == (3, 16, 64)
    assert (c.lr, c.gamma, c.lambda_, c.minibatch_size, c.num_epochs, c.clip_param) == (3e-4, 0.98, 0.95, 256, 4, 0.2)
    assert c.train_batch_size_per_learner == 2048 and c.total_train_batch_size == 2048
    assert c.model_config["fcnet_hiddens"] == [64, 64] and c.model_config["fcnet_activation"] == "relu"
    assert c.seed == 7 and c.evaluation_interval == 2
    d = c.to_dict()
    assert d["lambda"] == 0.95 and "lambda_" not in d
    assert d["framework"] == "torch" and d["train_batch_size_per_learner"] == 2048
    c2 = PPOConfig.from_dict(d)
    assert (c2.lambda_, c2.lr, c2.num_env_runners, c2.model_config["fcnet_hiddens"]) == (0.95, 3e-4, 3, [64, 64])
    assert c.copy() is not c and c.copy().lr == c.lr
    assert c["lambda"] == 0.95 and c.get("lr") == 3e-4


def test_ray_260_defaults():
    p = PPOConfig()
    assert (p.lr, p.train_batch_size, p.minibatch_size, p.num_epochs, p.lambda_, p.clip_param, p.vf_clip_param,
            p.kl_coeff, p.kl_target, p.use_kl_loss, p.num_env_runners, p.rollout_fragment_length) == (
        5e-5, 4000, 128, 30, 1.0, 0.3, 10.0, 0.2, 0.01, True, 2, "auto")
    d = DQNConfig()
    assert (d.lr, d.train_batch_size, d.target_network_update_freq, d.double_q, d.dueling, d.n_step,
            d.num_steps_sampled_before_learning_starts, d.num_env_runners) == (5e-4, 32, 500, True, True, 1, 1000, 0)
    assert d.replay_buffer_config["type"] == "PrioritizedEpisodeReplayBuffer"
    i = IMPALAConfig()
    assert (i.lr, i.train_batch_size, i.rollout_fragment_length, i.vf_loss_coeff, i.entropy_coeff, i.grad_clip,
            i.num_learners) == (5e-4, 500, 50, 0.5, 0.01, 40.0, 1)
    a = APPOConfig()
    assert (a.clip_param, a.use_kl_loss, a.target_network_update_freq, a.circular_buffer_num_batches,
            a.circular_buffer_iterations_per_batch) == (0.4, False, 2, 8, 2)


def test_unknown_options_list_the_valid_ones():
    with pytest.raises(ValueError) as e:
        PPOConfig().training(lamda=0.9)
    msg = str(e.value)
    assert "lamda" in msg and "did you mean 'lambda_'" in msg and "clip_param" in msg and "minibatch_size" in msg
    with pytest.raises(ValueError, match="num_env_runners"):
        PPOConfig().env_runners(num_workers_per_runner=2)
    with pytest.raises(ValueError, match="unknown option"):
        DQNConfig().training(clip_param=0.2)   # a PPO option is not a DQN one
    with pytest.raises(ValueError) as e:
        PPOConfig().update_from_dict({"lr": 1e-3, "num_sgd_itr": 3})
    assert "num_sgd_itr" in str(e.value) and "num_epochs" in str(e.value)
    with pytest.raises(ValueError, match="torch"):
        PPOConfig().framework("tf2")
    with pytest.raises(ValueError, match="new API stack"):
        PPOConfig().api_stack(enable_rl_module_and_learner=False)
    with pytest.raises(ValueError, match="fcnet_hidens"):
        PPOConfig().rl_module(model_config={"fcnet_hidens": [8]})


def test_validate_rejects_values_that_cannot_work():
    with pytest.raises(ValueError, match="minibatch_size"):
        PPOConfig().training(train_batch_size_per_learner=100, minibatch_size=200).validate()
    with pytest.raises(ValueError, match="num_envs_per_env_runner"):
        PPOConfig().env_runners(num_envs_per_env_runner=0).validate()
    with pytest.raises(ValueError, match="rollout_fragment_length"):
        PPOConfig().env_runners(rollout_fragment_length=-3).validate()
    with pytest.raises(ValueError, match="LSTM|use_lstm"):
        PPOConfig().rl_module(model_config=DefaultModelConfig(use_lstm=True)).validate()
    with pytest.raises(ValueError, match="num_atoms"):
        DQNConfig().training(num_atoms=51).validate()


def test_rollout_fragment_auto_and_multi_agent_policies():
    c = PPOConfig().env_runners(num_env_runners=2, num_envs_per_env_runner=8).training(
        train_batch_size_per_learner=4000)
    assert c.get_rollout_fragment_length() == 250
    c = PPOConfig().multi_agent(policies={"a", "b"}, policy_mapping_fn=lambda aid, ep, **kw: "a")
    assert c.is_multi_agent and set(c.policies) == {"a", "b"}
    c = PPOConfig().multi_agent(policies={"a": PolicySpec(config={"lr": 0.1}), "b": None},
                                policy_mapping_fn=lambda aid, ep, **kw: aid)
    assert c.get_config_for_module("a").lr == 0.1 and c.get_config_for_module("b").lr == c.lr
    assert DQNConfig().get_rollout_fragment_length() == 1  # RLlib's "auto" for DQN: n_step


def test_env_resolution_errors_name_the_cause():
    with pytest.raises(ValueError) as e:
        resolve_env("CartPol-v1", {}, {"my_env": lambda c: None})
    msg = str(e.value)
    assert "CartPol-v1" in msg and "my_env" in msg and "CartPole-v1" in msg  # registered + nearest ids
    with pytest.raises(ValueError, match="No environment"):
        resolve_env(None, {}, {})
    spec = resolve_env("my_env", {"a": 1}, {"my_env": lambda c: None})
    assert spec.kind == "creator" and spec.env_config == {"a": 1}
    assert resolve_env("Pendulum-v1", {}, {}).kind == "gym"


def test_spaces_declared_in_the_config_must_match_the_env():
    c = PPOConfig().environment("CartPole-v1", observation_space=gym.spaces.Box(-1, 1, (3,), np.float32))
    with pytest.raises(ValueError, match="do not match"):
        c._check_spaces("default_policy", gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
                        gym.spaces.Discrete(2), "CartPole-v1")


def test_registry_and_tune_registration():
    import mpiray.rllib  # noqa: F401  (registers the algorithms)
    from mpiray.rllib.algorithms import get_algorithm_class
    from mpiray.tune import trainable as tt
    assert get_algorithm_class("PPO") is PPO
    with pytest.raises(ValueError, match="PPO"):
        get_algorithm_class("PPOO")
    for name in ("PPO", "DQN", "IMPALA", "APPO"):
        cls = tt.get_trainable_cls(name)
        assert issubclass(cls, get_algorithm_class(name))
    assert isinstance(AlgorithmConfig(), AlgorithmConfig)
