"""mpiray.train (Ray's ``ray.train``): the pieces Tune shares with Train.

Built so far: ``report``, ``get_checkpoint``, ``get_context``, ``Checkpoint``,
``RunConfig``, ``CheckpointConfig``, ``FailureConfig``, ``SyncConfig`` and ``Result``; a Tune
trial uses them exactly as in Ray. Trainers (``TorchTrainer`` and friends) are not built yet:
they plug in through :class:`mpiray.train._session.Session` (what ``report`` talks to) and
``mpiray.tune``'s trainable registry (a trainer's ``as_trainable()``).
"""

from ._checkpoint import Checkpoint
from ._config import CheckpointConfig, FailureConfig, RunConfig, SyncConfig
from ._result import Result
from ._session import TrainContext, get_checkpoint, get_context, report

__all__ = ["Checkpoint", "CheckpointConfig", "FailureConfig", "RunConfig", "SyncConfig",
           "Result", "TrainContext", "get_checkpoint", "get_context", "report"]
