"""Run-level configuration shared by Tune and Train (Ray's ``RunConfig``,
``CheckpointConfig``, ``FailureConfig``, ``SyncConfig``)."""

import os
from dataclasses import dataclass, field
from typing import Any, Callable, List, Mapping, Optional, Union


@dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps and when class trainables save.

    num_to_keep: keep at most this many checkpoints per trial (the best by
        ``checkpoint_score_attribute``, else the latest; the latest is never deleted while it
        is the one to resume from). None keeps all.
    checkpoint_frequency: class ``Trainable``: save every this many iterations (0: never).
    checkpoint_at_end: class ``Trainable``: save when the trial ends.
    """

    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: Optional[bool] = None

    def __post_init__(self):
        if self.num_to_keep is not None and self.num_to_keep <= 0:
            raise ValueError(f"Received invalid num_to_keep: {self.num_to_keep}. "
                             "Must be None or an integer >= 1.")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError("checkpoint_score_order must be 'max' or 'min', got "
                             f"{self.checkpoint_score_order!r}")
        if self.checkpoint_frequency < 0:
            raise ValueError(f"checkpoint_frequency must be >= 0, got {self.checkpoint_frequency}")


@dataclass
class FailureConfig:
    """max_failures: how often a trial is restarted (from its latest checkpoint) after its
    trainable raised or its worker died; -1: forever. fail_fast: stop the whole experiment at
    the first trial error (``"raise"``: and raise it from ``fit()``)."""

    max_failures: int = 0
    fail_fast: Union[bool, str] = False

    def __post_init__(self):
        if not (isinstance(self.fail_fast, bool) or self.fail_fast == "raise"):
            raise ValueError(f"fail_fast must be a bool or 'raise', got {self.fail_fast!r}")


@dataclass
class SyncConfig:
    """Accepted for Ray compatibility: storage is a file system every node sees, nothing is
    synced."""

    sync_period: int = 300
    sync_timeout: int = 1800
    sync_artifacts: bool = False
    sync_artifacts_on_checkpoint: bool = True


@dataclass
class RunConfig:
    """Where a run lives and how it stops and recovers.

    name: the experiment directory's name under ``storage_path`` (default
        ``<trainable>_<date>``).
    storage_path: default ``~/mpiray_results`` (``$MPIRAY_RESULTS_DIR`` overrides; not Ray's
        ``~/ray_results``, which real Ray jobs of the same user write to), a directory every
        node sees. A given path is used as it is.
    stop: a dict ``{result key: threshold}``, a function ``(trial_id, result) -> bool`` or a
        ``tune.Stopper``.
    callbacks: ``tune.Callback`` objects (logger callbacks included).
    verbose: 0 silent, 1 status table and trial starts/ends (default), 2 every result.
    """

    name: Optional[str] = None
    storage_path: Optional[str] = None
    storage_filesystem: Any = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    sync_config: Optional[SyncConfig] = None
    verbose: Optional[int] = None
    stop: Optional[Union[Mapping, Callable, Any]] = None
    callbacks: Optional[List[Any]] = None
    progress_reporter: Any = None
    log_to_file: Union[bool, str] = False

    def __post_init__(self):
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.sync_config is None:
            self.sync_config = SyncConfig()
        if self.storage_path is not None:
            self.storage_path = os.path.abspath(os.path.expanduser(os.fspath(self.storage_path)))

    def resolved_storage_path(self):
        """The storage root: ``storage_path``, ``$MPIRAY_RESULTS_DIR`` or ``~/mpiray_results``."""
        return self.storage_path or os.path.abspath(os.path.expanduser(
            os.environ.get("MPIRAY_RESULTS_DIR") or "~/mpiray_results"))
