"""``BasicVariantGenerator``: grid search and random sampling (Tune's default)."""

import itertools
import random

from .searcher import SearchAlgorithm, Searcher, check_kwargs
from .variant_generator import count_grid, format_vars, generate_variants, merge_dicts


class BasicVariantGenerator(SearchAlgorithm):
    """Every grid combination ``num_samples`` times, random domains sampled per trial;
    ``points_to_evaluate`` first. Trials are generated lazily (``num_samples=-1`` runs until a
    stopper or the time budget ends it) and identically again from the experiment's seed, so
    ``Tuner.restore`` continues with exactly the trials that never started."""

    def __init__(self, points_to_evaluate=None, max_concurrent=0, constant_grid_search=False,
                 random_state=None, **kwargs):
        check_kwargs("BasicVariantGenerator", kwargs,
                     ["points_to_evaluate", "max_concurrent", "constant_grid_search", "random_state"])
        self._points = list(points_to_evaluate or [])
        self.max_concurrent = max_concurrent
        self._constant_grid_search = constant_grid_search
        self._random_state = random_state
        self._generated = 0
        self._iter = None
        self._param_space = {}
        self._num_samples = 1
        self._total = 0
        self._live = set()
        self._seed = None

    def _setup(self, param_space, num_samples, seed):
        self._param_space = param_space or {}
        self._num_samples = num_samples
        if isinstance(self._random_state, int):
            seed = self._random_state
        self._seed = seed
        grid = count_grid(self._param_space)
        self._total = (len(self._points) + grid * num_samples) if num_samples >= 0 else float("inf")
        self._iter = None

    @property
    def total_samples(self):
        return self._total

    def _variants(self):
        rng = random.Random(self._seed)
        for p in self._points:
            merged = merge_dicts(self._param_space, p)
            resolved, cfg = next(generate_variants(merged, rng, self._constant_grid_search))
            yield cfg, format_vars(resolved)
        samples = itertools.count() if self._num_samples < 0 else range(self._num_samples)
        for _ in samples:
            for resolved, cfg in generate_variants(self._param_space, rng, self._constant_grid_search):
                yield cfg, format_vars(resolved)

    def _next(self, trial_id):
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        if self._iter is None:
            self._iter = self._variants()
            for _ in range(self._generated):  # restore: skip the trials already made
                next(self._iter, None)
        item = next(self._iter, None)
        if item is None:
            self._finished = True
            return Searcher.FINISHED
        self._generated += 1
        self._live.add(trial_id)
        return item

    def on_trial_complete(self, trial_id, result=None, error=False):
        self._live.discard(trial_id)

    def get_state(self):
        return {"generated": self._generated, "seed": self._seed, "finished": self._finished}

    def set_state(self, state):
        self._generated = state["generated"]
        self._seed = state["seed"]
        self._finished = state.get("finished", False)
        self._iter = None
