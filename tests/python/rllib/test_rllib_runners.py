"""Env runners: which vector env they pick (Kokkos or Gymnasium), the rollout layout the
learners rely on (checked against GAE computed episode by episode), episode accounting, the
numpy forward pass against the torch module, and weights through the object store."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import mpiray as ray
from mpiray.kernels import gae
from mpiray.rllib.algorithms.ppo import PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig
from mpiray.rllib.env._policy import ModulePolicy
from mpiray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from mpiray.rllib.env.utils import resolve_env


def runner(env="CartPole-v1", num_envs=3, kokkos=True, env_config=None, seed=5):
    cfg = (PPOConfig().environment(env, env_config=env_config or {})
           .env_runners(num_envs_per_env_runner=num_envs, kokkos_vector_env=kokkos)
           .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[16]))
           .debugging(seed=seed))
    cfg._env_spec = resolve_env(cfg.env, cfg.env_config, {})
    return SingleAgentEnvRunner(cfg, worker_index=1, num_workers=1)


def test_kokkos_env_chosen_for_its_ids_when_vectorised():
    assert runner("CartPole-v1", 4).uses_kokkos
    assert runner("Pendulum-v1", 2).uses_kokkos
    assert runner("Acrobot-v1", 2).uses_kokkos
    assert not runner("CartPole-v1", 1).uses_kokkos               # one env: Gymnasium's
    assert not runner("CartPole-v1", 4, kokkos=False).uses_kokkos   # the flag turns it off
    assert not runner("CartPole-v1", 4, env_config={"render_mode": None}).uses_kokkos  # an option it lacks
    a, b = runner("CartPole-v1", 4), runner("CartPole-v1", 4, kokkos=False)
    assert a.observation_space == b.observation_space and a.action_space == b.action_space


def _reference_gae(batch, values, boot, gamma, lam):
    """GAE from the transitions, episode by episode (no vector-env layout knowledge)."""
    T, N = batch["valid"].shape
    adv = np.full((T, N), np.nan)
    for n in range(N):
        nxt = 0.0
        for t in range(T - 1, -1, -1):
            if not batch["valid"][t, n]:
                nxt = 0.0
                continue
            v_next = values[t + 1, n] if t + 1 < T else boot[n]    # obs after the step
            term, trunc = batch["terminateds"][t, n], batch["truncateds"][t, n]
            delta = batch["rewards"][t, n] + gamma * (0.0 if term else v_next) - values[t, n]
            nxt = delta + (0.0 if (term or trunc) else gamma * lam * nxt)
            adv[t, n] = nxt
    return adv


@pytest.mark.parametrize("kokkos", [True, False], ids=["kokkos", "gymnasium"])
def test_rollout_layout_gives_per_episode_gae(kokkos):
    r = runner("CartPole-v1", 3, kokkos=kokkos, env_config={"max_episode_steps": 20})
    assert r.uses_kokkos == kokkos
    out = r.sample(num_timesteps=120)
    b = out["batches"]["default_policy"]
    T, N = b["valid"].shape
    assert (T, N) == (120, 3) and b["obs"].shape == (120, 3, 4) and b["bootstrap_obs"].shape == (3, 4)
    assert b["truncateds"].any() and b["terminateds"].any() or b["truncateds"].sum() >= 3
    # a row after a done row only resets: invalid, reward 0
    done = b["terminateds"] | b["truncateds"]
    assert not b["valid"][1:][done[:-1]].any() and (b["rewards"][~b["valid"]] == 0).all()
    # episodes: CartPole pays 1 per step; truncated ones are 20 steps long
    ep = out["metrics"]["episodes"]
    assert ep["returns"] == [float(x) for x in ep["lengths"]] and max(ep["lengths"]) == 20
    assert out["metrics"]["num_env_steps_sampled"] == int(b["valid"].sum())
    rng = np.random.default_rng(0)
    values = rng.normal(size=(T, N)).astype(np.float32)
    boot = rng.normal(size=N).astype(np.float32)
    adv, _ = gae(b["rewards"], values, b["terminateds"], b["truncateds"], bootstrap_values=boot, gamma=0.9,
                 lambda_=0.8)
    ref = _reference_gae(b, values, boot, 0.9, 0.8)
    m = b["valid"]
    np.testing.assert_allclose(adv[m], ref[m], rtol=1e-4, atol=1e-5)


def test_kokkos_and_gymnasium_envs_have_the_same_dynamics_under_the_runner():
    """Random-policy CartPole episodes: same length distribution (the kernels' own tests
    compare the dynamics step by step)."""
    lens = {}
    for kokkos in (True, False):
        r = runner("CartPole-v1", 16, kokkos=kokkos, seed=11)
        ls = []
        for _ in range(10):
            ls += r.sample(num_timesteps=100, random_actions=True)["metrics"]["episodes"]["lengths"]
        lens[kokkos] = np.array(ls)
    assert len(lens[True]) > 300 and len(lens[False]) > 300
    # random CartPole episodes last ~22 steps; the two means agree within a few standard errors
    se = np.sqrt(lens[True].var() / len(lens[True]) + lens[False].var() / len(lens[False]))
    assert abs(lens[True].mean() - lens[False].mean()) < 4 * se
    assert 15 < lens[True].mean() < 30


@pytest.mark.parametrize("env,cfg", [("CartPole-v1", {}), ("Pendulum-v1", {"fcnet_activation": "relu"}),
                                     ("CartPole-v1", {"fcnet_use_layernorm": True, "vf_share_layers": False})])
def test_numpy_forward_matches_the_torch_module(env, cfg):
    r = runner(env, 2)
    pol = r.policies["default_policy"]
    module = (PPOConfig().rl_module(model_config=DefaultModelConfig(**cfg)).get_rl_module_spec(
        "default_policy", pol.obs_space, pol.action_space).build())
    fast = ModulePolicy(module, pol.obs_space, pol.action_space)
    slow = ModulePolicy(module, pol.obs_space, pol.action_space, numpy_fast_path=False)
    assert fast._ops is not None and slow._ops is None
    obs = np.stack([pol.obs_space.sample() for _ in range(64)])
    np.testing.assert_allclose(fast.forward(obs), slow.forward(obs), rtol=1e-5, atol=1e-6)


def test_weights_reach_remote_runners_through_one_object(ray_cluster):
    cfg = (PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2, num_envs_per_env_runner=2)
           .training(train_batch_size_per_learner=200, minibatch_size=50, num_epochs=1)
           .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[8])).debugging(seed=0))
    algo = cfg.build_algo()
    try:
        algo.train()
        ref = algo._weights
        assert isinstance(ref, ray.ObjectRef)     # one object for all runners
        seqs = algo.env_runner_group.foreach_env_runner(lambda r: r.weights_seq_no)
        assert seqs == [algo._weights_seq_no - 1] * 2   # they sampled with the weights before the update
        algo.env_runner_group.sample(ref, algo._weights_seq_no)   # the next sample call brings the new ones
        learner_w = algo.get_module().get_state()
        published = ray.get(ref)["default_policy"]
        runner_ws = algo.env_runner_group.foreach_env_runner(lambda r: r.get_weights()["default_policy"])
        for w in runner_ws:
            for k, v in w.items():
                np.testing.assert_array_equal(v, learner_w[k])
                np.testing.assert_array_equal(v, published[k])
        assert algo.env_runner_group.foreach_env_runner(lambda r: r.weights_seq_no) == [algo._weights_seq_no] * 2
        # the runners live in other processes, spread over the workers
        hosts = algo.env_runner_group.foreach_env_runner(lambda r: r.get_host())
        assert len({h["pid"] for h in hosts}) == 2
    finally:
        algo.stop()


def test_discrete_observations_are_one_hot():
    r = runner("FrozenLake-v1", 2, env_config={"is_slippery": False})
    out = r.sample(num_timesteps=30)
    b = out["batches"]["default_policy"]
    assert b["obs"].dtype.kind in "iu" and b["obs"].shape == (30, 2)
    pol = r.policies["default_policy"]
    assert pol.forward(b["obs"][0]).shape == (2, 4)
    torch_out = pol.module.forward_inference({"obs": torch.as_tensor(b["obs"][0])})["action_dist_inputs"]
    np.testing.assert_allclose(pol.forward(b["obs"][0]), torch_out.numpy(), rtol=1e-5, atol=1e-6)
    _ = gym
