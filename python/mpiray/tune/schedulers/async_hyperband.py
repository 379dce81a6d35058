"""Asynchronous successive halving (ASHA, Ray's ``AsyncHyperBandScheduler``)."""

import math
import random

from ..search.searcher import check_kwargs, check_mode
from .trial_scheduler import FIFOScheduler, TrialScheduler, _percentile


class _Bracket:
    """Rungs at min_t * rf**k; a trial reaching a rung continues only if its score is in the
    top 1/rf of the scores recorded at that rung so far."""

    def __init__(self, min_t, max_t, reduction_factor, s, stop_last_trials=True):
        self.rf = reduction_factor
        self.stop_last_trials = stop_last_trials
        max_rungs = int(math.log(max_t / min_t, reduction_factor) - s + 1 + 1e-9)
        self.rungs = [(min_t * reduction_factor ** (k + s), {}) for k in reversed(range(max(max_rungs, 0)))]

    def cutoff(self, recorded):
        if not recorded:
            return None
        return _percentile(list(recorded.values()), (1 - 1 / self.rf) * 100)

    def on_result(self, trial_id, cur_iter, cur_rew):
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter >= milestone and trial_id in recorded and not self.stop_last_trials:
                break
            if cur_iter < milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and cur_rew is not None and cur_rew < cutoff:
                action = TrialScheduler.STOP
            if cur_rew is not None:
                recorded[trial_id] = cur_rew
            break
        return action

    def debug_str(self):
        return " | ".join(f"Iter {m:.3f}: {self.cutoff(r)}" for m, r in self.rungs)


class AsyncHyperBandScheduler(FIFOScheduler):
    """Early-stops trials whose metric is in the bottom part of what other trials had at the
    same point (rungs at ``grace_period * reduction_factor**k`` of ``time_attr``)."""

    def __init__(self, time_attr="training_iteration", metric=None, mode=None, max_t=100,
                 grace_period=1, reduction_factor=4, brackets=1, stop_last_trials=True, **kwargs):
        check_kwargs(type(self).__name__, kwargs, ["time_attr", "metric", "mode", "max_t", "grace_period",
                                                   "reduction_factor", "brackets", "stop_last_trials"])
        check_mode(mode, type(self).__name__)
        if grace_period <= 0:
            raise ValueError("grace_period must be positive!")
        if reduction_factor <= 1:
            raise ValueError("Reduction Factor not valid!")
        if brackets <= 0:
            raise ValueError("brackets must be positive!")
        if max_t <= 0:
            raise ValueError("max_t must be positive!")
        if grace_period > max_t:
            raise ValueError("grace_period must be <= max_t!")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._max_t = max_t
        self._stop_last_trials = stop_last_trials
        self._brackets = [_Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
                          for s in range(brackets)]
        self._counter = 0
        self._trial_info = {}
        self._num_stopped = 0

    def on_trial_add(self, tune_controller, trial):
        # as Ray: brackets with more rungs are likelier (softmax over the rung counts)
        sizes = [len(b.rungs) for b in self._brackets]
        top = max(sizes)
        weights = [math.exp(s - top) for s in sizes]
        r = random.random() * sum(weights)
        idx = len(weights) - 1
        for i, w in enumerate(weights):
            r -= w
            if r <= 0:
                idx = i
                break
        self._trial_info[trial.trial_id] = self._brackets[idx]

    def on_trial_result(self, tune_controller, trial, result):
        if self._time_attr not in result or self._metric not in result:
            return TrialScheduler.CONTINUE
        t = result[self._time_attr]
        if t >= self._max_t and self._stop_last_trials:
            return TrialScheduler.STOP
        bracket = self._trial_info.get(trial.trial_id)
        if bracket is None:
            return TrialScheduler.CONTINUE
        action = bracket.on_result(trial.trial_id, t, self._score(result))
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        if result and self._time_attr in result and self._metric in result:
            bracket = self._trial_info.get(trial.trial_id)
            if bracket is not None:
                bracket.on_result(trial.trial_id, result[self._time_attr], self._score(result))
        self._trial_info.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller, trial):
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self):
        out = f"Using AsyncHyperBand: num_stopped={self._num_stopped}"
        return out + "".join(f"\n{b.debug_str()}" for b in self._brackets)

    def __str__(self):
        return "AsyncHyperBandScheduler"


ASHAScheduler = AsyncHyperBandScheduler
