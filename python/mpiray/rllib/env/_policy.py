"""Acting on env runners: a module's forward pass on a batch of observations, and the
sampling of actions from its outputs.

For the default MLP modules the forward pass runs in numpy on weights copied from the
module (an MLP of a few layers over a few dozen observations costs ~10 us in numpy against
~50-100 us for torch's per-call overhead); other modules go through ``forward_exploration``.
Both give the same numbers up to float32 rounding (tested).
"""

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ..core.columns import Columns
from ..core.distribution import np_sample
from ..core.rl_module.torch.default_modules import (DefaultActorCriticRLModule, DefaultDQNRLModule, QF_PREDS,
                                                     encode_obs)

_NP_ACT = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0, out=x),
    nn.Sigmoid: lambda x: 1.0 / (1.0 + np.exp(-x)),
    nn.SiLU: lambda x: x / (1.0 + np.exp(-x)),
    nn.ELU: lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
}


def _np_layers(seq):
    """numpy ops for an nn.Sequential of Linear/activations/LayerNorm, or None."""
    ops = []
    for layer in seq:
        if isinstance(layer, nn.Linear):
            ops.append(("lin", layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy()))
        elif type(layer) in _NP_ACT:
            ops.append(("act", _NP_ACT[type(layer)]))
        elif isinstance(layer, nn.LayerNorm):
            ops.append(("ln", layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy(), layer.eps))
        else:
            return None
    return ops


def _run(ops, x):
    for op in ops:
        if op[0] == "lin":
            x = x @ op[1]
            x += op[2]
        elif op[0] == "act":
            r = op[1](x)
            x = r if r is not None else x
        else:
            mu = x.mean(-1, keepdims=True)
            var = x.var(-1, keepdims=True)
            x = (x - mu) / np.sqrt(var + op[3]) * op[1] + op[2]
    return x


def np_encode(obs, space):
    if isinstance(space, spaces.Discrete):
        out = np.zeros((obs.shape[0], int(space.n)), np.float32)
        out[np.arange(obs.shape[0]), obs.astype(np.int64).reshape(-1) - int(space.start)] = 1.0
        return out
    x = obs.reshape(obs.shape[0], -1)
    return x if x.dtype == np.float32 else x.astype(np.float32)


class ModulePolicy:
    """Acts with one module: ``act(obs, explore, epsilon)`` -> (actions, logp, dist_inputs)."""

    def __init__(self, module, observation_space, action_space, mode="stochastic", numpy_fast_path=True):
        self.module = module
        self.obs_space = observation_space
        self.action_space = action_space
        self.mode = mode
        self.discrete = isinstance(action_space, spaces.Discrete)
        self.numpy_fast_path = numpy_fast_path
        self._ops = None
        self._refresh()

    def set_state(self, state):
        self.module.set_state(state)
        self._refresh()

    def _refresh(self):
        m = self.module
        self._ops = None
        if not self.numpy_fast_path:
            return
        if type(m) is DefaultActorCriticRLModule and not m.free_log_std:
            enc, pi = _np_layers(m.encoder), _np_layers(m.pi)
            if enc is not None and pi is not None:
                self._ops = ("ac", enc + pi, m.log_std_clip)
        elif type(m) is DefaultDQNRLModule:
            enc, af = _np_layers(m.encoder), _np_layers(m.af)
            vf = _np_layers(m.vf) if m.dueling else []
            if enc is not None and af is not None and vf is not None:
                self._ops = ("dqn", enc, af, vf if m.dueling else None)

    def forward(self, obs):
        """The distribution inputs (or Q-values for DQN) of a batch ``[B, ...]``, numpy."""
        if self._ops is not None:
            x = np_encode(obs, self.obs_space)
            if self._ops[0] == "ac":
                out = _run(self._ops[1], x)
                if not self.discrete and self._ops[2] < float("inf"):
                    d = out.shape[1] // 2
                    np.clip(out[:, d:], -self._ops[2], self._ops[2], out=out[:, d:])
                return out
            emb = _run(self._ops[1], x)
            adv = _run(self._ops[2], emb.copy())
            if self._ops[3] is not None:
                v = _run(self._ops[3], emb.copy())
                return v + adv - adv.mean(axis=1, keepdims=True)
            return adv
        with torch.inference_mode():
            out = self.module.forward_exploration({Columns.OBS: torch.from_numpy(np.ascontiguousarray(obs))})
        if QF_PREDS in out:
            return out[QF_PREDS].numpy()
        if Columns.ACTION_DIST_INPUTS in out:
            return out[Columns.ACTION_DIST_INPUTS].numpy()
        raise ValueError(f"{type(self.module).__name__}.forward_exploration returned {sorted(out)}; it must "
                         f"return {Columns.ACTION_DIST_INPUTS!r}")

    def act(self, obs, rng, explore=True, epsilon=0.0):
        out = self.forward(obs)
        if self.mode == "epsilon_greedy":
            actions = np.argmax(out, axis=1).astype(np.int64)
            if explore and epsilon > 0:
                rand = rng.random(actions.shape[0]) < epsilon
                if rand.any():
                    actions[rand] = rng.integers(0, out.shape[1], int(rand.sum()))
            return actions, np.zeros(actions.shape[0], np.float32), out
        actions, logp = np_sample(out, self.discrete, rng, explore)
        return actions, logp, out


def to_env_actions(actions, space, normalize_actions=True, clip_actions=False):
    """Actions as the env takes them: Box actions from the module's normalised [-1, 1] range
    to the space's bounds (``normalize_actions``, RLlib's default), or clipped to them."""
    if isinstance(space, spaces.Box):
        a = actions.reshape((actions.shape[0],) + space.shape)
        low, high = space.low, space.high
        if normalize_actions and np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
            a = low + (np.clip(a, -1.0, 1.0) + 1.0) * ((high - low) / 2.0)
        elif clip_actions:
            a = np.clip(a, low, high)
        return a.astype(space.dtype, copy=False)
    return actions


def to_env_action(action, space, normalize_actions=True, clip_actions=False):
    return to_env_actions(np.asarray(action)[None], space, normalize_actions, clip_actions)[0]
