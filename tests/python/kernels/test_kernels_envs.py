"""mpiray.kernels.envs against Gymnasium, step by step.

Each test runs our batched env beside Gymnasium's SyncVectorEnv of ``gymnasium.make`` envs
(TimeLimit included). Before every step Gymnasium's envs are put into our exact states (and
elapsed steps), both step with the same actions, and observations, rewards, terminations,
truncations, the next states and the autoreset bookkeeping must agree. Every few steps all
states are redrawn from a wide distribution, so that terminations (goal reached, pole fallen,
tip raised) and time limits happen often; in between, episodes run on.
"""

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")
kernels = pytest.importorskip("mpiray.kernels")
from gymnasium.vector import AutoresetMode, SyncVectorEnv  # noqa: E402

from mpiray.kernels.envs import ENV_IDS, make_vec  # noqa: E402

PI = np.pi

# Wide random states per id (beyond the reset distribution, to reach every end condition).
WIDE_STATES = {
    "CartPole-v1": lambda rng, n: rng.uniform([-2.5, -2, -0.22, -2.5], [2.5, 2, 0.22, 2.5], (n, 4)),
    "Pendulum-v1": lambda rng, n: rng.uniform([-3 * PI, -8], [3 * PI, 8], (n, 2)),
    "MountainCar-v0": lambda rng, n: rng.uniform([-1.2, -0.07], [0.6, 0.07], (n, 2)),
    "MountainCarContinuous-v0": lambda rng, n: rng.uniform([-1.2, -0.07], [0.6, 0.07], (n, 2))
    .astype(np.float32).astype(np.float64),
    "Acrobot-v1": lambda rng, n: rng.uniform([-PI, -PI, -4 * PI, -9 * PI], [PI, PI, 4 * PI, 9 * PI], (n, 4)),
}
# Initial-state bounds of a reset, per state dimension.
RESET_BOUNDS = {
    "CartPole-v1": ([-0.05] * 4, [0.05] * 4),
    "Pendulum-v1": ([-PI, -1.0], [PI, 1.0]),
    "MountainCar-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "MountainCarContinuous-v0": ([-0.6, 0.0], [-0.4, 0.0]),
    "Acrobot-v1": ([-0.1] * 4, [0.1] * 4),
}
# Next states agree to float64 rounding; MountainCarContinuous keeps a float32 state, computed
# partly in float32 by numpy, so there to float32 rounding.
STATE_TOL = {i: dict(rtol=1e-9, atol=1e-9) for i in WIDE_STATES}
STATE_TOL["MountainCarContinuous-v0"] = dict(rtol=3e-7, atol=1e-8)
LIMITS = {"CartPole-v1": 40, "Pendulum-v1": 30, "MountainCar-v0": 50,
          "MountainCarContinuous-v0": 60, "Acrobot-v1": 40}


def _time_limit(env):
    while not isinstance(env, gym.wrappers.TimeLimit):
        env = env.env
    return env


def _put_state(gym_env, env_id, state, elapsed):
    u = gym_env.unwrapped
    if env_id == "MountainCarContinuous-v0":
        u.state = state.astype(np.float32)  # Gymnasium keeps this one in float32
    elif env_id == "MountainCar-v0":
        u.state = (np.float64(state[0]), np.float64(state[1]))
    else:
        u.state = state.copy()
    if env_id == "CartPole-v1":
        u.steps_beyond_terminated = None
    _time_limit(gym_env)._elapsed_steps = int(elapsed)


def _gym_state(gym_env):
    return np.asarray(gym_env.unwrapped.state, dtype=np.float64)


def _obs_of(env_id, gym_env, state):
    """Gymnasium's observation of `state`."""
    u = gym_env.unwrapped
    saved = u.state
    u.state = state.copy()
    try:
        if env_id == "Pendulum-v1":
            return u._get_obs()
        if env_id == "Acrobot-v1":
            return u._get_ob()
        return np.array(u.state, dtype=np.float32)
    finally:
        u.state = saved


def _in_reset_bounds(env_id, state):
    lo, hi = RESET_BOUNDS[env_id]
    return np.all(state >= np.array(lo) - 1e-7) and np.all(state <= np.array(hi) + 1e-7)


