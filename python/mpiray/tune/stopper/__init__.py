"""Stoppers (Ray's ``ray.tune.stopper``)."""

import collections
import datetime
import math
import time

from ..search.searcher import check_kwargs


class Stopper:
    """``__call__(trial_id, result) -> bool`` stops one trial; ``stop_all() -> bool`` ends
    the experiment."""

    def __call__(self, trial_id, result):
        raise NotImplementedError

    def stop_all(self):
        raise NotImplementedError


class NoopStopper(Stopper):
    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        return False


class CombinedStopper(Stopper):
    def __init__(self, *stoppers):
        self._stoppers = stoppers

    def __call__(self, trial_id, result):
        return any([s(trial_id, result) for s in self._stoppers])

    def stop_all(self):
        return any([s.stop_all() for s in self._stoppers])


class FunctionStopper(Stopper):
    def __init__(self, function):
        self._fn = function

    def __call__(self, trial_id, result):
        return bool(self._fn(trial_id, result))

    def stop_all(self):
        return bool(getattr(self._fn, "stop_all", lambda: False)())

    @classmethod
    def is_valid_function(cls, fn):
        return callable(fn) and not isinstance(fn, Stopper)


class DictStopper(Stopper):
    """``{"training_iteration": 10, "mean_accuracy": 0.98}``: stop a trial as soon as any key
    reaches its value."""

    def __init__(self, criteria):
        self._criteria = dict(criteria)

    def __call__(self, trial_id, result):
        for k, v in self._criteria.items():
            if k not in result:
                if k in ("training_iteration", "time_total_s", "timesteps_total"):
                    continue
                raise KeyError(f"Stopping criterion {k!r} is not in the trial's result. Reported keys: "
                               f"{sorted(x for x in result if x != 'config')}")
            if result[k] >= v:
                return True
        return False

    def stop_all(self):
        return False


class MaximumIterationStopper(Stopper):
    def __init__(self, max_iter, **kwargs):
        check_kwargs("MaximumIterationStopper", kwargs, ["max_iter"])
        self._max_iter = max_iter
        self._iter = collections.defaultdict(int)

    def __call__(self, trial_id, result):
        self._iter[trial_id] += 1
        return self._iter[trial_id] >= self._max_iter

    def stop_all(self):
        return False


class TrialPlateauStopper(Stopper):
    """Stop a trial when the std of its last ``num_results`` values of ``metric`` is below
    ``std`` (after ``grace_period`` results; optionally only past ``metric_threshold``)."""

    def __init__(self, metric, std=0.01, num_results=4, grace_period=4, metric_threshold=None,
                 mode=None, **kwargs):
        check_kwargs("TrialPlateauStopper", kwargs, ["metric", "std", "num_results", "grace_period",
                                                     "metric_threshold", "mode"])
        self._metric = metric
        self._mode = mode
        self._std = std
        self._num_results = num_results
        self._grace_period = grace_period
        self._metric_threshold = metric_threshold
        if self._metric_threshold is not None and mode not in ("min", "max"):
            raise ValueError("When specifying a `metric_threshold`, the `mode` argument has to be one "
                             "of [min, max]")
        self._iter = collections.defaultdict(int)
        self._trial_results = collections.defaultdict(lambda: collections.deque(maxlen=self._num_results))

    def __call__(self, trial_id, result):
        # as Ray: every result counts toward the grace period, a missing metric included
        v = result.get(self._metric)
        self._trial_results[trial_id].append(v)
        self._iter[trial_id] += 1
        if self._iter[trial_id] < self._grace_period:
            return False
        vals = self._trial_results[trial_id]
        if len(vals) < self._num_results:
            return False
        if self._metric_threshold is not None and v is not None:
            if self._mode == "min" and v > self._metric_threshold:
                return False
            if self._mode == "max" and v < self._metric_threshold:
                return False
        try:
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((x - mean) ** 2 for x in vals) / len(vals))
        except TypeError:
            return False
        return std < self._std

    def stop_all(self):
        return False


class ExperimentPlateauStopper(Stopper):
    """End the experiment when the std of the best ``top`` results has been below ``std``
    for ``patience`` results."""

    def __init__(self, metric, std=0.001, top=10, mode="min", patience=0, **kwargs):
        check_kwargs("ExperimentPlateauStopper", kwargs, ["metric", "std", "top", "mode", "patience"])
        if mode not in ("min", "max"):
            raise ValueError("The mode parameter can only be either min or max.")
        if not isinstance(top, int) or top <= 1:
            raise ValueError("Top results to consider must be a positive integer greater than one.")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError("Patience must be a strictly positive integer.")
        if not isinstance(std, float) or std <= 0:
            raise ValueError("The standard deviation must be a strictly positive float number.")
        self._metric = metric
        self._mode = mode
        self._std = std
        self._top = top
        self._patience = patience
        self._values = []
        self._iterations = 0

    def __call__(self, trial_id, result):
        if self._metric not in result:
            raise KeyError(f"ExperimentPlateauStopper: the metric {self._metric!r} is not in the trial's result. "
                           f"Reported keys: {sorted(k for k in result if k != 'config')}")
        self._values.append(result[self._metric])
        self._values.sort(reverse=self._mode == "max")
        self._values = self._values[: self._top]
        if self.has_plateaued():
            self._iterations += 1
        else:
            self._iterations = 0
        return self.stop_all()

    def has_plateaued(self):
        if len(self._values) != self._top:
            return False
        mean = sum(self._values) / self._top
        return math.sqrt(sum((x - mean) ** 2 for x in self._values) / self._top) <= self._std

    def stop_all(self):
        """True once the top results have plateaued for ``patience`` results (as Ray:
        patience 0 stops at the first plateaued result)."""
        return self.has_plateaued() and self._iterations >= self._patience


class TimeoutStopper(Stopper):
    """End the experiment after ``timeout`` seconds (a number or a ``timedelta``)."""

    def __init__(self, timeout, **kwargs):
        check_kwargs("TimeoutStopper", kwargs, ["timeout"])
        if isinstance(timeout, datetime.timedelta):
            self._budget = timeout.total_seconds()
        elif isinstance(timeout, (int, float)):
            self._budget = float(timeout)
        else:
            raise ValueError(f"`timeout` parameter has to be either a number or a `datetime.timedelta` "
                             f"object. Found: {type(timeout)}")
        self._timeout_seconds = self._budget
        self._last_check = None

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        """The budget counts down while the experiment runs (as Ray; a restored experiment
        goes on with what was left)."""
        now = time.time()
        if self._last_check is not None:
            self._budget -= now - self._last_check
        self._last_check = now
        return self._budget <= 0

    def __setstate__(self, state):
        state["_last_check"] = None
        self.__dict__.update(state)


def to_stopper(stop):
    if stop is None:
        return None
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, dict):
        return DictStopper(stop)
    if callable(stop):
        return FunctionStopper(stop)
    raise ValueError(f"Invalid stop criteria: {stop!r}. Must be a dict, a function "
                     "(trial_id, result) -> bool, or a tune.Stopper")


__all__ = ["Stopper", "NoopStopper", "CombinedStopper", "FunctionStopper", "MaximumIterationStopper",
           "TrialPlateauStopper", "ExperimentPlateauStopper", "TimeoutStopper"]
