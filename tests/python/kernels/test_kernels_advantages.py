"""GAE and discounted returns against plain numpy references on random rollouts.

The references split each column of a [T, N] rollout into episodes and sum discounted TD
residuals / rewards explicitly (a different formulation from the kernel's backward
recursion), following RLlib's conventions: a termination bootstraps nothing, a truncation
bootstraps with the value of the state after it and stops the recursion.
"""

import numpy as np
import pytest

kernels = pytest.importorskip("mpiray.kernels")


def random_rollout(rng, T, N, p_term=0.05, p_trunc=0.03, dtype=np.float32):
    rewards = rng.normal(size=(T, N)).astype(dtype)
    values = rng.normal(size=(T, N)).astype(dtype)
    u = rng.random((T, N))
    terminated = u < p_term
    truncated = (u >= p_term) & (u < p_term + p_trunc)
    bootstrap = rng.normal(size=N).astype(dtype)
    finals = rng.normal(size=(T, N)).astype(dtype)
    return rewards, values, terminated, truncated, bootstrap, finals


def next_value(values, truncated, bootstrap, finals, t, n):
    """V(s_{t+1}) as the conventions define it."""
    T = values.shape[0]
    if truncated[t, n] and finals is not None:
        return finals[t, n]
    if t + 1 < T:
        return values[t + 1, n]
    return 0.0 if bootstrap is None else bootstrap[n]


def episodes(terminated, truncated, n):
    """[(start, end_inclusive)] segments of column n, cut after every done row."""
    T = terminated.shape[0]
    out, start = [], 0
    for t in range(T):
        if terminated[t, n] or truncated[t, n]:
            out.append((start, t))
            start = t + 1
    if start < T:
        out.append((start, T - 1))
    return out


def gae_reference(rewards, values, terminated, truncated, bootstrap, finals, gamma, lam):
    T, N = rewards.shape
    r, v = rewards.astype(np.float64), values.astype(np.float64)
    adv = np.zeros((T, N))
    for n in range(N):
        for a, b in episodes(terminated, truncated, n):
            delta = np.zeros(b - a + 1)
            for t in range(a, b + 1):
                nv = 0.0 if terminated[t, n] else next_value(v, truncated, bootstrap, finals, t, n)
                delta[t - a] = r[t, n] + gamma * nv - v[t, n]
            # A_t = sum_l (gamma * lambda)^l delta_{t+l} within the episode
            for t in range(a, b + 1):
                w = (gamma * lam) ** np.arange(b - t + 1)
                adv[t, n] = np.dot(w, delta[t - a:])
    return adv, adv + v


def returns_reference(rewards, terminated, truncated, bootstrap, values, finals, gamma):
    T, N = rewards.shape
    r = rewards.astype(np.float64)
    out = np.zeros((T, N))
    for n in range(N):
        for a, b in episodes(terminated, truncated, n):
            if terminated[b, n]:
                tail = 0.0
            elif truncated[b, n]:
                if finals is not None:
                    tail = finals[b, n]
                elif values is not None:
                    tail = values[b + 1, n] if b + 1 < T else (0.0 if bootstrap is None else bootstrap[n])
                else:
                    tail = 0.0
            else:  # the rollout's end
                tail = 0.0 if bootstrap is None else bootstrap[n]
            for t in range(a, b + 1):
                w = gamma ** np.arange(b - t + 1)
                out[t, n] = np.dot(w, r[t:b + 1, n]) + gamma ** (b - t + 1) * tail
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gae_matches_numpy_reference(seed, dtype):
    rng = np.random.default_rng(seed)
    T, N = 64, 37
    rew, val, term, trunc, boot, fin = random_rollout(rng, T, N, dtype=dtype)
    gamma, lam = 0.97, 0.9
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for b, f in [(boot, None), (None, None), (boot, fin)]:
        adv, targets = kernels.gae(rew, val, term, trunc, bootstrap_values=b, final_values=f,
                                   gamma=gamma, lambda_=lam)
        assert adv.dtype == dtype and adv.shape == (T, N)
        ref_adv, ref_targets = gae_reference(rew, val, term, trunc, b, f, gamma, lam)
        np.testing.assert_allclose(adv, ref_adv, **tol)
        np.testing.assert_allclose(targets, ref_targets, **tol)
    assert term.any() and trunc.any()


