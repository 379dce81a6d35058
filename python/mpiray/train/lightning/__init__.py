"""mpiray.train.lightning (Ray's ``ray.train.lightning``): run a Lightning ``Trainer`` inside a
``TorchTrainer``'s training function.

    def train_func():
        trainer = pl.Trainer(devices="auto", accelerator="auto",
                             strategy=RayDDPStrategy(), plugins=[RayLightningEnvironment()],
                             callbacks=[RayTrainReportCallback()], enable_checkpointing=False)
        trainer = prepare_trainer(trainer)
        trainer.fit(model, datamodule=dm)

    TorchTrainer(train_func, scaling_config=ScalingConfig(num_workers=2)).fit()

The process group is the one TorchTrainer set up (its rendezvous, gloo/NCCL/mpiray);
Lightning finds it initialised and uses it. Ranks, world size and device come from
``mpiray.train.get_context()``.
"""

import os
import shutil
import tempfile

try:
    import lightning.pytorch as pl
    from lightning.pytorch.plugins.environments import LightningEnvironment
except ModuleNotFoundError:  # pragma: no cover
    try:
        import pytorch_lightning as pl
        from pytorch_lightning.plugins.environments import LightningEnvironment
    except ModuleNotFoundError:
        raise ModuleNotFoundError("PyTorch Lightning isn't installed. To install PyTorch Lightning, please run "
                                  "'pip install lightning'")

import torch

from ... import train
from .._checkpoint import Checkpoint


def _device():
    from ..torch import get_device
    return get_device()


class RayDDPStrategy(pl.strategies.DDPStrategy):
    """Lightning's DDPStrategy on the worker group's process group and device. Set the
    backend and timeout in ``TorchConfig``, not here."""

    @property
    def root_device(self):
        return _device()

    @property
    def distributed_sampler_kwargs(self):
        return dict(num_replicas=self.world_size, rank=self.global_rank)

    def configure_ddp(self):
        super().configure_ddp()
        from ..torch.config import backend_in_use
        if backend_in_use() == "mpiray":
            from ..torch._mpiray_hook import register_mpiray_hook
            register_mpiray_hook(self.model)


class RayFSDPStrategy(pl.strategies.FSDPStrategy):
    """Lightning's FSDPStrategy on the worker group's process group and device (GPUs)."""

    @property
    def root_device(self):
        return _device()

    @property
    def distributed_sampler_kwargs(self):
        return dict(num_replicas=self.world_size, rank=self.global_rank)


class RayLightningEnvironment(LightningEnvironment):
    """Lightning's cluster environment from the training context."""

    def world_size(self):
        return train.get_context().get_world_size()

    def global_rank(self):
        return train.get_context().get_world_rank()

    def local_rank(self):
        return train.get_context().get_local_rank()

    def node_rank(self):
        return train.get_context().get_node_rank()

    def set_world_size(self, size):
        pass

    def set_global_rank(self, rank):
        pass

    def teardown(self):
        pass


def prepare_trainer(trainer):
    """Check that the Lightning trainer uses a Ray strategy and environment; returns it."""
    valid = (RayDDPStrategy, RayFSDPStrategy)
    if not isinstance(trainer.strategy, valid):
        raise RuntimeError(f"Invalid strategy class: {type(trainer.strategy)}. To use PyTorch Lightning with "
                           f"mpiray.train, the strategy object should be one of {[c.__name__ for c in valid]} "
                           "class or its subclass.")
    env = getattr(trainer.strategy, "cluster_environment", None)
    if env is not None and not isinstance(env, RayLightningEnvironment):
        raise RuntimeError("Invalid cluster environment plugin. The expected class is "
                           f"`mpiray.train.lightning.RayLightningEnvironment` but got {type(env)}!")
    return trainer


class RayTrainReportCallback(pl.callbacks.Callback):
    """At each training epoch's end: report ``trainer.callback_metrics`` (plus ``epoch`` and
    ``step``) with a checkpoint holding ``checkpoint.ckpt`` (Lightning's own format)."""

    CHECKPOINT_NAME = "checkpoint.ckpt"

    def __init__(self, checkpoint_upload_mode=None, validation=False):
        super().__init__()
        ctx = train.get_context()
        self.tmpdir_prefix = os.path.join(
            tempfile.gettempdir(), f"lightning_checkpoints-pid={os.getpid()}-name={ctx.get_experiment_name()}"
                                   f"-world_rank={ctx.get_world_rank()}")
        shutil.rmtree(self.tmpdir_prefix, ignore_errors=True)

    def on_train_epoch_end(self, trainer, pl_module):
        tmpdir = os.path.join(self.tmpdir_prefix, str(trainer.current_epoch))
        os.makedirs(tmpdir, exist_ok=True)
        metrics = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in trainer.callback_metrics.items()}
        metrics["epoch"] = trainer.current_epoch
        metrics["step"] = trainer.global_step
        trainer.save_checkpoint(os.path.join(tmpdir, self.CHECKPOINT_NAME), weights_only=False)
        ckpt = Checkpoint.from_directory(tmpdir) if trainer.global_rank == 0 else None
        train.report(metrics=metrics, checkpoint=ckpt)
        trainer.strategy.barrier()
        shutil.rmtree(tmpdir, ignore_errors=True)

    def teardown(self, trainer, pl_module, stage):
        shutil.rmtree(self.tmpdir_prefix, ignore_errors=True)


__all__ = ["prepare_trainer", "RayDDPStrategy", "RayFSDPStrategy", "RayLightningEnvironment", "RayTrainReportCallback"]
