"""``Learner`` (Ray's ``ray.rllib.core.learner.learner``): owns the trainable modules and their
optimizers and turns batches into gradient steps.

A learner runs in the algorithm's process (``num_learners=0``) or in one of several learner
actors; with several, every gradient is averaged across them before the optimizer step
(``mpiray.util.collective`` all-reduce when available, else torch.distributed over gloo, or
NCCL on GPUs), so the replicas stay identical. Subclasses implement ``update``.
"""

import math
import os
import socket

import numpy as np
import torch

from ...utils._threads import limit_threads
from ..rl_module.rl_module import MultiRLModule


class Learner:
    """Base class; the algorithms' learners implement ``update(batches, timesteps)``."""

    def __init__(self, *, config, module_specs, rank=0, world_size=1):
        self.config = config
        self.module_specs = module_specs
        self.rank = rank
        self.world_size = world_size
        self.module = None
        self.optimizers = {}
        self._collective = None
        self._num_updates = 0
        self._built = False

    # ------------------------------------------------------------------ building
    def build(self):
        if self._built:
            return
        cfg = self.config
        cpus = cfg.num_cpus_per_learner
        limit_threads(1 if cpus in ("auto", None) else max(1, int(cpus)))
        if cfg.seed is not None:
            torch.manual_seed(int(cfg.seed) + 17 * self.rank)
        self.device = torch.device("cpu")
        if cfg.num_gpus_per_learner and cfg.num_gpus_per_learner > 0 and torch.cuda.is_available():
            idx = cfg.local_gpu_idx if cfg.num_learners == 0 else 0
            self.device = torch.device(f"cuda:{idx}")
        self.module = MultiRLModule({mid: spec.build() for mid, spec in self.module_specs.items()})
        self.module.to(self.device)
        self.module_configs = {mid: cfg.get_config_for_module(mid) for mid in self.module.keys()}
        for mid in self.module.keys():
            self.optimizers[mid] = self.configure_optimizer(mid, self.module[mid], self.module_configs[mid])
        self.after_build()
        self._built = True

    def configure_optimizer(self, module_id, module, config):
        params = [p for p in module.parameters() if p.requires_grad]
        kw = dict(config.optimizer or {})
        eps = kw.pop("eps", getattr(config, "adam_epsilon", 1e-8))
        lr = self._lr_value(config, 0)
        if self.device.type == "cpu" and "fused" not in kw and "foreach" not in kw:
            try:  # one kernel per step instead of ~10 ops per parameter (small nets: most of the cost)
                return torch.optim.Adam(params, lr=lr, eps=eps, fused=True, **kw)
            except (RuntimeError, TypeError, ValueError):
                pass
        return torch.optim.Adam(params, lr=lr, eps=eps, **kw)

    def after_build(self):
        pass

    @staticmethod
    def _lr_value(config, timestep):
        lr = config.lr
        if isinstance(lr, (list, tuple)):
            return _piecewise(lr, timestep)
        return float(lr)

    def _update_lr(self, timestep):
        for mid, opt in self.optimizers.items():
            cfg = self.module_configs[mid]
            if isinstance(cfg.lr, (list, tuple)):
                for g in opt.param_groups:
                    g["lr"] = _piecewise(cfg.lr, timestep)

    # ------------------------------------------------------------------ collective
    def collective_address(self):
        """rank 0: an address for torch.distributed's rendezvous."""
        s = socket.socket()
        s.bind(("", 0))
        port = s.getsockname()[1]
        s.close()
        return f"tcp://{socket.gethostbyname(socket.gethostname())}:{port}"

    def init_collective(self, backend, group_name, address=None):
        """Join the learners' gradient group (called on every learner by the LearnerGroup)."""
        if self.world_size <= 1:
            return True
        if backend == "mpiray":
            import mpiray.util.collective as col
            col.init_collective_group(self.world_size, self.rank, backend="ucx", group_name=group_name)
            self._collective = ("mpiray", group_name, col)
        else:
            import torch.distributed as dist
            be = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(be, init_method=address, rank=self.rank, world_size=self.world_size)
            self._collective = ("torch", None, dist)
        return True

    def _allreduce_mean(self, flat):
        kind, group, lib = self._collective
        if kind == "mpiray":
            arr = flat.detach().cpu().numpy() if flat.device.type != "cpu" else flat.detach().numpy()
            lib.allreduce(arr, group_name=group)
            if flat.device.type != "cpu":
                flat.copy_(torch.from_numpy(arr))
        else:
            lib.all_reduce(flat)
        flat.div_(self.world_size)
        return flat

    # ------------------------------------------------------------------ gradient steps
    def apply_loss(self, module_id, loss, diagnostics=None):
        """Backward, average across learners, clip, step. Raises FloatingPointError on a
        non-finite loss or gradient (nothing is applied)."""
        cfg = self.module_configs[module_id]
        opt = self.optimizers[module_id]
        if self.world_size <= 1 and not math.isfinite(loss.item()):
            raise FloatingPointError(self._nan_message(module_id, loss, diagnostics))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        if self._collective is not None:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            self._allreduce_mean(flat)
            if not torch.isfinite(flat).all():
                raise FloatingPointError(self._nan_message(module_id, loss, diagnostics, across=True))
            off = 0
            for p, g in zip(params, grads):
                n = g.numel()
                if p.grad is None:
                    p.grad = g
                p.grad.copy_(flat[off:off + n].view_as(g))
                off += n
        gnorm = None
        clip = cfg.grad_clip
        if clip is not None:
            if cfg.grad_clip_by == "global_norm":
                gnorm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            elif cfg.grad_clip_by == "norm":
                for p in params:
                    if p.grad is not None:
                        torch.nn.utils.clip_grad_norm_([p], clip)
            else:
                torch.nn.utils.clip_grad_value_(params, clip)
        opt.step()
        self._num_updates += 1
        return gnorm

    def _nan_message(self, module_id, loss, diagnostics, across=False):
        if callable(diagnostics):
            diagnostics = diagnostics()
        parts = ", ".join(f"{k}={float(v):.4g}" for k, v in (diagnostics or {}).items())
        where = "a gradient averaged across the learners" if across else f"the loss ({float(loss)})"
        return (f"{type(self).__name__}: {where} of module {module_id!r} is not finite (NaN or inf) at update "
                f"{self._num_updates}; nothing was applied. Terms: {parts or 'n/a'}. Check the env's rewards "
                "and observations for NaN/inf, or lower lr / set grad_clip.")

    @staticmethod
    def check_finite_inputs(batch, module_id):
        """Names of batch columns holding NaN/inf (for error messages)."""
        bad = []
        for k, v in batch.items():
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and not np.isfinite(v).all():
                bad.append(k)
        return bad

    # ------------------------------------------------------------------ weights and state
    def get_weights(self, module_ids=None, inference_only=True):
        return {mid: self.module[mid].get_state(inference_only=inference_only)
                for mid in (module_ids or self.module.keys())}

    def set_weights(self, weights):
        for mid, st in weights.items():
            if mid in self.module:
                self.module[mid].set_state(st)

    def get_module(self, module_id):
        return self.module[module_id]

    def get_state(self):
        return {"rl_module": {mid: self.module[mid].get_state() for mid in self.module.keys()},
                "optimizer": {mid: _to_numpy_tree(opt.state_dict()) for mid, opt in self.optimizers.items()},
                "num_updates": self._num_updates, "extra": self.get_extra_state()}

    def set_state(self, state):
        for mid, st in state.get("rl_module", {}).items():
            if mid in self.module:
                self.module[mid].set_state(st)
        for mid, st in state.get("optimizer", {}).items():
            if mid in self.optimizers:
                self.optimizers[mid].load_state_dict(_to_torch_tree(st, self.device))
        self._num_updates = state.get("num_updates", self._num_updates)
        self.set_extra_state(state.get("extra", {}))
        return True

    def get_extra_state(self):
        return {}

    def set_extra_state(self, state):
        pass

    def ping(self):
        return {"pid": os.getpid(), "host": socket.gethostname(), "rank": self.rank}

    def stop(self):
        if self._collective is not None and self._collective[0] == "torch":
            try:
                self._collective[2].destroy_process_group()
            except Exception:
                pass
        elif self._collective is not None:
            try:
                self._collective[2].destroy_collective_group(self._collective[1])
            except Exception:
                pass
        self._collective = None
        return True


