"""What every env runner shares: module building, weights, seeding, episode statistics."""

import os
import socket
import time
import traceback

import numpy as np

from ..utils._threads import limit_threads
from .utils import EnvError


class EpisodeStats:
    """Episodes finished since the last ``pop()``: returns, lengths, durations, per agent and
    per module returns (multi-agent)."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.returns, self.lengths, self.durations = [], [], []
        self.agent_returns, self.module_returns = {}, {}

    def add(self, ret, length, duration, agent_returns=None, module_returns=None):
        self.returns.append(float(ret))
        self.lengths.append(int(length))
        self.durations.append(float(duration))
        for a, r in (agent_returns or {}).items():
            self.agent_returns.setdefault(str(a), []).append(float(r))
        for m, r in (module_returns or {}).items():
            self.module_returns.setdefault(m, []).append(float(r))

    def pop(self):
        out = {"returns": self.returns, "lengths": self.lengths, "durations": self.durations,
               "agent_returns": self.agent_returns, "module_returns": self.module_returns}
        self.clear()
        return out


def env_error(where, spec_name, worker_index):
    """An EnvError carrying the traceback of the exception being handled."""
    return EnvError(f"The environment {spec_name!r} raised in {where} on env runner {worker_index} "
                    f"(pid {os.getpid()}, host {socket.gethostname()}):\n{traceback.format_exc()}")


class EnvRunnerBase:
    """Common state of the single- and multi-agent runners."""

    def __init__(self, config, worker_index=0, num_workers=0, recreated=False):
        limit_threads(1, torch_too=worker_index > 0)
        self.config = config
        self.worker_index = worker_index
        self.num_workers = num_workers
        self.recreated = recreated
        self.env_spec = config._env_spec
        self.weights_seq_no = -1
        self.num_env_steps_lifetime = 0
        self.global_env_steps = 0
        self.episodes = EpisodeStats()
        seed = config.seed
        self._seed = None if seed is None else int(seed) + 1000 * int(worker_index) + (
            100_000 if recreated else 0)
        self.rng = np.random.default_rng(self._seed)
        if self._seed is not None:
            import torch
            torch.manual_seed(self._seed)

    def ping(self):
        return "pong"

    def sample_split(self, *args, **kwargs):
        """``sample`` as two objects: (batches, metrics), so that the rollout can go to the
        learner without passing through the caller."""
        out = self.sample(*args, **kwargs)
        return out["batches"], out["metrics"]

    def apply(self, fn, *args, **kwargs):
        """``fn(self, *args)`` inside the runner (``foreach_env_runner``)."""
        return fn(self, *args, **kwargs)

    def get_host(self):
        return {"pid": os.getpid(), "host": socket.gethostname(), "worker_index": self.worker_index}

    def set_weights(self, weights, weights_seq_no=None):
        """Load ``{module_id: state}`` (the learner's weights)."""
        if weights is None:
            return
        for mid, state in weights.items():
            if mid in self.policies:
                self.policies[mid].set_state(state)
        if weights_seq_no is not None:
            self.weights_seq_no = weights_seq_no

    def get_weights(self):
        return {mid: p.module.get_state(inference_only=True) for mid, p in self.policies.items()}

    def get_module(self, module_id=None):
        from ..core import DEFAULT_MODULE_ID
        return self.policies[module_id or DEFAULT_MODULE_ID].module

    def _epsilon(self):
        sched = getattr(self.config, "epsilon", None)
        if sched is None:
            return 0.0
        if isinstance(sched, (int, float)):
            return float(sched)
        pts = list(sched)
        t = self.global_env_steps
        if t <= pts[0][0]:
            return float(pts[0][1])
        for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
            if t < t1:
                return float(v0 + (v1 - v0) * (t - t0) / max(1, t1 - t0))
        return float(pts[-1][1])

    def get_state(self):
        return {"num_env_steps_sampled_lifetime": self.num_env_steps_lifetime,
                "weights_seq_no": self.weights_seq_no}

    def set_state(self, state):
        self.num_env_steps_lifetime = state.get("num_env_steps_sampled_lifetime", self.num_env_steps_lifetime)

    def stop(self):
        try:
            self.close_env()
        except Exception:
            pass
        return True
