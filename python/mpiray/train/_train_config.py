"""Train's configuration classes (Ray 2.60's ``ray.train`` names, Train V2 semantics):
``ScalingConfig``, ``RunConfig``, ``CheckpointConfig``, ``FailureConfig``, ``DataConfig``,
``LoggingConfig``.

Tune keeps its own ``RunConfig``/``CheckpointConfig``/``FailureConfig`` (``mpiray.tune``,
``mpiray.train._config``), exactly as Ray 2.60 has ``ray.tune.RunConfig`` next to
``ray.train.RunConfig``.
"""

import logging
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

_DEPRECATED = "DEPRECATED"

#: The default storage root (``RunConfig(storage_path=None)``); ``$MPIRAY_RESULTS_DIR`` overrides.
DEFAULT_STORAGE_PATH = "~/mpiray_results"


def default_storage_path():
    return os.path.abspath(os.path.expanduser(os.environ.get("MPIRAY_RESULTS_DIR", DEFAULT_STORAGE_PATH)))


def _date_str(include_ms=False):
    now = time.time()
    s = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    if include_ms:
        s += f".{int((now % 1) * 1e6):06d}"
    return s


def default_run_name():
    """``ray_train_run-<date>`` as Ray; inside a Slurm job ``ray_train_run-slurm<jobid>``, so a
    job that is requeued (same job id) finds and resumes its own run without user code."""
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        array = os.environ.get("SLURM_ARRAY_TASK_ID")
        return f"ray_train_run-slurm{job}" + (f"_{array}" if array else "")
    return f"ray_train_run-{_date_str()}"


@dataclass
class ScalingConfig:
    """How many training workers and what each one holds.

    num_workers: the number of workers (actors, one process each); ``(min, max)`` for an
        elastic run that starts with what is available and grows or shrinks between the two
        (restarting from the latest checkpoint); 0 runs the loop in the driver (local mode).
    use_gpu: one GPU per worker (unless ``resources_per_worker`` says otherwise); NCCL.
    resources_per_worker: e.g. ``{"CPU": 2, "GPU": 1, "memory": 4e9, "licence": 1}``;
        default ``{"CPU": 1}`` (``{"GPU": 1}`` with ``use_gpu``), as Ray.
    placement_strategy: of the workers' placement group: ``PACK`` (default), ``SPREAD``,
        ``STRICT_PACK``, ``STRICT_SPREAD``.
    trainer_resources: accepted for compatibility; the controller runs in the driver and
        holds nothing (Ray 2.60 refuses the field).
    elastic_resize_monitor_interval_s: how often an elastic run checks whether it can grow.
    """

    num_workers: Union[int, Tuple[int, int]] = 1
    use_gpu: bool = False
    resources_per_worker: Optional[Dict[str, float]] = None
    placement_strategy: str = "PACK"
    trainer_resources: Optional[Dict[str, float]] = None
    accelerator_type: Optional[str] = None
    label_selector: Any = None
    use_tpu: bool = False
    topology: Optional[str] = None
    elastic_resize_monitor_interval_s: float = 60.0

    def __post_init__(self):
        nw = self.num_workers
        if isinstance(nw, list):
            nw = self.num_workers = tuple(nw)
        fixed = isinstance(nw, int) and not isinstance(nw, bool)
        elastic = (isinstance(nw, tuple) and len(nw) == 2 and
                   all(isinstance(x, int) and not isinstance(x, bool) for x in nw))
        if not (fixed or elastic):
            raise ValueError(f"ScalingConfig(num_workers={nw!r}) must be an int or a tuple of two ints.")
        if self.min_workers < 0:
            raise ValueError(f"Invalid ScalingConfig(num_workers={nw}): Number of workers cannot be negative.")
        if self.min_workers > self.max_workers:
            raise ValueError(f"Invalid ScalingConfig(num_workers={nw}): min_workers={self.min_workers} "
                             f"must be <= max_workers={self.max_workers}.")
        if elastic and self.min_workers == 0:
            raise ValueError(f"Invalid ScalingConfig(num_workers={nw}): an elastic run needs min_workers >= 1.")
        if self.elastic_resize_monitor_interval_s < 0:
            raise ValueError("ScalingConfig(elastic_resize_monitor_interval_s) must be non-negative.")
        if self.placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ValueError(f"ScalingConfig(placement_strategy={self.placement_strategy!r}) must be one of "
                             "PACK, SPREAD, STRICT_PACK, STRICT_SPREAD")
        if self.use_tpu:
            raise ValueError("ScalingConfig(use_tpu=True): mpiray has no TPU support")
        if self.resources_per_worker is not None:
            if not isinstance(self.resources_per_worker, dict):
                raise TypeError("ScalingConfig(resources_per_worker=...) must be a dict of resource name -> amount")
            for k, v in self.resources_per_worker.items():
                if not isinstance(k, str) or not isinstance(v, (int, float)) or v < 0:
                    raise ValueError(f"ScalingConfig(resources_per_worker={self.resources_per_worker!r}): "
                                     f"{k!r} must map to a non-negative number")
            gpus = self.resources_per_worker.get("GPU", 0)
            if not self.use_gpu and gpus > 0:
                raise ValueError("`use_gpu` is False but `GPU` was found in `resources_per_worker`. Either set "
                                 "`use_gpu` to True or remove `GPU` from `resources_per_worker.")
            if self.use_gpu and "GPU" in self.resources_per_worker and gpus == 0:
                raise ValueError("`use_gpu` is True but `GPU` is set to 0 in `resources_per_worker`. Either set "
                                 "`use_gpu` to False or request a positive number of `GPU` in "
                                 "`resources_per_worker.")
        if self.trainer_resources is not None:
            warnings.warn("ScalingConfig(trainer_resources=...) has no effect in mpiray: the training "
                          "controller runs in the driver process and holds no resources.", stacklevel=3)

    @property
    def elasticity_enabled(self):
        return isinstance(self.num_workers, tuple)

    @property
    def min_workers(self):
        return self.num_workers if isinstance(self.num_workers, int) else self.num_workers[0]

    @property
    def max_workers(self):
        return self.num_workers if isinstance(self.num_workers, int) else self.num_workers[1]

    @property
    def _resources_per_worker_not_none(self):
        if self.resources_per_worker is None:
            res = {"GPU": 1} if self.use_gpu else {"CPU": 1}
        else:
            res = {k: v for k, v in self.resources_per_worker.items() if v != 0}
        if self.use_gpu:
            res.setdefault("GPU", 1)
        if self.accelerator_type:
            res.setdefault(f"accelerator_type:{self.accelerator_type}", 0.001)
        return res

    @property
    def num_cpus_per_worker(self):
        return self._resources_per_worker_not_none.get("CPU", 0)

    @property
    def num_gpus_per_worker(self):
        return self._resources_per_worker_not_none.get("GPU", 0)

    @property
    def additional_resources_per_worker(self):
        return {k: v for k, v in self._resources_per_worker_not_none.items() if k not in ("CPU", "GPU")}

    @property
    def total_resources(self):
        """Resources of all workers together (the upper bound ``max_workers`` when elastic)."""
        return {k: v * self.max_workers for k, v in self._resources_per_worker_not_none.items()}

    def as_placement_group_factory(self):
        """The trial resources for running this trainer inside a Tune trial: a head bundle for
        the trial's own function (1 CPU) and one bundle per worker, as Ray."""
        from ..tune.resources import PlacementGroupFactory
        bundles = [{"CPU": 1}] + [dict(self._resources_per_worker_not_none) for _ in range(self.max_workers)]
        return PlacementGroupFactory(bundles, strategy=self.placement_strategy)


@dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps: all (default), or the ``num_to_keep`` best by
    ``checkpoint_score_attribute`` (``checkpoint_score_order`` "max"/"min"), or the latest
    ones when no attribute is given. The latest checkpoint is never deleted (it is the one to
    resume from)."""

    num_to_keep: Optional[int] = None
    checkpoint_score_attribute: Optional[str] = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: Any = _DEPRECATED
    checkpoint_at_end: Any = _DEPRECATED

    def __post_init__(self):
        if self.checkpoint_frequency != _DEPRECATED:
            raise DeprecationWarning("`checkpoint_frequency` is deprecated since it does not apply to "
                                     "user-defined training functions. Please remove this argument from "
                                     "your CheckpointConfig.")
        if self.checkpoint_at_end != _DEPRECATED:
            raise DeprecationWarning("`checkpoint_at_end` is deprecated since it does not apply to "
                                     "user-defined training functions. Please remove this argument from "
                                     "your CheckpointConfig.")
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int) or self.num_to_keep <= 0):
            raise ValueError(f"Received invalid num_to_keep: {self.num_to_keep}. Must be None or an integer >= 1.")
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(f"Received invalid checkpoint_score_order: {self.checkpoint_score_order}. "
                             "Must be 'max' or 'min'.")


@dataclass
class FailureConfig:
    """max_failures: how many times a run whose worker group failed (a worker raised, died, or
    its node was lost) is restarted from the latest checkpoint; -1: forever, 0: never."""

    max_failures: int = 0
    fail_fast: Any = _DEPRECATED
    controller_failure_limit: int = -1
    max_preemption_failures: int = -1

    def __post_init__(self):
        if self.fail_fast != _DEPRECATED:
            raise DeprecationWarning("`FailureConfig(fail_fast)` is deprecated since it is only relevant in "
                                     "the context of multiple trials running in Ray Tune.")
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(f"FailureConfig(max_failures={self.max_failures!r}) must be an integer >= -1")


@dataclass
class LoggingConfig:
    """log_level of mpiray.train's own messages (``logging`` level names)."""

    log_level: str = "INFO"

    def __post_init__(self):
        if not isinstance(self.log_level, str) or self.log_level.upper() not in logging._nameToLevel:
            raise ValueError(f"Invalid log_level: {self.log_level!r}.")
        self.log_level = self.log_level.upper()


