"""mpiray.tune: Ray Tune's API (``from mpiray import tune`` where a script has
``from ray import tune``).

Trials are actors; results reach the driver in batches through one outstanding call per
trial, so a trial never waits for the driver; the experiment state is an append-only
journal that survives a killed driver and the Slurm walltime signal (``Tuner.restore``).
See docs/tune.md.
"""

from ..train._checkpoint import Checkpoint
from ..train._config import CheckpointConfig, FailureConfig, RunConfig, SyncConfig
from ..train._result import Result
from ..train._session import get_checkpoint, report
from . import schedulers, search, stopper
from .analysis import ExperimentAnalysis
from .callback import Callback
from .context import TuneContext, get_context
from .error import TuneError
from .experiment import Experiment
from .progress_reporter import CLIReporter, JupyterNotebookReporter, ProgressReporter
from .resources import PlacementGroupFactory
from .result_grid import ResultGrid
from .schedulers import create_scheduler
from .search import create_searcher
from .search.sample import (choice, grid_search, lograndint, loguniform, qlograndint, qloguniform, qrandint,
                            qrandn, quniform, randint, randn, sample_from, uniform)
from .stopper import Stopper
from .trainable import Trainable, register_env, register_trainable, with_parameters, with_resources
from .tune import run, run_experiments
from .tune_config import ResumeConfig, TuneConfig
from .tuner import Tuner

__all__ = [
    "Trainable", "Callback", "TuneError", "grid_search", "register_env", "register_trainable", "run",
    "run_experiments", "with_parameters", "with_resources", "Stopper", "Experiment", "sample_from", "uniform",
    "quniform", "choice", "randint", "lograndint", "qrandint", "qlograndint", "randn", "qrandn", "loguniform",
    "qloguniform", "ExperimentAnalysis", "CLIReporter", "JupyterNotebookReporter", "ProgressReporter",
    "ResultGrid", "create_searcher", "create_scheduler", "PlacementGroupFactory", "Tuner", "TuneConfig",
    "ResumeConfig", "RunConfig", "CheckpointConfig", "FailureConfig", "Result", "Checkpoint", "get_checkpoint",
    "report", "get_context", "TuneContext", "SyncConfig",
]
