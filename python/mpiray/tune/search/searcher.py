"""Search algorithms' base classes (Ray's ``Searcher`` and ``SearchAlgorithm``)."""

import copy
import os
import pickle
import random

from .variant_generator import generate_variants, merge_dicts, unflatten_dict, format_vars

UNRESOLVED_SEARCH_SPACE = ("You passed a `{par}` parameter to {cls} that contained unresolved "
                           "search space definitions. {cls} should however be instantiated with "
                           "fully configured search spaces only.")


def check_kwargs(what, kwargs, valid=()):
    """Unknown options get a ValueError naming them and the valid ones."""
    if kwargs:
        raise ValueError(f"Unknown option(s) {sorted(kwargs)} for {what}. Valid options: "
                         f"{sorted(valid)}")


def check_mode(mode, what):
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"{what}: `mode` must be 'min' or 'max', got {mode!r}")


class Searcher:
    """Suggests configs one trial at a time (Ray's ``ray.tune.search.Searcher``).

    Subclasses implement ``suggest(trial_id)`` (a config dict, None for "not now", or
    ``Searcher.FINISHED``) and ``on_trial_complete``; optionally ``on_trial_result``,
    ``set_search_properties``, ``save``/``restore``.
    """

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"

    def __init__(self, metric=None, mode=None):
        check_mode(mode, type(self).__name__)
        self._metric = metric
        self._mode = mode

    def set_search_properties(self, metric, mode, config, **spec):
        return False

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        raise NotImplementedError

    def suggest(self, trial_id):
        raise NotImplementedError

    def add_evaluated_point(self, parameters, value, error=False, pruned=False,
                            intermediate_values=None):
        raise NotImplementedError(f"{type(self).__name__} does not support add_evaluated_point")

    def add_evaluated_trials(self, trials_or_analysis, metric):
        raise NotImplementedError

    def get_state(self):
        return dict(self.__dict__)

    def set_state(self, state):
        self.__dict__.update(state)

    def save(self, checkpoint_path):
        tmp = f"{checkpoint_path}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(self.get_state(), f)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path):
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def save_to_dir(self, checkpoint_dir, session_str="default"):
        self.save(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format(session_str)))

    def restore_from_dir(self, checkpoint_dir):
        import glob
        files = sorted(glob.glob(os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format("*"))))
        if not files:
            raise RuntimeError(f"Searcher unable to find checkpoint in {checkpoint_dir}")
        self.restore(files[-1])

    @property
    def metric(self):
        return self._metric

    @property
    def mode(self):
        return self._mode


class SearchAlgorithm:
    """Produces trial configs for the controller (Ray's ``SearchAlgorithm``). Internal
    protocol: ``_setup(param_space, num_samples, seed)``, ``_next(trial_id)`` ->
    (config, tag) | None | FINISHED."""

    _finished = False

    def set_search_properties(self, metric, mode, config, **spec):
        return True

    @property
    def metric(self):
        return None

    def is_finished(self):
        return self._finished

    def set_finished(self):
        self._finished = True

    def on_trial_result(self, trial_id, result):
        pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass

    @property
    def total_samples(self):
        return 0

    def save(self, checkpoint_path):
        with open(f"{checkpoint_path}.tmp", "wb") as f:
            pickle.dump(self.get_state(), f)
        os.replace(f"{checkpoint_path}.tmp", checkpoint_path)

    def restore(self, checkpoint_path):
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))

    def get_state(self):
        return dict(self.__dict__)

    def set_state(self, state):
        self.__dict__.update(state)


class SearchGenerator(SearchAlgorithm):
    """Runs a ``Searcher`` for ``num_samples`` trials; suggestions are merged into the
    param_space and whatever the searcher left open (``sample_from``, constants) is resolved
    as the basic generator would."""

    def __init__(self, searcher):
        self.searcher = searcher
        self._param_space = {}
        self._num_samples = 1
        self._counter = 0
        self._rng = random.Random(0)

    def set_search_properties(self, metric, mode, config, **spec):
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    @property
    def metric(self):
        return self.searcher.metric

    @property
    def total_samples(self):
        return self._num_samples

    def _setup(self, param_space, num_samples, seed):
        self._param_space = param_space or {}
        self._num_samples = num_samples if num_samples >= 0 else float("inf")
        self._rng = random.Random(seed)

    def _next(self, trial_id):
        if self._counter >= self._num_samples:
            self._finished = True
            return Searcher.FINISHED
        suggested = self.searcher.suggest(trial_id)
        if suggested == Searcher.FINISHED:
            self._finished = True
            return Searcher.FINISHED
        if suggested is None:
            return None
        if any("/" in str(k) for k in suggested):
            suggested = unflatten_dict(suggested)
        merged = merge_dicts(_strip_domains(self._param_space, suggested), suggested)
        resolved, cfg = next(generate_variants(merged, self._rng))
        self._counter += 1
        tag = format_vars({**{(k,): v for k, v in _flat(suggested).items()}, **resolved})
        return cfg, tag

    def on_trial_result(self, trial_id, result):
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.searcher.on_trial_complete(trial_id, result=result, error=error)

    def get_state(self):
        return {"counter": self._counter, "rng": self._rng.getstate(),
                "searcher": self.searcher.get_state()}

    def set_state(self, state):
        self._counter = state["counter"]
        self._rng.setstate(state["rng"])
        self.searcher.set_state(state["searcher"])


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def _strip_domains(space, suggested):
    """The param_space without the entries the searcher decided (so they are not sampled)."""
    if not isinstance(space, dict):
        return space
    out = {}
    for k, v in space.items():
        if k in suggested and not isinstance(suggested[k], dict):
            continue
        if k in suggested and isinstance(v, dict):
            out[k] = _strip_domains(v, suggested[k])
        else:
            out[k] = v
    return out
