"""``Result`` of ``trainer.fit()`` (Ray 2.60's ``ray.train.Result``)."""

import os
from dataclasses import dataclass
from typing import Any

from ._result import Result as _TuneResult


@dataclass(repr=False)
class Result(_TuneResult):
    """metrics: the last report's metrics (rank 0); checkpoint: the latest checkpoint;
    best_checkpoints: ``[(Checkpoint, metrics)]`` kept by the CheckpointConfig, oldest first
    (best last with a score attribute); metrics_dataframe: every report of the run (from
    ``progress.csv``); path: the run directory; error: the ``TrainingFailedError`` of a failed
    run; return_value: what rank 0's loop returned."""

    return_value: Any = None

    @property
    def config(self):
        raise DeprecationWarning("The `config` property for a `ray.train.Result` is deprecated, since it is "
                                 "only relevant in the context of Ray Tune.")

    @classmethod
    def from_path(cls, path, storage_filesystem=None):
        """The result of the run stored in ``path`` (a run directory)."""
        from ._internal.checkpoint_manager import CheckpointManager
        from ._internal.storage import RunStorage
        path = os.path.abspath(os.path.expanduser(os.fspath(path))).rstrip(os.sep)
        if not os.path.isdir(path):
            raise RuntimeError(f"Experiment folder {path} doesn't exist.")
        storage = RunStorage(os.path.dirname(path), os.path.basename(path), create=False)
        if not os.path.exists(storage.snapshot_path):
            raise RuntimeError(f"Failed to restore the Result object: {os.path.basename(storage.snapshot_path)} "
                               "doesn't exist in the experiment folder. Make sure that this is an output "
                               "directory created by a training run.")
        manager = CheckpointManager(storage, None)
        return manager.build_result(error=None)
