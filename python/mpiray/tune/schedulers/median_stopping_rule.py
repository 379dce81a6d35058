"""Median stopping rule (Ray's ``MedianStoppingRule``, from Google Vizier)."""

import collections
import math

from ..search.searcher import check_kwargs, check_mode
from .trial_scheduler import FIFOScheduler, TrialScheduler, _percentile


class MedianStoppingRule(FIFOScheduler):
    """Stops a trial at time ``t`` (of ``time_attr``, once ``t >= grace_period``) when its
    best result so far is strictly worse than the median of the running means of the other
    trials that have reached ``t`` (each mean over that trial's results with
    ``grace_period <= time <= t``). With fewer than ``min_samples_required`` such trials the
    trial goes on, or yields its resources (PAUSE) when trials are waiting and it ran
    ``min_time_slice`` since it last yielded. ``hard_stop=False`` pauses instead of stopping;
    such a trial is never judged again and resumes when the others are done (FIFO)."""

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
        self._results = collections.defaultdict(list)   # trial id -> [(time, metric)]
        self._stopped = set()
        self._last_pause = {}

    def set_search_properties(self, metric, mode, **spec):
        ok = super().set_search_properties(metric, mode, **spec)
        if ok and self._metric is None and self._mode:
            self._metric = "_metric"
        return ok

    def on_trial_add(self, tune_controller, trial):
        if not self._metric or not self._mode:
            raise ValueError("MedianStoppingRule needs a metric and mode: pass them to the scheduler or to "
                             "TuneConfig(metric=..., mode=...)")

    def on_trial_result(self, tune_controller, trial, result):
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        tid = trial.trial_id
        if tid in self._stopped:
            return TrialScheduler.CONTINUE      # paused once (hard_stop=False): not judged again
        t = result[self._time_attr]
        self._results[tid].append((t, result[self._metric]))
        if t < self._grace_period:
            return TrialScheduler.CONTINUE
        others = [o for o, rs in self._results.items() if o != tid and rs and rs[-1][0] >= t]
        means = []
        for o in others:
            scoped = [v for (tt, v) in self._results[o] if self._grace_period <= tt <= t]
            if scoped:
                m = sum(scoped) / len(scoped)
                if math.isfinite(m):
                    means.append(m)
        if len(means) < self._min_samples_required:
            return self._on_insufficient_samples(tune_controller, trial, t)
        median = _percentile(means, 50)
        values = [v for _, v in self._results[tid]]
        best = max(values) if self._mode == "max" else min(values)
        worse = best < median if self._mode == "max" else best > median
        if worse:
            self._stopped.add(tid)
            return TrialScheduler.STOP if self._hard_stop else TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def _on_insufficient_samples(self, tune_controller, trial, t):
        last = self._last_pause.get(trial.trial_id, float("-inf"))
        waiting = any(o.status in ("PENDING", "PAUSED") for o in tune_controller.get_live_trials()
                      if o is not trial)
        if t - last > self._min_time_slice and waiting:
            self._last_pause[trial.trial_id] = t
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        if result and self._time_attr in result and self._metric in result:
            self._results[trial.trial_id].append((result[self._time_attr], result[self._metric]))

    def debug_string(self):
        return f"Using MedianStoppingRule: num_stopped={len(self._stopped)}."

    def __str__(self):
        return "MedianStoppingRule"
