"""``ConcurrencyLimiter``: at most ``max_concurrent`` live trials from a searcher."""

import copy

from .searcher import Searcher, check_kwargs


class ConcurrencyLimiter(Searcher):
    def __init__(self, searcher, max_concurrent, batch=False, **kwargs):
        check_kwargs("ConcurrencyLimiter", kwargs, ["searcher", "max_concurrent", "batch"])
        if not isinstance(max_concurrent, int) or max_concurrent <= 0:
            raise ValueError(f"ConcurrencyLimiter: max_concurrent must be a positive integer, "
                             f"got {max_concurrent!r}")
        self.searcher = searcher
        self.max_concurrent = max_concurrent
        self.batch = batch
        self.live_trials = set()
        self.cached_results = {}
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def suggest(self, trial_id):
        if len(self.live_trials) >= self.max_concurrent:
            return None
        if self.batch and self.cached_results:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion not in (None, Searcher.FINISHED):
            self.live_trials.add(trial_id)
        return suggestion

    def on_trial_result(self, trial_id, result):
        if trial_id in self.live_trials:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        if trial_id not in self.live_trials:
            return
        if self.batch:
            self.cached_results[trial_id] = (result, error)
            if len(self.cached_results) == self.max_concurrent:
                for tid, (r, e) in self.cached_results.items():
                    self.searcher.on_trial_complete(tid, result=r, error=e)
                    self.live_trials.discard(tid)
                self.cached_results = {}
            return
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
        self.live_trials.discard(trial_id)

    def set_search_properties(self, metric, mode, config, **spec):
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return ok

    @property
    def metric(self):
        return self.searcher.metric

    @property
    def mode(self):
        return self.searcher.mode

    def get_state(self):
        state = {k: v for k, v in self.__dict__.items() if k != "searcher"}
        state["searcher"] = self.searcher.get_state()
        return state

    def set_state(self, state):
        inner = state.pop("searcher")
        self.__dict__.update(state)
        self.searcher.set_state(inner)