def _piecewise(points, t):
    pts = [(float(a), float(b)) for a, b in points]
    if t <= pts[0][0]:
        return pts[0][1]
    for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
        if t < t1:
            return v0 + (v1 - v0) * (t - t0) / max(1e-12, t1 - t0)
    return pts[-1][1]


def _to_numpy_tree(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, dict):
        return {k: _to_numpy_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_numpy_tree(v) for v in x)
    return x


def _to_torch_tree(x, device):
    if isinstance(x, np.ndarray):
        return torch.as_tensor(x, device=device) if x.ndim > 0 else torch.tensor(x.item())
    if isinstance(x, dict):
        return {k: _to_torch_tree(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_torch_tree(v, device) for v in x)
    return x


def piecewise(points, t):
    """A value from a schedule ``[[t0, v0], [t1, v1], ...]`` (linear in between) or a number."""
    if isinstance(points, (list, tuple)):
        return _piecewise(points, t)
    return float(points)


def explained_variance(y, pred):
    var_y = torch.var(y)
    if var_y.item() == 0:
        return torch.tensor(0.0)
    return torch.clamp(1.0 - torch.var(y - pred) / var_y, min=-1.0)


def as_tensor(x, device, dtype=None):
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device) if device.type != "cpu" else t


def concat_batches(batches):
    """Runner batches of one module, ``[T, N_i]`` each, joined along the env axis (or along
    time when their T differ, as multi-agent ones do: each ends in a masked row)."""
    if len(batches) == 1:
        return batches[0]
    Ts = {b["obs"].shape[0] for b in batches}
    out = {}
    if len(Ts) == 1:
        for k in batches[0]:
            axis = 0 if k == "bootstrap_obs" else 1
            out[k] = np.concatenate([b[k] for b in batches], axis=axis)
        return out
    # different lengths (N == 1 each): along time
    for k in batches[0]:
        if k == "bootstrap_obs":
            out[k] = batches[-1][k]
        else:
            out[k] = np.concatenate([b[k] for b in batches], axis=0)
    return out


_ = math
