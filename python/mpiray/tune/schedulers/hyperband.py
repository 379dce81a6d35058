"""Synchronous HyperBand (Ray's ``HyperBandScheduler``).

Brackets of successive halving: the trials of a bracket run to the bracket's milestone and
pause there; when every live trial of the bracket has reached it, the best 1/reduction_factor
resume (from their checkpoints) to the next milestone and the rest stop."""

import math

from ..search.searcher import check_kwargs, check_mode
from .trial_scheduler import FIFOScheduler, TrialScheduler


class _HBBracket:
    def __init__(self, n0, r0, max_t, rf, s):
        self.n = n0              # trials at the current rung
        self.r = r0              # current milestone
        self.max_t = max_t
        self.rf = rf
        self.capacity = n0
        self.trials = []         # trial objects in the bracket
        self.live = set()        # trial ids still in play
        self.scores = {}         # trial id -> score at the current milestone
        self.s = s

    def full(self):
        return len(self.trials) >= self.capacity


class HyperBandScheduler(FIFOScheduler):
    def __init__(self, time_attr="training_iteration", metric=None, mode=None, max_t=81,
                 reduction_factor=3, stop_last_trials=True, **kwargs):
        check_kwargs("HyperBandScheduler", kwargs, ["time_attr", "metric", "mode", "max_t",
                                                    "reduction_factor", "stop_last_trials"])
        check_mode(mode, "HyperBandScheduler")
        if max_t <= 0:
            raise ValueError("max_t must be positive!")
        if reduction_factor <= 1:
            raise ValueError("reduction_factor must be > 1")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._max_t = max_t
        self._eta = reduction_factor
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._stop_last_trials = stop_last_trials
        self._brackets = []
        self._by_trial = {}
        self._s = 0

    def _new_bracket(self):
        s = self._s_max_1 - 1 - (self._s % self._s_max_1)
        self._s += 1
        n0 = int(math.ceil(self._s_max_1 / (s + 1) * self._eta ** s))
        r0 = max(1, self._max_t * self._eta ** (-s))
        b = _HBBracket(n0, r0, self._max_t, self._eta, s)
        self._brackets.append(b)
        return b

    def on_trial_add(self, tune_controller, trial):
        b = self._brackets[-1] if self._brackets and not self._brackets[-1].full() else self._new_bracket()
        b.trials.append(trial)
        b.live.add(trial.trial_id)
        self._by_trial[trial.trial_id] = b

    def on_trial_result(self, tune_controller, trial, result):
        b = self._by_trial.get(trial.trial_id)
        if b is None or self._time_attr not in result:
            return TrialScheduler.CONTINUE
        t = result[self._time_attr]
        if t >= self._max_t and self._stop_last_trials:
            b.live.discard(trial.trial_id)
            self._advance(tune_controller, b)
            return TrialScheduler.STOP
        if t < b.r:
            return TrialScheduler.CONTINUE
        b.scores[trial.trial_id] = self._score(result) if self._metric in result else float("-inf")
        action = TrialScheduler.PAUSE
        # the last one to arrive decides for the rung (it needs no pause if it goes on)
        if self._rung_done(b):
            keep = self._cut(tune_controller, b, exclude=trial)
            if trial.trial_id in keep:
                action = TrialScheduler.CONTINUE
            else:
                action = TrialScheduler.STOP
        return action

    def _rung_done(self, b):
        return b.full() and all(tid in b.scores for tid in b.live)

    def _cut(self, controller, b, exclude=None):
        ranked = sorted(b.live, key=lambda tid: b.scores.get(tid, float("-inf")), reverse=True)
        n_keep = max(1, int(len(ranked) / b.rf))
        keep = set(ranked[:n_keep])
        b.r = min(b.r * b.rf, b.max_t)
        b.scores = {}
        for t in b.trials:
            if t.trial_id not in b.live or (exclude is not None and t.trial_id == exclude.trial_id):
                continue
            if t.trial_id in keep:
                controller.resume_trial(t)
            else:
                controller.stop_trial(t)
        b.live = keep
        return keep

    def _advance(self, controller, b):
        if b.live and self._rung_done(b):
            self._cut(controller, b)

    def on_trial_complete(self, tune_controller, trial, result):
        self._remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        self._remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial):
        self._remove(tune_controller, trial)

    def _remove(self, controller, trial):
        b = self._by_trial.get(trial.trial_id)
        if b is None:
            return
        b.live.discard(trial.trial_id)
        b.scores.pop(trial.trial_id, None)
        self._advance(controller, b)

    def debug_string(self):
        return "Using HyperBand: " + " ".join(
            f"[bracket s={b.s}: milestone {b.r}, {len(b.live)} live]" for b in self._brackets)

    def __str__(self):
        return "HyperBandScheduler"
