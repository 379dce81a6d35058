"""Action distributions over the outputs of a module (Ray's ``TorchCategorical`` and
``TorchDiagGaussian``), and the same arithmetic in numpy for the env runners' hot path."""

import math

import numpy as np
import torch
from gymnasium import spaces

_LOG_2PI = math.log(2.0 * math.pi)


class TorchCategorical:
    """A categorical distribution over ``logits`` [..., n]."""

    def __init__(self, logits, normalized=False):
        self.logits = logits if normalized else logits - torch.logsumexp(logits, dim=-1, keepdim=True)

    @classmethod
    def from_logits(cls, logits):
        return cls(logits)

    @classmethod
    def from_normalized_logits(cls, logp):
        """From log-probabilities (already normalised: saves a logsumexp per use)."""
        return cls(logp, normalized=True)

    @staticmethod
    def required_input_dim(space, **kwargs):
        return int(space.n)

    def sample(self):
        return torch.multinomial(self.logits.exp().reshape(-1, self.logits.shape[-1]), 1).reshape(
            self.logits.shape[:-1])

    def deterministic_sample(self):
        return torch.argmax(self.logits, dim=-1)

    def logp(self, actions):
        return torch.gather(self.logits, -1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self):
        p = self.logits.exp()
        return -(p * self.logits).sum(-1)

    def kl(self, other):
        p = self.logits.exp()
        return (p * (self.logits - other.logits)).sum(-1)

    def to_deterministic(self):
        return _Deterministic(self.deterministic_sample())


class TorchDiagGaussian:
    """A diagonal Gaussian; ``inputs`` [..., 2d] are the means and log standard deviations."""

    def __init__(self, mean, log_std):
        self.mean = mean
        self.log_std = log_std

    @classmethod
    def from_logits(cls, inputs):
        mean, log_std = torch.chunk(inputs, 2, dim=-1)
        return cls(mean, log_std)

    @staticmethod
    def required_input_dim(space, **kwargs):
        return int(2 * np.prod(space.shape))

    def sample(self):
        return self.mean + torch.randn_like(self.mean) * self.log_std.exp()

    def deterministic_sample(self):
        return self.mean

    def logp(self, actions):
        z = (actions - self.mean) * torch.exp(-self.log_std)
        return (-0.5 * z * z - self.log_std - 0.5 * _LOG_2PI).sum(-1)

    def entropy(self):
        return (self.log_std + 0.5 * (_LOG_2PI + 1.0)).sum(-1)

    def kl(self, other):
        var, ovar = torch.exp(2 * self.log_std), torch.exp(2 * other.log_std)
        return (other.log_std - self.log_std + (var + (self.mean - other.mean) ** 2) / (2.0 * ovar)
                - 0.5).sum(-1)

    def to_deterministic(self):
        return _Deterministic(self.mean)


class _Deterministic:
    def __init__(self, x):
        self.x = x

    def sample(self):
        return self.x

    def deterministic_sample(self):
        return self.x


def dist_class_for(space):
    """The distribution class for an action space (Discrete or Box)."""
    if isinstance(space, spaces.Discrete):
        return TorchCategorical
    if isinstance(space, spaces.Box):
        return TorchDiagGaussian
    raise ValueError(f"mpiray.rllib's default modules support Discrete and Box action spaces, got {space}")


# ---------------------------------------------------------------------- numpy (env runners)

def np_sample(dist_inputs, discrete, rng, explore=True):
    """Sample actions from ``dist_inputs`` [B, k] in numpy; returns (actions, logp)."""
    x = np.asarray(dist_inputs, dtype=np.float64)
    if discrete:
        m = x.max(axis=1, keepdims=True)
        z = x - m
        lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
        logp_all = z - lse
        if explore:
            # Gumbel-max: one uniform draw per (row, action), no cumulative sums
            g = -np.log(-np.log(rng.random(x.shape) + 1e-300) + 1e-300)
            actions = np.argmax(logp_all + g, axis=1)
        else:
            actions = np.argmax(logp_all, axis=1)
        logp = logp_all[np.arange(x.shape[0]), actions]
        return actions.astype(np.int64), logp.astype(np.float32)
    d = x.shape[1] // 2
    mean, log_std = x[:, :d], x[:, d:]
    if not explore:
        return mean.astype(np.float32), np.zeros(x.shape[0], np.float32)
    eps = rng.standard_normal(mean.shape)
    actions = mean + eps * np.exp(log_std)
    logp = (-0.5 * eps * eps - log_std - 0.5 * _LOG_2PI).sum(axis=1)
    return actions.astype(np.float32), logp.astype(np.float32)
