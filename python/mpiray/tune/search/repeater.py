"""``Repeater``: each suggested config runs ``repeat`` times; the searcher sees the mean."""

import numbers

from .searcher import Searcher, check_kwargs

TRIAL_INDEX = "__trial_index__"


class _TrialGroup:
    def __init__(self, primary, config):
        self.primary = primary
        self.config = config
        self.results = {}

    def add(self, trial_id):
        self.results[trial_id] = None


class Repeater(Searcher):
    def __init__(self, searcher, repeat=1, set_index=True, **kwargs):
        check_kwargs("Repeater", kwargs, ["searcher", "repeat", "set_index"])
        if not isinstance(repeat, int) or repeat < 1:
            raise ValueError(f"Repeater: repeat must be an integer >= 1, got {repeat!r}")
        self.searcher = searcher
        self.repeat = repeat
        self._set_index = set_index
        self._groups = []
        self._trial_group = {}
        self._current = None
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    def suggest(self, trial_id):
        if self._current is None or len(self._current.results) >= self.repeat:
            config = self.searcher.suggest(trial_id)
            if config in (None, Searcher.FINISHED):
                return config
            self._current = _TrialGroup(trial_id, dict(config))
            self._groups.append(self._current)
        g = self._current
        idx = len(g.results)
        g.add(trial_id)
        self._trial_group[trial_id] = g
        cfg = dict(g.config)
        if self._set_index:
            cfg[TRIAL_INDEX] = idx
        return cfg

    def on_trial_complete(self, trial_id, result=None, error=False):
        g = self._trial_group.get(trial_id)
        if g is None:
            return
        g.results[trial_id] = result if not error else {}
        if len(g.results) == self.repeat and all(r is not None for r in g.results.values()):
            metric = self.searcher.metric
            vals = [r.get(metric) for r in g.results.values() if r and isinstance(r.get(metric), numbers.Number)]
            avg = {metric: sum(vals) / len(vals)} if vals and metric else None
            self.searcher.on_trial_complete(g.primary, result=avg, error=avg is None)

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
