"""``LearnerGroup`` (Ray's): one local learner, or ``num_learners`` learner actors whose
gradients are averaged every step.

Batches reach remote learners as object refs: an env runner's rollout goes from the runner's
node store straight to the learner that trains on it (the algorithm's process never copies
it); weights go back to the runners as one object (``get_weights_ref``): the learner's
returned value, stored once, read by every runner.
"""

import uuid

import numpy as np

from .learner import concat_batches


class _LearnerActor:
    """Hosts one ``Learner`` in an actor."""

    def __init__(self, learner_cls, config, module_specs, rank, world_size):
        self.learner = learner_cls(config=config, module_specs=module_specs, rank=rank, world_size=world_size)
        self.learner.build()

    def collective_address(self):
        return self.learner.collective_address()

    def init_collective(self, backend, group_name, address):
        return self.learner.init_collective(backend, group_name, address)

    def update(self, batch_parts, timesteps, split=None):
        """``batch_parts``: ``{mid: batch}`` dicts or refs to them (read here from this node's
        store: the rollouts do not pass through the algorithm's process)."""
        import mpiray
        refs = [p for p in batch_parts if isinstance(p, mpiray.ObjectRef)]
        got = dict(zip(map(id, refs), mpiray.get(refs))) if refs else {}
        batch_parts = [got.get(id(p), p) for p in batch_parts]
        per_module = {}
        for part in batch_parts:
            for mid, b in part.items():
                per_module.setdefault(mid, []).append(b)
        batches = {mid: concat_batches(bs) for mid, bs in per_module.items()}
        if split is not None:
            idx, n = split
            batches = {mid: _split_columns(b, idx, n) for mid, b in batches.items()}
        return self.learner.update(batches, timesteps)

    def call(self, name, *args, **kwargs):
        return getattr(self.learner, name)(*args, **kwargs)

    def apply(self, fn):
        return fn(self.learner)

    def get_weights(self, module_ids=None, inference_only=True):
        return self.learner.get_weights(module_ids, inference_only)

    def get_state(self):
        return self.learner.get_state()

    def set_state(self, state):
        return self.learner.set_state(state)

    def ping(self):
        return self.learner.ping()

    def stop(self):
        return self.learner.stop()


def _split_columns(batch, idx, n):
    N = batch["obs"].shape[1]
    per = N // n
    if per == 0:
        raise ValueError(f"cannot split a batch of {N} env columns over {n} learners: use more envs per runner "
                         "or fewer learners")
    sl = slice(idx * per, (idx + 1) * per)
    return {k: (v[sl] if k == "bootstrap_obs" else v[:, sl]) for k, v in batch.items()}