def _compare_run(env_id, mode, steps, num_envs=24, seed=0, redraw_every=6):
    limit = LIMITS[env_id]
    ours = make_vec(env_id, num_envs=num_envs, max_episode_steps=limit, autoreset_mode=mode)
    theirs = SyncVectorEnv([lambda: gym.make(env_id, max_episode_steps=limit)] * num_envs,
                           autoreset_mode=mode)
    rng = np.random.default_rng(seed)
    ours.action_space.seed(seed)
    obs, _ = ours.reset(seed=seed)
    theirs.reset(seed=seed)
    counts = {"terminated": 0, "truncated": 0, "autoreset": 0, "steps": 0}
    for k in range(steps):
        if k % redraw_every == 0 and k > 0:
            state = WIDE_STATES[env_id](rng, num_envs)
            elapsed = rng.integers(0, limit, num_envs).astype(np.int32)
            obs = ours.set_state(state, elapsed)
            theirs._autoreset_envs[:] = False
        state, elapsed = ours.get_state()
        pending = ours.pending_resets()
        if mode == AutoresetMode.NEXT_STEP:
            np.testing.assert_array_equal(pending, theirs._autoreset_envs)
        for i, e in enumerate(theirs.envs):
            if not pending[i]:
                _put_state(e, env_id, state[i], elapsed[i])
        actions = ours.action_space.sample()
        o1, r1, te1, tr1, info1 = ours.step(actions)
        o2, r2, te2, tr2, info2 = theirs.step(actions)
        state_after, elapsed_after = ours.get_state()
        live = ~pending
        done = te1 | tr1
        # SAME_STEP: the ended envs show their reset observation (compared below).
        kept = live & ~done if mode == AutoresetMode.SAME_STEP else live
        # The stepped envs: same observation, reward, ends and next state.
        np.testing.assert_allclose(o1[kept], o2[kept], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r1[live], r2[live], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(te1, te2)
        np.testing.assert_array_equal(tr1, tr2)
        for i in np.flatnonzero(kept):
            np.testing.assert_allclose(state_after[i], _gym_state(theirs.envs[i]), **STATE_TOL[env_id])
        # The reset envs: reward 0, not done, a fresh state from the reset distribution.
        for i in np.flatnonzero(pending):
            assert r1[i] == 0.0 and not te1[i] and not tr1[i]
            assert elapsed_after[i] == 0
            assert _in_reset_bounds(env_id, state_after[i]), state_after[i]
            np.testing.assert_allclose(o1[i], _obs_of(env_id, theirs.envs[i], state_after[i]), rtol=1e-6)
        if mode == AutoresetMode.SAME_STEP:
            if done.any():
                assert set(info1) == set(info2) == {"final_obs", "_final_obs", "final_info", "_final_info"}
                np.testing.assert_array_equal(info1["_final_obs"], info2["_final_obs"])
                for i in np.flatnonzero(done):
                    np.testing.assert_allclose(info1["final_obs"][i], info2["final_obs"][i],
                                               rtol=1e-5, atol=1e-6)
                    assert _in_reset_bounds(env_id, state_after[i])
                    assert elapsed_after[i] == 0
            else:
                assert info1 == {} and "final_obs" not in info2
        elif mode == AutoresetMode.DISABLED and done.any():
            mask = done.copy()
            o_reset, _ = ours.reset(options={"reset_mask": mask})
            theirs.reset(options={"reset_mask": mask.copy()})
            np.testing.assert_array_equal(o_reset[~mask], o1[~mask])  # others untouched
            assert not ours.pending_resets().any()
        counts["terminated"] += int(te1.sum())
        counts["truncated"] += int(tr1.sum())
        counts["autoreset"] += int(pending.sum())
        counts["steps"] += int(live.sum())
    ours.close()
    theirs.close()
    return counts


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_matches_gymnasium_step_by_step(env_id):
    counts = _compare_run(env_id, AutoresetMode.NEXT_STEP, steps=240)
    # The run reached every kind of step it is meant to check.
    assert counts["truncated"] > 0 and counts["autoreset"] > 0 and counts["steps"] > 3000
    if env_id != "Pendulum-v1":  # Pendulum never terminates
        assert counts["terminated"] > 0


@pytest.mark.parametrize("env_id", ["CartPole-v1", "MountainCarContinuous-v0", "Acrobot-v1"])
def test_same_step_autoreset_matches_gymnasium(env_id):
    counts = _compare_run(env_id, AutoresetMode.SAME_STEP, steps=120)
    assert counts["terminated"] + counts["truncated"] > 0


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_disabled_autoreset_matches_gymnasium(env_id):
    counts = _compare_run(env_id, AutoresetMode.DISABLED, steps=120)
    assert counts["terminated"] + counts["truncated"] > 0


def test_disabled_autoreset_refuses_to_step_an_ended_env():
    env = make_vec("CartPole-v1", num_envs=4, max_episode_steps=2, autoreset_mode=AutoresetMode.DISABLED)
    env.reset(seed=1)
    env.step(np.zeros(4, np.int64))
    _, _, _, trunc, _ = env.step(np.zeros(4, np.int64))
    assert trunc.all()
    with pytest.raises(ValueError, match="reset_mask"):
        env.step(np.zeros(4, np.int64))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_spaces_and_metadata_match_gymnasium(env_id):
    ours = make_vec(env_id, num_envs=5)
    theirs = gym.make_vec(env_id, num_envs=5, vectorization_mode="sync")
    assert isinstance(ours, gym.vector.VectorEnv)
    assert ours.single_observation_space == theirs.single_observation_space
    assert ours.single_action_space == theirs.single_action_space
    assert ours.observation_space == theirs.observation_space
    assert ours.action_space == theirs.action_space
    assert ours.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert ours.max_episode_steps == gym.spec(env_id).max_episode_steps
    obs, info = ours.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (5, ours.single_observation_space.shape[0])
    assert info == {}
    o, r, te, tr, info = ours.step(ours.action_space.sample())
    assert o in ours.observation_space or env_id == "Pendulum-v1"  # Pendulum's speed is clipped
    assert r.dtype == np.float64 and te.dtype == np.bool_ and tr.dtype == np.bool_


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_seeding_is_reproducible_and_per_env(env_id):
    a = make_vec(env_id, num_envs=8)
    b = make_vec(env_id, num_envs=8)
    oa, _ = a.reset(seed=123)
    ob, _ = b.reset(seed=123)
    np.testing.assert_array_equal(oa, ob)
    sa = a.get_state()[0]
    assert len({tuple(row) for row in sa}) == 8  # every env its own initial state
    assert _in_reset_bounds(env_id, sa).all()
    acts = [a.action_space.sample() for _ in range(300)]
    for act in acts:  # autoresets included: the streams stay in step
        ra, rb = a.step(act), b.step(act)
        np.testing.assert_array_equal(ra[0], rb[0])
        np.testing.assert_array_equal(ra[1], rb[1])
    oc, _ = b.reset(seed=124)
    assert not np.array_equal(oc, oa)
    np.testing.assert_array_equal(oc[:-1], oa[1:])  # env i gets seed + i, as SyncVectorEnv
    # A list of seeds, None meaning a fresh random one.
    od, _ = a.reset(seed=[123, None, 125, 126, 127, 128, 129, 130])
    np.testing.assert_array_equal(od[0], oa[0])
    np.testing.assert_array_equal(od[2:], oa[2:])
    with pytest.raises(ValueError, match="length must match"):
        a.reset(seed=[1, 2])
    # Unseeded envs differ from each other.
    c = make_vec(env_id, num_envs=8)
    oc1, _ = c.reset()
    assert len({tuple(row) for row in c.get_state()[0]}) == 8


def test_reset_distribution_and_options():
    env = make_vec("CartPole-v1", num_envs=20000)
    obs, _ = env.reset(seed=0)
    assert obs.min() >= -0.05 and obs.max() < 0.05
    # Uniform: mean ~0, std ~0.1/sqrt(12).
    assert abs(obs.mean()) < 1e-3 and abs(obs.std() - 0.1 / np.sqrt(12)) < 1e-3
    obs, _ = env.reset(options={"low": -0.2, "high": -0.1})
    assert obs.min() >= -0.2 and obs.max() < -0.1
    with pytest.raises(ValueError, match="Lower bound"):
        env.reset(options={"low": 1.0, "high": 0.0})
    with pytest.raises(ValueError, match="could not be converted"):
        env.reset(options={"low": "abc"})
    pend = make_vec("Pendulum-v1", num_envs=5000)
    pend.reset(seed=1, options={"x_init": 0.5, "y_init": 0.25})
    st = pend.get_state()[0]
    assert np.abs(st[:, 0]).max() <= 0.5 and np.abs(st[:, 1]).max() <= 0.25
    assert np.abs(st[:, 0]).max() > 0.45
    ac = make_vec("Acrobot-v1", num_envs=100)
    ac.reset(seed=2)
    st = ac.get_state()[0]
    np.testing.assert_array_equal(st, st.astype(np.float32))  # float32 initial state, as Gymnasium


def test_reset_mask_resets_only_the_masked_envs():
    env = make_vec("MountainCar-v0", num_envs=6)
    obs0, _ = env.reset(seed=5)
    for _ in range(3):
        obs, *_ = env.step(np.full(6, 2))
    mask = np.array([True, False, True, False, False, False])
    obs2, _ = env.reset(options={"reset_mask": mask})
    np.testing.assert_array_equal(obs2[~mask], obs[~mask])
    assert (obs2[mask, 1] == 0).all() and (obs[mask, 1] != 0).all()
    assert (env.get_state()[1][mask] == 0).all() and (env.get_state()[1][~mask] == 3).all()
    with pytest.raises(TypeError, match="dtype=np.bool_"):
        env.reset(options={"reset_mask": mask.astype(int)})
    with pytest.raises(ValueError, match="at least one True"):
        env.reset(options={"reset_mask": np.zeros(6, bool)})


def test_bad_input_is_a_clear_error():
    with pytest.raises(gym.error.Error, match="CartPole-v1"):
        make_vec("CartPole-v9", num_envs=2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_vec("CartPole-v1", num_envs=2, g=3.0)
    with pytest.raises(ValueError, match="num_envs"):
        make_vec("CartPole-v1", num_envs=0)
    env = make_vec("CartPole-v1", num_envs=3)
    with pytest.raises(ValueError, match="reset"):
        env.step(np.zeros(3, np.int64))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="env 1: action 2 is not in Discrete"):
        env.step(np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="3 integers"):
        env.step(np.array([0, 1]))


def test_env_kwargs_change_the_dynamics():
    env = make_vec("CartPole-v1", num_envs=2, sutton_barto_reward=True)
    env.reset(seed=0)
    env.set_state(np.array([[0.0, 0, 0, 0], [2.39, 5.0, 0, 0]]))
    _, r, te, _, _ = env.step(np.array([1, 1]))
    assert list(r) == [0.0, -1.0] and list(te) == [False, True]
    g_env = make_vec("Pendulum-v1", num_envs=1, g=9.81)
    ref = gym.make("Pendulum-v1", g=9.81)
    ref.reset(seed=0)
    g_env.reset(seed=0)
    ref.unwrapped.state = g_env.get_state()[0][0].copy()
    o1, r1, *_ = g_env.step(np.array([[0.7]], np.float32))
    o2, r2, *_ = ref.step(np.array([0.7], np.float32))
    np.testing.assert_allclose(o1[0], o2, rtol=1e-6)
    np.testing.assert_allclose(r1[0], r2, rtol=1e-9)


def test_env_kwargs_leave_gymnasiums_registry_alone():
    """make_vec's options describe its own spec; Gymnasium's registered spec (what every later
    gym.make in the process starts from) keeps its kwargs and episode limit."""
    before = (dict(gym.spec("CartPole-v1").kwargs), gym.spec("CartPole-v1").max_episode_steps)
    env = make_vec("CartPole-v1", num_envs=2, sutton_barto_reward=True, max_episode_steps=20)
    assert env.spec.kwargs.get("sutton_barto_reward") is True
    assert (dict(gym.spec("CartPole-v1").kwargs), gym.spec("CartPole-v1").max_episode_steps) == before
    single = gym.make("CartPole-v1")
    single.reset(seed=0)
    assert single.step(0)[1] == 1.0  # the standard reward, not Sutton and Barto's 0
