"""``BackendConfig`` and ``Backend`` (Ray's ``ray.train.backend``): what a framework does
when the worker group starts and stops."""

import contextlib


class BackendConfig:
    """Base of framework configurations (``TorchConfig``, ``TensorflowConfig``, ...)."""

    @property
    def backend_cls(self):
        return Backend

    @property
    def train_func_context(self):
        return contextlib.nullcontext

    @property
    def framework(self):
        return None

    def to_dict(self):
        return {}


class Backend:
    """Hooks run by the controller with the worker group (``worker_group.execute(fn, ...)``
    runs ``fn`` on every worker and returns the results in rank order)."""

    share_cuda_visible_devices = False

    def on_start(self, worker_group, backend_config):
        """After the workers exist and know their ranks (e.g. set up a process group)."""

    def on_training_start(self, worker_group, backend_config):
        """Right before the training function starts on the workers."""

    def on_shutdown(self, worker_group, backend_config):
        """Before the workers are stopped (may be called on a broken group)."""
