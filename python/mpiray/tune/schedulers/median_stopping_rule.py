"""Median stopping rule (Ray's ``MedianStoppingRule``)."""

from ..search.searcher import check_kwargs, check_mode
from .trial_scheduler import FIFOScheduler, TrialScheduler, _percentile


class MedianStoppingRule(FIFOScheduler):
    """Stops a trial whose best result so far is worse than the median of the other trials'
    running averages at the same ``time_attr``."""

    def __init__(self, time_attr="time_total_s", metric=None, mode=None, grace_period=60.0,
                 min_samples_required=3, min_time_slice=0, hard_stop=True, **kwargs):
        check_kwargs("MedianStoppingRule", kwargs, ["time_attr", "metric", "mode", "grace_period",
                                                    "min_samples_required", "min_time_slice", "hard_stop"])
        check_mode(mode, "MedianStoppingRule")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._grace_period = grace_period
        self._min_samples_required = min_samples_required
        self._min_time_slice = min_time_slice
        self._hard_stop = hard_stop
        self._results = {}   # trial id -> [(t, score)]
        self._completed = set()
        self._stopped = set()
        self._last_pause = {}

    def on_trial_result(self, tune_controller, trial, result):
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        t = result[self._time_attr]
        hist = self._results.setdefault(trial.trial_id, [])
        hist.append((t, self._score(result)))
        if t < self._grace_period:
            return TrialScheduler.CONTINUE
        others = [tid for tid in self._results if tid != trial.trial_id]
        avgs = []
        for tid in others:
            vals = [s for (tt, s) in self._results[tid] if tt <= t]
            if vals:
                avgs.append(sum(vals) / len(vals))
        if len(avgs) < self._min_samples_required:
            return TrialScheduler.CONTINUE
        median = _percentile(avgs, 50)
        best = max(s for _, s in hist)
        if best < median:
            self._stopped.add(trial.trial_id)
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        self._completed.add(trial.trial_id)

    def debug_string(self):
        return f"Using MedianStoppingRule: num_stopped: {len(self._stopped)}."

    def __str__(self):
        return "MedianStoppingRule"
