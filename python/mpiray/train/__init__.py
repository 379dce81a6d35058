"""mpiray.train (Ray's ``ray.train``, Ray 2.60 / Train V2 names): distributed training on
mpiray's actors.

    from mpiray import train
    from mpiray.train import ScalingConfig, RunConfig, CheckpointConfig, FailureConfig, Checkpoint
    from mpiray.train.torch import TorchTrainer, prepare_model, prepare_data_loader, get_device

    trainer = TorchTrainer(train_loop_per_worker, train_loop_config={...},
                           scaling_config=ScalingConfig(num_workers=4),
                           run_config=RunConfig(storage_path="/scratch/runs", name="mlp"))
    result = trainer.fit()

Workers are actors in one placement group; the controller runs in the driver; the run
directory (``<storage_path>/<name>``) holds the checkpoints, ``progress.csv``, ``result.json``
and the snapshot a later ``fit()`` (or a requeued Slurm job) resumes from. See docs/train.md.

The classes Tune uses from here (``Checkpoint``, ``mpiray.train._config``'s ``RunConfig``...)
are the shared ones; ``mpiray.train.RunConfig``/``CheckpointConfig``/``FailureConfig``/
``Result`` are Train's, as ``ray.train``'s differ from ``ray.tune``'s in Ray 2.60.
"""

from ._callback import RayTrainCallback, TrainRunContext, UserCallback
from ._checkpoint import Checkpoint
from ._config import SyncConfig
from ._exceptions import ControllerError, PreemptionError, TrainingFailedError, WorkerGroupError
from ._session import TrainContext, current_session
from ._session import _require as _require_session
from ._train_config import (CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig,
                            ScalingConfig)
from ._train_result import Result
from ._internal.worker import PreemptionInfo
from .backend import BackendConfig

TRAIN_DATASET_KEY = "train"


def report(metrics, checkpoint=None, checkpoint_dir_name=None, checkpoint_upload_mode=None,
           delete_local_checkpoint_after_upload=None, checkpoint_upload_fn=None, validation=False):
    """Report ``metrics`` (a dict) and optionally a ``Checkpoint`` from every worker.

    The checkpoint's files are copied into the run directory (``checkpoint_<report
    index>``; workers that report their own shards write into the same directory) and the
    local directory may be deleted afterwards. The report counts once every worker made it;
    ``Result.metrics`` are rank 0's. Raises ``RuntimeError`` outside a training function or
    Tune trial."""
    if not isinstance(metrics, dict):
        raise TypeError(f"report() expects a dict of metrics, got {type(metrics).__name__}")
    if checkpoint_upload_fn is not None:
        raise NotImplementedError("report(checkpoint_upload_fn=...) is not supported: storage is a shared file system")
    s = _require_session("report()")
    if hasattr(s, "get_dataset_shard"):
        s.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=checkpoint_dir_name,
                 delete_local_checkpoint_after_upload=delete_local_checkpoint_after_upload)
    else:
        s.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=checkpoint_dir_name)


def get_checkpoint():
    """The checkpoint to resume from (the run's latest when the worker group started:
    after a failure, a resize, a restore or a requeue), or None."""
    return _require_session("get_checkpoint()").get_checkpoint()


def get_context():
    """The worker's :class:`TrainContext` (world/local/node rank and size, experiment name;
    trial name/id/dir inside a Tune trial)."""
    return TrainContext(_require_session("get_context()").context())


def get_dataset_shard(dataset_name=None):
    """This worker's shard of ``datasets[dataset_name]`` given to the trainer (default
    ``"train"``)."""
    s = _require_session("get_dataset_shard()")
    if not hasattr(s, "get_dataset_shard"):
        raise RuntimeError("get_dataset_shard() can only be called inside a training worker (a trainer's "
                           "train_loop_per_worker)")
    return s.get_dataset_shard(dataset_name or TRAIN_DATASET_KEY)


def get_preemption_info():
    """``PreemptionInfo`` once the job got its walltime warning (Slurm ``--signal``), else None.
    A barrier: every worker must call it equally often. Save a checkpoint when it is not None;
    the requeued job resumes from it."""
    s = _require_session("get_preemption_info()")
    if not hasattr(s, "get_preemption_info"):
        return None
    return s.get_preemption_info()


def get_all_reported_checkpoints(consistency_mode=None, timeout_s=None):
    """The checkpoints the run had committed when this worker group started."""
    s = _require_session("get_all_reported_checkpoints()")
    return s.get_all_reported_checkpoints() if hasattr(s, "get_all_reported_checkpoints") else []


from .data_parallel_trainer import DataParallelTrainer  # noqa: E402

__all__ = [
    "get_checkpoint", "get_context", "get_dataset_shard", "report", "get_preemption_info",
    "get_all_reported_checkpoints", "BackendConfig", "Checkpoint", "CheckpointConfig", "DataConfig",
    "FailureConfig", "Result", "RunConfig", "ScalingConfig", "SyncConfig", "TrainContext", "TrainingFailedError",
    "TRAIN_DATASET_KEY", "ControllerError", "WorkerGroupError", "PreemptionError", "PreemptionInfo",
    "LoggingConfig", "UserCallback", "DataParallelTrainer",
]
