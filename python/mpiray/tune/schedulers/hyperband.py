"""Synchronous HyperBand (Ray's ``HyperBandScheduler``), with Ray's bracket layout.

A band holds brackets ``s = 0 .. s_max`` (``s_max + 1 = round(log(max_t) / log(eta)) + 1``);
bracket ``s`` takes ``n0 = ceil((s_max + 1) / (s + 1) * eta**s)`` trials that first run to
``r0 = int(max_t * eta**-s)``. A trial reaching its bracket's milestone pauses until every
live trial of the bracket is there; then the best ``ceil(n / eta)`` (by the metric at the
milestone) resume from their checkpoints to ``milestone * eta`` and the rest stop. When the
last halving is done, the bracket's trials stop at ``max_t``."""

import math

from ..search.searcher import check_kwargs, check_mode
from .trial_scheduler import FIFOScheduler, TrialScheduler, _has_actor


class _Bracket:
    def __init__(self, time_attr, max_trials, init_t, max_t, eta, s, stop_last_trials=True):
        self._live = {}            # trial id -> its latest result (None before the first)
        self._all = []
        self._time_attr = time_attr
        self._n = self._n0 = max_trials
        self._r = self._r0 = init_t
        self._max_t = max_t
        self._cumul_r = init_t
        self._eta = eta
        self._halves = s
        self._total_work = self._work(self._n0, self._r0, s)
        self._progress = 0
        self.stop_last_trials = stop_last_trials
        self.processing = False
        self.trials_to_unpause = set()

    def add_trial(self, trial):
        self._live[trial.trial_id] = None
        self._all.append(trial.trial_id)

    def _time(self, result):
        return 0 if result is None else result.get(self._time_attr, 0)

    def cur_iter_done(self):
        return all(self._time(r) >= self._cumul_r for r in self._live.values())

    def finished(self):
        return self.stop_last_trials and self._halves == 0 and self.cur_iter_done()

    def current_trials(self, controller):
        return [t for t in (controller.get_trial(tid) for tid in self._live) if t is not None]

    def continue_trial(self, trial):
        if not self.stop_last_trials and self._halves == 0:
            return True
        return self._time(self._live[trial.trial_id]) < self._cumul_r

    def filled(self):
        return len(self._live) == self._n

    def successive_halving(self, controller, metric, metric_op):
        """(good, bad) trials of the current rung."""
        if self._halves == 0 and not self.stop_last_trials:
            return self.current_trials(controller), []
        self._halves -= 1
        self._n = int(math.ceil(self._n / self._eta))
        self._r = int(min(self._r * self._eta, self._max_t))
        self._cumul_r = self._r
        ranked = sorted(self.current_trials(controller), key=lambda t: metric_op * self._live[t.trial_id][metric])
        return ranked[-self._n:], ranked[:-self._n]

    def update_trial_stats(self, trial, result):
        before = self._time(self._live[trial.trial_id])
        self._progress += max(0, self._time(result) - before)
        self._live[trial.trial_id] = result
        self.trials_to_unpause.discard(trial.trial_id)

    def cleanup_trial(self, trial):
        self._live.pop(trial.trial_id, None)

    def completion_percentage(self):
        if self.finished():
            return 1.0
        return min(self._progress / self._total_work, 1.0) if self._total_work else 0.0

    def _work(self, n, r, s):
        work, cumulative = 0, r
        for _ in range(s + 1):
            work += int(n) * int(r)
            n = int(math.ceil(n / self._eta))
            r = int(min(r * self._eta, self._max_t - cumulative))
        return work

    def __repr__(self):
        return f"Bracket(Max Size (n)={self._n}, Milestone (r)={self._cumul_r}, " \
               f"completed={self.completion_percentage():.1%})"


