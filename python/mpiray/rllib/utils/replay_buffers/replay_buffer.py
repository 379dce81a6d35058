"""Transition replay for DQN: uniform (``EpisodeReplayBuffer``) or proportional prioritized
(``PrioritizedEpisodeReplayBuffer``: P(i) ~ p_i^alpha, importance weights (N P(i))^-beta / max)."""

import numpy as np


def rollout_to_transitions(batch, gamma, n_step=1):
    """n-step transitions from a time-major rollout (the env runners' layout).

    Returns ``obs, actions, rewards (the n-step discounted sum), next_obs, terminateds,
    discounts (gamma^k of the steps taken)`` for every valid row. A window stops at the end of
    its episode (terminated: no bootstrap; truncated: bootstrap from the final observation) and
    at the end of the rollout (bootstrap from the observation after it).
    """
    obs = batch["obs"]
    T, N = batch["valid"].shape
    obs_ext = np.concatenate([obs, batch["bootstrap_obs"][None]], axis=0)
    r = batch["rewards"].astype(np.float32)
    term, trunc = batch["terminateds"], batch["truncateds"]
    t_idx = np.arange(T)[:, None].repeat(N, 1)
    R = np.zeros((T, N), np.float32)
    disc = np.ones((T, N), np.float32)
    done = np.zeros((T, N), bool)
    stop = np.zeros((T, N), bool)
    nxt = t_idx + 1
    for k in range(max(1, int(n_step))):
        tk = t_idx + k
        inside = tk < T
        tkc = np.minimum(tk, T - 1)
        cols = np.arange(N)[None, :].repeat(T, 0)
        active = ~stop & inside
        rk = r[tkc, cols]
        R += np.where(active, disc * rk, 0.0)
        disc = np.where(active, disc * gamma, disc)
        ended = term[tkc, cols] | trunc[tkc, cols]
        done |= active & term[tkc, cols]
        nxt = np.where(active, tk + 1, nxt)
        stop |= (active & ended) | ~inside
    m = batch["valid"]
    cols = np.arange(N)[None, :].repeat(T, 0)
    next_obs = obs_ext[nxt, cols]
    return {"obs": obs[m], "actions": batch["actions"][m], "rewards": R[m], "next_obs": next_obs[m],
            "terminateds": done[m], "discounts": disc[m]}


class ReplayBuffer:
    """A ring buffer of transitions with uniform sampling."""

    def __init__(self, capacity=50000, seed=None, **kwargs):
        self.capacity = int(capacity)
        self._data = None
        self._size = 0
        self._pos = 0
        self._added = 0
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        return self._size

    def add(self, tr):
        n = len(tr["rewards"])
        if n == 0:
            return
        if self._data is None:
            self._data = {k: np.empty((self.capacity,) + v.shape[1:], v.dtype) for k, v in tr.items()}
        if n > self.capacity:
            tr = {k: v[-self.capacity:] for k, v in tr.items()}
            n = self.capacity
        idx = (self._pos + np.arange(n)) % self.capacity
        for k, v in tr.items():
            self._data[k][idx] = v
        self._on_add(idx)
        self._pos = (self._pos + n) % self.capacity
        self._size = min(self.capacity, self._size + n)
        self._added += n

    def _on_add(self, idx):
        pass

    def sample(self, num_items, beta=None):
        idx = self._rng.integers(0, self._size, num_items)
        out = {k: v[idx] for k, v in self._data.items()}
        out["weights"] = np.ones(num_items, np.float32)
        out["indices"] = idx
        return out

    def update_priorities(self, indices, td_errors):
        pass

    def get_metrics(self):
        return {"num_env_steps_stored": self._size, "num_env_steps_added_lifetime": self._added}

    def get_state(self):
        return {"data": None if self._data is None else {k: v[:self._size].copy() for k, v in self._data.items()},
                "size": self._size, "pos": self._pos, "added": self._added, "rng": self._rng.bit_generator.state}

    def set_state(self, s):
        self._size, self._pos, self._added = s["size"], s["pos"], s["added"]
        self._rng.bit_generator.state = s["rng"]
        if s["data"] is not None:
            self._data = {k: np.empty((self.capacity,) + v.shape[1:], v.dtype) for k, v in s["data"].items()}
            for k, v in s["data"].items():
                self._data[k][:len(v)] = v


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016); new transitions get the highest
    priority seen so far."""

    def __init__(self, capacity=50000, alpha=0.6, beta=0.4, seed=None, **kwargs):
        super().__init__(capacity, seed)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self._prio = np.zeros(self.capacity, np.float64)  # p^alpha
        self._max = 1.0

    def _on_add(self, idx):
        self._prio[idx] = self._max ** self.alpha

    def sample(self, num_items, beta=None):
        beta = self.beta if beta is None else beta
        p = self._prio[:self._size]
        total = p.sum()
        cdf = np.cumsum(p)
        u = self._rng.random(num_items) * total
        idx = np.minimum(np.searchsorted(cdf, u, side="right"), self._size - 1)
        probs = p[idx] / total
        w = (self._size * probs) ** (-beta)
        w /= (self._size * p.min() / total) ** (-beta)
        out = {k: v[idx] for k, v in self._data.items()}
        out["weights"] = w.astype(np.float32)
        out["indices"] = idx
        return out

    def update_priorities(self, indices, td_errors):
        pr = np.abs(np.asarray(td_errors, np.float64)) + 1e-6
        self._prio[indices] = pr ** self.alpha
        self._max = max(self._max, float(pr.max()))

    def get_state(self):
        s = super().get_state()
        s["prio"] = self._prio[:self._size].copy()
        s["max"] = self._max
        return s

    def set_state(self, s):
        super().set_state(s)
        self._prio[:len(s["prio"])] = s["prio"]
        self._max = s["max"]
