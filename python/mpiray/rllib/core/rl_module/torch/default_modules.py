"""The algorithms' default torch RLModules: MLPs over flat observations.

* ``DefaultActorCriticRLModule`` (PPO, IMPALA, APPO): encoder (``fcnet_hiddens``, shared by
  policy and value function when ``vf_share_layers``), policy head and value head
  (``head_fcnet_hiddens``). APPO's variant keeps a target copy of the policy.
* ``DefaultDQNRLModule``: encoder plus dueling (or plain) Q head (``hiddens``).

Observations: Box (flattened) or Discrete (one-hot). Actions: Discrete (categorical logits)
or Box (diagonal Gaussian: means and log standard deviations, or a free log std).
"""

import copy
import math

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ...columns import Columns
from ..rl_module import RLModule

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "swish": nn.SiLU, "silu": nn.SiLU, "elu": nn.ELU,
                "sigmoid": nn.Sigmoid, "linear": None, None: None}

TARGET_NETWORK_ACTION_DIST_INPUTS = "target_network_action_dist_inputs"
QF_PREDS = "qf_preds"
QF_TARGET_NEXT_PREDS = "qf_target_next_preds"


def obs_dim(space):
    """The width of the flat input an MLP sees for ``space``."""
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape)) if space.shape else 1
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    raise ValueError(f"mpiray.rllib's default modules take Box or Discrete observations, got {space} "
                     "(use a custom RLModule via RLModuleSpec(module_class=...) for other spaces)")


def encode_obs(obs, space):
    """Float32 ``[B, obs_dim]`` from a batch of raw observations (tensor or array)."""
    if not isinstance(obs, torch.Tensor):
        obs = torch.as_tensor(np.asarray(obs))
    if isinstance(space, spaces.Discrete):
        return nn.functional.one_hot(obs.long().reshape(-1) - int(space.start), int(space.n)).float()
    obs = obs.reshape(obs.shape[0], -1) if obs.dim() > 1 else obs.reshape(obs.shape[0], -1)
    return obs if obs.dtype == torch.float32 else obs.float()


def _activation(name):
    key = name.lower() if isinstance(name, str) else name
    if key not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {[k for k in _ACTIVATIONS if k]}")
    return _ACTIVATIONS[key]


def mlp(in_dim, hiddens, activation, out_dim=None, *, layernorm=False, out_gain=1.0, hidden_gain=None):
    """Linear layers with ``activation`` between (and after the hidden ones); orthogonal
    initialisation (gain sqrt(2) for hidden layers, ``out_gain`` for the output layer)."""
    layers = []
    act = _activation(activation)
    d = in_dim
    gain = hidden_gain if hidden_gain is not None else math.sqrt(2.0)
    for h in hiddens:
        lin = nn.Linear(d, int(h))
        nn.init.orthogonal_(lin.weight, gain)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if layernorm:
            layers.append(nn.LayerNorm(int(h)))
        if act is not None:
            layers.append(act())
        d = int(h)
    if out_dim is not None:
        lin = nn.Linear(d, int(out_dim))
        nn.init.orthogonal_(lin.weight, out_gain)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        d = int(out_dim)
    seq = nn.Sequential(*layers)
    seq.out_dim = d
    return seq


def _check_supported(cfg):
    if cfg.get("use_lstm"):
        raise ValueError("model_config.use_lstm=True: mpiray.rllib's default modules are MLPs (no LSTM); "
                         "use a custom RLModule")
    if cfg.get("conv_filters"):
        raise ValueError("model_config.conv_filters: mpiray.rllib's default modules are MLPs (no CNN); "
                         "use a custom RLModule")