class LearnerGroup:
    """The algorithm's learners."""

    def __init__(self, config, learner_cls, module_specs):
        import mpiray
        self.config = config
        self.learner_cls = learner_cls
        self.module_specs = module_specs
        self._local = None
        self._actors = []
        n = config.num_learners
        if n == 0:
            self._local = learner_cls(config=config, module_specs=module_specs, rank=0, world_size=1)
            self._local.build()
            return
        opts = {"num_cpus": 0 if config._in_tune_trial else
                (1 if config.num_cpus_per_learner == "auto" else config.num_cpus_per_learner),
                "num_gpus": config.num_gpus_per_learner or 0}  # one call at a time: updates queue
        cls = mpiray.remote(**opts)(_LearnerActor)
        self._actors = [cls.remote(learner_cls, config, module_specs, r, n) for r in range(n)]
        mpiray.get([a.ping.remote() for a in self._actors])
        if n > 1:
            backend = config.learner_collective_backend
            if backend == "auto":
                backend = "mpiray" if _has_mpiray_collective() else "torch"
            group = f"rllib-learners-{uuid.uuid4().hex[:8]}"
            addr = mpiray.get(self._actors[0].collective_address.remote()) if backend == "torch" else None
            mpiray.get([a.init_collective.remote(backend, group, addr) for a in self._actors])
            self.collective_backend = backend
            # every replica starts from learner 0's weights (then the averaged gradients keep them equal)
            w = self._actors[0].get_weights.remote(None, False)
            mpiray.get([a.call.remote("set_weights", w) for a in self._actors[1:]])
        else:
            self.collective_backend = None

    @property
    def is_local(self):
        return self._local is not None

    @property
    def num_learners(self):
        return max(1, len(self._actors))

    @property
    def local_learner(self):
        return self._local

    # ------------------------------------------------------------------ updates
    def update(self, batch_parts, timesteps=None):
        """Train on runner outputs (values or refs); returns the learner results (the first
        learner's, which all replicas share for the weights; losses are each learner's own)."""
        return self._collect(self.update_async(batch_parts, timesteps))

    def update_async(self, batch_parts, timesteps=None):
        """Start an update; returns a handle for ``_collect`` (remote learners train while the
        caller goes on)."""
        import mpiray
        timesteps = timesteps or {}
        if self._local is not None:
            parts = [mpiray.get(p) if isinstance(p, mpiray.ObjectRef) else p for p in batch_parts]
            per_module = {}
            for part in parts:
                for mid, b in part.items():
                    per_module.setdefault(mid, []).append(b)
            batches = {mid: concat_batches(bs) for mid, bs in per_module.items()}
            return ("local", self._local.update(batches, timesteps))
        n = len(self._actors)
        if n == 1:
            return ("remote", [self._actors[0].update.remote(list(batch_parts), timesteps)])
        if len(batch_parts) % n == 0:
            # runner i -> learner i % n: each learner reads its rollouts from the store directly
            shards = [batch_parts[i::n] for i in range(n)]
            return ("remote", [a.update.remote(s, timesteps) for a, s in zip(self._actors, shards)])
        # uneven: every learner reads all rollouts and trains on its share of the env columns
        return ("remote", [a.update.remote(list(batch_parts), timesteps, (i, n))
                           for i, a in enumerate(self._actors)])

    def _collect(self, handle):
        import mpiray
        kind, val = handle
        if kind == "local":
            return val
        results = mpiray.get(val)
        return _average_results(results)

    def is_ready(self, handle):
        import mpiray
        kind, val = handle
        if kind == "local":
            return True
        ready, _ = mpiray.wait(val, num_returns=len(val), timeout=0)
        return len(ready) == len(val)

    # ------------------------------------------------------------------ weights and state
    def get_weights(self, module_ids=None, inference_only=True):
        import mpiray
        if self._local is not None:
            return self._local.get_weights(module_ids, inference_only)
        return mpiray.get(self._actors[0].get_weights.remote(module_ids, inference_only))

    def get_weights_ref(self, module_ids=None):
        """The weights as one object in the store (one put, read by every runner)."""
        import mpiray
        if self._local is not None:
            return mpiray.put(self._local.get_weights(module_ids, True))
        return self._actors[0].get_weights.remote(module_ids, True)

    def set_weights(self, weights):
        import mpiray
        if self._local is not None:
            self._local.set_weights(weights)
        else:
            mpiray.get([a.call.remote("set_weights", weights) for a in self._actors])

    def get_state(self):
        import mpiray
        if self._local is not None:
            return self._local.get_state()
        return mpiray.get(self._actors[0].get_state.remote())

    def set_state(self, state):
        import mpiray
        if self._local is not None:
            self._local.set_state(state)
        else:
            mpiray.get([a.set_state.remote(state) for a in self._actors])

    def call(self, name, *args, **kwargs):
        """Call a learner method on every learner; returns the first learner's result."""
        import mpiray
        if self._local is not None:
            return getattr(self._local, name)(*args, **kwargs)
        return mpiray.get([a.call.remote(name, *args, **kwargs) for a in self._actors])[0]

    def get_module(self, module_id):
        """The module (local learner), or a copy built from the first learner's weights."""
        if self._local is not None:
            return self._local.get_module(module_id)
        spec = self.module_specs[module_id]
        m = spec.build()
        m.set_state(self.get_weights([module_id], inference_only=False)[module_id])
        return m

    def foreach_learner(self, fn):
        """``fn(learner)`` on every learner; the list of results."""
        import mpiray
        if self._local is not None:
            return [fn(self._local)]
        return mpiray.get([a.apply.remote(fn) for a in self._actors])

    def stop(self):
        import mpiray
        if self._local is not None:
            self._local.stop()
            return
        try:
            mpiray.get([a.stop.remote() for a in self._actors], timeout=10)
        except Exception:
            pass
        for a in self._actors:
            try:
                mpiray.kill(a)
            except Exception:
                pass
        self._actors = []


def _has_mpiray_collective():
    try:
        import mpiray.util.collective as col
        return hasattr(col, "init_collective_group") and col.is_backend_available("ucx")
    except Exception:
        return False


def _average_results(results):
    """Mean of numeric leaves over the learners' results (counts summed)."""
    if len(results) == 1:
        return results[0]

    def merge(vals, key=""):
        v0 = vals[0]
        if isinstance(v0, dict):
            return {k: merge([v.get(k) for v in vals if isinstance(v, dict) and k in v], k) for k in v0}
        if isinstance(v0, (int, float, np.floating, np.integer)) and not isinstance(v0, bool):
            if key.startswith("num_"):
                return sum(vals)
            return float(np.mean(vals))
        return v0
    return merge(results)
