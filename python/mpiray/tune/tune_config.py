"""``TuneConfig`` (Ray's)."""

import datetime
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union


@dataclass
class TuneConfig:
    """metric/mode: what schedulers, searchers and ``get_best_result`` optimise;
    num_samples: samples of the param_space (times each grid point; -1: until stopped);
    max_concurrent_trials: at most this many trials at once (default: as many as fit);
    time_budget_s: stop the experiment after this long; reuse_actors: start the next trial in
    the actor of a finished one (same resources); trial_name_creator /
    trial_dirname_creator: functions of the Trial."""

    mode: Optional[str] = None
    metric: Optional[str] = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: Optional[int] = None
    time_budget_s: Optional[Union[int, float, datetime.timedelta]] = None
    reuse_actors: bool = False
    trial_name_creator: Optional[Callable] = None
    trial_dirname_creator: Optional[Callable] = None
    chdir_to_trial_dir: Any = None

    def __post_init__(self):
        if self.mode is not None and self.mode not in ("min", "max"):
            raise ValueError(f"TuneConfig: `mode` must be 'min' or 'max', got {self.mode!r}")
        if not isinstance(self.num_samples, int) or (self.num_samples < 1 and self.num_samples != -1):
            raise ValueError(f"TuneConfig: num_samples must be a positive integer or -1, got {self.num_samples!r}")
        if self.max_concurrent_trials is not None and (not isinstance(self.max_concurrent_trials, int)
                                                       or self.max_concurrent_trials < 0):
            raise ValueError("TuneConfig: max_concurrent_trials must be a non-negative integer, got "
                             f"{self.max_concurrent_trials!r}")


@dataclass
class ResumeConfig:
    finished: str = "SKIP"
    unfinished: str = "RESUME"
    errored: str = "SKIP"