class DefaultActorCriticRLModule(RLModule):
    """Policy and value function over an MLP encoder (PPO, IMPALA, APPO)."""

    def setup(self):
        cfg = self.model_config
        _check_supported(cfg)
        hiddens = list(cfg.get("fcnet_hiddens", [256, 256]))
        act = cfg.get("fcnet_activation", "tanh")
        ln = bool(cfg.get("fcnet_use_layernorm", False))
        head_h = list(cfg.get("head_fcnet_hiddens", []))
        head_act = cfg.get("head_fcnet_activation", "relu")
        self.vf_share_layers = bool(cfg.get("vf_share_layers", True))
        self.free_log_std = bool(cfg.get("free_log_std", False))
        self.log_std_clip = float(cfg.get("log_std_clip_param", 20.0))
        d = obs_dim(self.observation_space)
        a = self.action_space
        if isinstance(a, spaces.Discrete):
            self._discrete, out = True, int(a.n)
        elif isinstance(a, spaces.Box):
            self._discrete = False
            self._act_dim = int(np.prod(a.shape))
            out = self._act_dim if self.free_log_std else 2 * self._act_dim
        else:
            raise ValueError(f"mpiray.rllib's default modules support Discrete and Box action spaces, got {a}")
        self.encoder = mlp(d, hiddens, act, layernorm=ln)
        emb = self.encoder.out_dim
        if not self.vf_share_layers:
            self.critic_encoder = mlp(d, hiddens, act, layernorm=ln)
        self.pi = mlp(emb, head_h, head_act, out, out_gain=0.01)
        self.vf = mlp(emb, head_h, head_act, 1, out_gain=1.0)
        if self.free_log_std:
            self.log_std = nn.Parameter(torch.zeros(self._act_dim))

    def _dist_inputs(self, emb):
        out = self.pi(emb)
        if not self._discrete:
            if self.free_log_std:
                out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
            if self.log_std_clip < float("inf"):
                mean, log_std = torch.chunk(out, 2, dim=-1)
                out = torch.cat([mean, log_std.clamp(-self.log_std_clip, self.log_std_clip)], dim=-1)
        return out

    def _forward(self, batch, **kwargs):
        x = encode_obs(batch[Columns.OBS], self.observation_space)
        emb = self.encoder(x)
        out = {Columns.ACTION_DIST_INPUTS: self._dist_inputs(emb), Columns.EMBEDDINGS: emb}
        return out

    def compute_values(self, batch, embeddings=None):
        """V(obs) ``[B]`` (from the shared embeddings when given and shared)."""
        if self.vf_share_layers:
            if embeddings is None:
                embeddings = self.encoder(encode_obs(batch[Columns.OBS], self.observation_space))
            return self.vf(embeddings).squeeze(-1)
        x = encode_obs(batch[Columns.OBS], self.observation_space)
        return self.vf(self.critic_encoder(x)).squeeze(-1)

    # -- APPO's target network (built on demand)
    def make_target_networks(self):
        self._invalidate_tensor_cache()
        self._target_encoder = copy.deepcopy(self.encoder)
        self._target_pi = copy.deepcopy(self.pi)
        for p in list(self._target_encoder.parameters()) + list(self._target_pi.parameters()):
            p.requires_grad_(False)
        if self.free_log_std:
            self._target_log_std = nn.Parameter(self.log_std.detach().clone(), requires_grad=False)
        self._invalidate_tensor_cache()

    def sync_target_networks(self, tau=1.0):
        with torch.no_grad():
            pairs = [(self.encoder, self._target_encoder), (self.pi, self._target_pi)]
            for src, dst in pairs:
                for ps, pd in zip(src.parameters(), dst.parameters()):
                    pd.mul_(1.0 - tau).add_(ps, alpha=tau)
            if self.free_log_std:
                self._target_log_std.mul_(1.0 - tau).add_(self.log_std, alpha=tau)

    def forward_target(self, batch):
        with torch.no_grad():
            x = encode_obs(batch[Columns.OBS], self.observation_space)
            out = self._target_pi(self._target_encoder(x))
            if not self._discrete:
                if self.free_log_std:
                    out = torch.cat([out, self._target_log_std.expand_as(out)], dim=-1)
                mean, log_std = torch.chunk(out, 2, dim=-1)
                out = torch.cat([mean, log_std.clamp(-self.log_std_clip, self.log_std_clip)], dim=-1)
            return {TARGET_NETWORK_ACTION_DIST_INPUTS: out}

    def get_state(self, components=None, *, not_components=None, inference_only=False, **kwargs):
        state = super().get_state()
        if inference_only:
            state = {k: v for k, v in state.items() if not k.startswith("_target")}
        return state

    def set_state(self, state):
        own = dict(self._tensors())
        if any(k.startswith("_target") for k in own) and not any(k.startswith("_target") for k in state):
            # an inference-only state: keep the targets as they are
            state = dict(state)
            for k, t in own.items():
                if k.startswith("_target"):
                    state[k] = t.detach()
        super().set_state(state)