def test_gae_special_cases():
    rng = np.random.default_rng(5)
    rew, val, term, trunc, boot, _ = random_rollout(rng, 50, 8)
    # lambda = 0: one-step TD errors; lambda = 1 without ends: Monte-Carlo minus values.
    adv, _ = kernels.gae(rew, val, term, trunc, bootstrap_values=boot, gamma=0.9, lambda_=0.0)
    nv = np.vstack([val[1:], boot[None]])
    nv[term] = 0
    np.testing.assert_allclose(adv, rew + 0.9 * nv - val, rtol=1e-5, atol=1e-5)
    adv1, targets1 = kernels.gae(rew, val, gamma=0.9, lambda_=1.0, bootstrap_values=boot)
    ret = kernels.discounted_returns(rew, gamma=0.9, bootstrap_values=boot)
    np.testing.assert_allclose(targets1, ret, rtol=1e-4, atol=1e-4)
    # A 1-D rollout (one env), lists as input.
    a, t = kernels.gae([1.0, 1.0, 1.0], [0.5, 0.5, 0.5], [False, False, True], gamma=1.0, lambda_=1.0)
    np.testing.assert_allclose(a, [2.5, 1.5, 0.5])
    np.testing.assert_allclose(t, [3.0, 2.0, 1.0])


def test_gae_matches_rllib_compute_value_targets_per_episode():
    # RLlib's own convention on one episode chunk, values elongated by one step (its
    # AddOneTsToEpisodesAndTruncate): our [T, 1] rollout with the bootstrap as values[T].
    rng = np.random.default_rng(9)
    T = 30
    rew = rng.normal(size=T).astype(np.float32)
    vals = rng.normal(size=T + 1).astype(np.float32)
    term = np.zeros(T + 1, bool)
    trunc = np.zeros(T + 1, bool)
    trunc[T - 1] = True  # the chunk ends after the last real step; V(s_T) bootstraps it
    ref = _rllib_value_targets(vals, np.append(rew, 0.0).astype(np.float32), term, trunc, 0.99, 0.95)
    _, targets = kernels.gae(rew[:, None], vals[:T, None], bootstrap_values=vals[T:], gamma=0.99,
                             lambda_=0.95)
    np.testing.assert_allclose(targets[:, 0], ref[:T], rtol=1e-5, atol=1e-5)


def _rllib_value_targets(values, rewards, terminateds, truncateds, gamma, lambda_):
    """RLlib 2.x compute_value_targets, restated in numpy."""
    non_terminal = 1.0 - terminateds
    propagate = non_terminal * (1.0 - truncateds)
    next_values = np.append(values[1:], 0.0)
    td = rewards + gamma * non_terminal * next_values - values
    adv = np.zeros_like(rewards, dtype=np.float64)
    run = 0.0
    for t in reversed(range(len(td))):
        run = td[t] + gamma * lambda_ * propagate[t] * run
        adv[t] = run
    return adv + values


@pytest.mark.parametrize("seed", [0, 3])
def test_discounted_returns_match_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    T, N = 80, 21
    rew, val, term, trunc, boot, fin = random_rollout(rng, T, N, dtype=np.float64)
    for kw in [dict(), dict(bootstrap_values=boot), dict(bootstrap_values=boot, values=val),
               dict(bootstrap_values=boot, final_values=fin)]:
        out = kernels.discounted_returns(rew, term, trunc, gamma=0.95, **kw)
        ref = returns_reference(rew, term, trunc, kw.get("bootstrap_values"), kw.get("values"),
                                kw.get("final_values"), 0.95)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_inputs_are_read_in_place_and_bad_input_is_refused():
    rng = np.random.default_rng(1)
    rew, val, term, trunc, boot, _ = random_rollout(rng, 10, 4)
    # Non-contiguous and other-dtype inputs are converted, with the same result.
    adv, _ = kernels.gae(rew, val, term, trunc, bootstrap_values=boot)
    adv2, _ = kernels.gae(np.asfortranarray(rew), val.astype(np.float16).astype(np.float32), term.astype(np.uint8),
                          trunc, bootstrap_values=boot)
    np.testing.assert_array_equal(adv2, kernels.gae(rew, val.astype(np.float16).astype(np.float32), term,
                                                    trunc, bootstrap_values=boot)[0])
    np.testing.assert_allclose(adv2, adv, rtol=1e-2, atol=1e-2)
    with pytest.raises(ValueError, match="values"):
        kernels.gae(rew, val[:5], term, trunc)
    with pytest.raises(ValueError, match="terminated"):
        kernels.gae(rew, val, term[:3], trunc)
    with pytest.raises(ValueError, match="bootstrap_values"):
        kernels.gae(rew, val, bootstrap_values=np.zeros(7, np.float32))
    with pytest.raises(ValueError, match="\\[T, N\\]"):
        kernels.gae(np.zeros((2, 2, 2), np.float32), np.zeros((2, 2, 2), np.float32))