class HyperBandScheduler(FIFOScheduler):
    def __init__(self, time_attr="training_iteration", metric=None, mode=None, max_t=81,
                 reduction_factor=3, stop_last_trials=True, **kwargs):
        check_kwargs("HyperBandScheduler", kwargs, ["time_attr", "metric", "mode", "max_t",
                                                    "reduction_factor", "stop_last_trials"])
        check_mode(mode, "HyperBandScheduler")
        if max_t <= 0:
            raise ValueError("HyperBandScheduler: max_t must be positive")
        if reduction_factor <= 1:
            raise ValueError("HyperBandScheduler: reduction_factor must be > 1")
        self._eta = reduction_factor
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._max_t = max_t
        self._bands = [[]]
        self._trial_info = {}          # trial id -> (bracket, band index)
        self._bracket = None
        self._band_idx = 0
        self._num_stopped = 0
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._stop_last_trials = stop_last_trials

    def set_search_properties(self, metric, mode, **spec):
        ok = super().set_search_properties(metric, mode, **spec)
        if ok and self._metric is None and self._mode:
            self._metric = "_metric"
        return ok

    def _n0(self, s):
        return int(math.ceil(self._s_max_1 / (s + 1) * self._eta ** s))

    def _r0(self, s):
        return int(self._max_t * self._eta ** (-s))

    def on_trial_add(self, tune_controller, trial):
        if not self._metric or not self._mode:
            raise ValueError("HyperBandScheduler needs a metric and mode: pass them to the scheduler or to "
                             "TuneConfig(metric=..., mode=...)")
        if self._bracket is None or self._bracket.filled():
            while True:
                band = self._bands[self._band_idx]
                if len(band) == self._s_max_1:
                    band = []
                    self._bands.append(band)
                    self._band_idx += 1
                s = len(band)
                if self._r0(s) == 0:
                    band.append(None)       # too small a bracket (as Ray): try the next one
                    continue
                self._bracket = _Bracket(self._time_attr, self._n0(s), self._r0(s), self._max_t, self._eta, s,
                                         self._stop_last_trials)
                band.append(self._bracket)
                break
        self._bracket.add_trial(trial)
        self._trial_info[trial.trial_id] = (self._bracket, self._band_idx)

    def on_trial_result(self, tune_controller, trial, result):
        info = self._trial_info.get(trial.trial_id)
        if info is None or self._time_attr not in result:
            return TrialScheduler.CONTINUE
        bracket = info[0]
        if trial.trial_id not in bracket._live:
            return TrialScheduler.CONTINUE
        bracket.update_trial_stats(trial, result)
        if bracket.continue_trial(trial):
            return TrialScheduler.CONTINUE
        return self._process_bracket(tune_controller, bracket)

    def _process_bracket(self, controller, bracket):
        """When every live trial of the bracket reached the milestone: halve (the caller,
        which is RUNNING, gets its own decision back; the others are PAUSED and are stopped
        or marked to resume). Otherwise the caller pauses."""
        action = TrialScheduler.PAUSE
        if not bracket.cur_iter_done():
            return action
        if bracket.finished():
            for t in bracket.current_trials(controller):
                if t.status == "PAUSED":
                    bracket.cleanup_trial(t)
                    controller.stop_trial(t)
            return TrialScheduler.STOP
        bracket.processing = True
        try:
            sign = 1.0 if self._mode == "max" else -1.0
            good, bad = bracket.successive_halving(controller, self._metric, sign)
            self._num_stopped += len(bad)
            for t in bad:
                bracket.cleanup_trial(t)
                if t.status == "RUNNING":
                    action = TrialScheduler.STOP
                else:
                    controller.stop_trial(t)
            for t in good:
                if bracket.continue_trial(t):
                    if t.status == "RUNNING":
                        action = TrialScheduler.CONTINUE
                    else:
                        bracket.trials_to_unpause.add(t.trial_id)
                elif bracket.finished() and bracket.stop_last_trials:
                    bracket.cleanup_trial(t)
                    if t.status == "RUNNING":
                        action = TrialScheduler.STOP
                    else:
                        controller.stop_trial(t)
        finally:
            bracket.processing = False
        return action

    def on_trial_remove(self, tune_controller, trial):
        info = self._trial_info.get(trial.trial_id)
        if info is None:
            return
        bracket = info[0]
        bracket.cleanup_trial(trial)
        # Ray processes the bracket here only until its first halving (a flag it never
        # resets); mpiray processes it whenever it is not already doing so, so the paused
        # trials of a bracket whose last runner ended go on
        if tune_controller is not None and not bracket.finished() and not bracket.processing \
                and bracket._live:
            self._process_bracket(tune_controller, bracket)

    def on_trial_complete(self, tune_controller, trial, result):
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial):
        self.on_trial_remove(tune_controller, trial)

    def choose_trial_to_run(self, tune_controller):
        """Fair scheduling within a band by completion; a paused trial only once its bracket
        promoted it."""
        for band in self._bands:
            for bracket in sorted((b for b in band if b is not None), key=lambda b: b.completion_percentage()):
                for t in bracket.current_trials(tune_controller):
                    if _has_actor(tune_controller, t):
                        continue
                    if t.status == "PENDING" or (t.status == "PAUSED" and t.trial_id in bracket.trials_to_unpause):
                        return t
        return None

    def debug_string(self):
        out = f"Using HyperBand: num_stopped={self._num_stopped} total_brackets=" \
              f"{sum(len(b) for b in self._bands)}"
        for i, band in enumerate(self._bands):
            out += f"\nRound #{i}:"
            for b in band:
                if b is not None:
                    out += f"\n  {b}"
        return out

    def state(self):
        return {"num_brackets": sum(len(b) for b in self._bands), "num_stopped": self._num_stopped}

    def __str__(self):
        return "HyperBandScheduler"