class DefaultDQNRLModule(RLModule):
    """Q-values over an MLP encoder; dueling head (``dueling``) of ``hiddens``; a target copy
    for double Q-learning."""

    def setup(self):
        cfg = self.model_config
        _check_supported(cfg)
        if not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(f"DQN needs a Discrete action space, got {self.action_space}")
        hiddens = list(cfg.get("fcnet_hiddens", [256, 256]))
        act = cfg.get("fcnet_activation", "relu")
        head = list(cfg.get("hiddens", cfg.get("head_fcnet_hiddens", [256])))
        head_act = cfg.get("head_fcnet_activation", "relu")
        self.dueling = bool(cfg.get("dueling", True))
        n = int(self.action_space.n)
        d = obs_dim(self.observation_space)
        self.encoder = mlp(d, hiddens, act)
        emb = self.encoder.out_dim
        self.af = mlp(emb, head, head_act, n, out_gain=1.0)
        if self.dueling:
            self.vf = mlp(emb, head, head_act, 1, out_gain=1.0)
        self._target = None

    def _q(self, x, encoder, af, vf):
        emb = encoder(x)
        adv = af(emb)
        if self.dueling:
            return vf(emb) + adv - adv.mean(dim=-1, keepdim=True)
        return adv

    def _forward(self, batch, **kwargs):
        x = encode_obs(batch[Columns.OBS], self.observation_space)
        return {QF_PREDS: self._q(x, self.encoder, self.af, getattr(self, "vf", None))}

    def _forward_inference(self, batch, **kwargs):
        out = self._forward(batch)
        out[Columns.ACTIONS] = torch.argmax(out[QF_PREDS], dim=-1)
        # RLlib's DQN module has no action distribution: the greedy action as one-hot logits
        out[Columns.ACTION_DIST_INPUTS] = torch.where(
            nn.functional.one_hot(out[Columns.ACTIONS], out[QF_PREDS].shape[-1]).bool(),
            torch.zeros_like(out[QF_PREDS]), torch.full_like(out[QF_PREDS], -1e9))
        return out

    def compute_q_values(self, batch):
        return self._forward(batch)

    def make_target_networks(self):
        self._invalidate_tensor_cache()
        self._target = nn.ModuleDict({"encoder": copy.deepcopy(self.encoder), "af": copy.deepcopy(self.af)})
        if self.dueling:
            self._target["vf"] = copy.deepcopy(self.vf)
        for p in self._target.parameters():
            p.requires_grad_(False)

    def sync_target_networks(self, tau=1.0):
        with torch.no_grad():
            names = ["encoder", "af"] + (["vf"] if self.dueling else [])
            for name in names:
                for ps, pd in zip(getattr(self, name).parameters(), self._target[name].parameters()):
                    pd.mul_(1.0 - tau).add_(ps, alpha=tau)

    def forward_target(self, batch):
        with torch.no_grad():
            x = encode_obs(batch[Columns.OBS], self.observation_space)
            t = self._target
            return {QF_PREDS: self._q(x, t["encoder"], t["af"], t["vf"] if self.dueling else None)}

    def get_state(self, components=None, *, not_components=None, inference_only=False, **kwargs):
        state = super().get_state()
        if inference_only:
            state = {k: v for k, v in state.items() if not k.startswith("_target")}
        return state

    def set_state(self, state):
        own = dict(self._tensors())
        if any(k.startswith("_target") for k in own) and not any(k.startswith("_target") for k in state):
            state = dict(state)
            for k, t in own.items():
                if k.startswith("_target"):
                    state[k] = t.detach()
        elif not any(k.startswith("_target") for k in own) and any(k.startswith("_target") for k in state):
            self.make_target_networks()
        super().set_state(state)