@dataclass
class RunConfig:
    """Where a training run lives.

    name: the run directory under ``storage_path`` (default ``ray_train_run-<date>``; inside a
        Slurm job ``ray_train_run-slurm<jobid>``). A run directory that already holds a run's
        checkpoints is resumed from its latest checkpoint (as Ray 2.60).
    storage_path: a directory every node sees (default ``~/mpiray_results``,
        ``$MPIRAY_RESULTS_DIR`` overrides).
    failure_config, checkpoint_config: see those classes.
    callbacks: ``mpiray.train.UserCallback`` objects (``after_report``, ``after_exception``);
        Tune logger callbacks (``mpiray.air.integrations.mlflow.MLflowLoggerCallback``, ...)
        are accepted too and see each report as a trial result.
    worker_runtime_env: a ``runtime_env`` for the training workers.
    """

    name: Optional[str] = None
    storage_path: Optional[str] = None
    storage_filesystem: Any = None
    failure_config: Optional[FailureConfig] = None
    checkpoint_config: Optional[CheckpointConfig] = None
    callbacks: Optional[List[Any]] = None
    worker_runtime_env: Optional[dict] = None
    logging_config: Optional[LoggingConfig] = None
    sync_config: Any = _DEPRECATED
    verbose: Any = _DEPRECATED
    stop: Any = _DEPRECATED
    progress_reporter: Any = _DEPRECATED
    log_to_file: Any = _DEPRECATED

    def __post_init__(self):
        for param in ("sync_config", "verbose", "stop", "progress_reporter", "log_to_file"):
            if getattr(self, param) != _DEPRECATED:
                raise DeprecationWarning(
                    f"`RunConfig({param})` is deprecated. This configuration was a Ray Tune API that did not "
                    "support Ray Train usage well, so we are dropping support going forward. If you heavily "
                    "rely on these configurations, you can run Ray Train as a single Ray Tune trial.")
        if self.storage_path is None:
            self.storage_path = default_storage_path()
        else:
            self.storage_path = os.path.abspath(os.path.expanduser(os.fspath(self.storage_path)))
        if self.storage_filesystem is not None:
            raise ValueError("RunConfig(storage_filesystem=...) is not supported: give a path on a file "
                             "system every node sees (shared /scratch, home)")
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.logging_config is None:
            self.logging_config = LoggingConfig()
        if not self.name:
            self.name = default_run_name()
        if os.sep in self.name or self.name in (".", ".."):
            raise ValueError(f"RunConfig(name={self.name!r}) must be a plain directory name")
        self.callbacks = list(self.callbacks or [])
        self.worker_runtime_env = self.worker_runtime_env or {}
        if not isinstance(self.checkpoint_config, CheckpointConfig):
            raise ValueError(f"Invalid `CheckpointConfig` type: {self.checkpoint_config.__class__}. "
                             "Use `mpiray.train.CheckpointConfig` instead.")
        if not isinstance(self.failure_config, FailureConfig):
            raise ValueError(f"Invalid `FailureConfig` type: {self.failure_config.__class__}. "
                             "Use `mpiray.train.FailureConfig` instead.")
        from ._callback import UserCallback
        for cb in self.callbacks:
            if not isinstance(cb, UserCallback) and not _is_tune_logger(cb):
                raise ValueError(f"RunConfig(callbacks=...) takes mpiray.train.UserCallback objects (or Tune "
                                 f"logger callbacks), got {type(cb).__name__}")

    @property
    def run_path(self):
        """The run's directory: ``<storage_path>/<name>``."""
        return os.path.join(self.storage_path, self.name)


def _is_tune_logger(cb):
    try:
        from ..tune.logger import LoggerCallback
    except ImportError:  # pragma: no cover
        return False
    return isinstance(cb, LoggerCallback)


@dataclass
class DataConfig:
    """Which datasets are split among the workers (``datasets_to_split``: "all" or a list of
    names); the others are given whole to every worker. ``execution_options`` is accepted for
    compatibility."""

    datasets_to_split: Union[str, List[str]] = "all"
    execution_options: Any = None
    enable_shard_locality: bool = True

    def __post_init__(self):
        if not (self.datasets_to_split == "all" or isinstance(self.datasets_to_split, (list, tuple))):
            raise TypeError("DataConfig(datasets_to_split=...) must be 'all' or a list of dataset names, got "
                            f"{self.datasets_to_split!r}")
