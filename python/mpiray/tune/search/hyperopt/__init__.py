"""``HyperOptSearch``: HyperOpt's TPE as a Tune searcher (needs ``hyperopt``)."""

import copy
import math

import numpy as np

from ...._extras import require
from ..sample import Categorical, Domain, Float, Function, Integer, LogUniform, Normal, Quantized, Uniform
from ..searcher import Searcher, check_kwargs, check_mode
from ..variant_generator import flatten_dict, has_unresolved, unflatten_dict


def _to_hp(label, domain):
    from hyperopt import hp
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q = sampler.q
        sampler = sampler.get_sampler()
    if isinstance(domain, Float):
        if isinstance(sampler, LogUniform):
            lo, hi = math.log(domain.lower), math.log(domain.upper)
            return hp.qloguniform(label, lo, hi, q) if q else hp.loguniform(label, lo, hi)
        if isinstance(sampler, Uniform):
            return hp.quniform(label, domain.lower, domain.upper, q) if q else hp.uniform(label, domain.lower, domain.upper)
        if isinstance(sampler, Normal):
            return hp.qnormal(label, sampler.mean, sampler.sd, q) if q else hp.normal(label, sampler.mean, sampler.sd)
    if isinstance(domain, Integer):
        if isinstance(sampler, Uniform):
            return hp.uniformint(label, domain.lower, domain.upper - 1, q=q or 1)
        if isinstance(sampler, LogUniform):
            return hp.qloguniform(label, math.log(domain.lower), math.log(domain.upper - 1), q or 1)
    if isinstance(domain, Categorical):
        return hp.choice(label, [(_convert(c, f"{label}/{i}") if isinstance(c, (dict, Domain)) else c)
                                 for i, c in enumerate(domain.categories)])
    raise ValueError(f"HyperOpt does not support parameters of type {type(domain).__name__} with samplers of "
                     f"type {type(sampler).__name__} ({label})")


def _convert(spec, prefix=""):
    if isinstance(spec, Domain):
        return _to_hp(prefix, spec)
    if isinstance(spec, dict):
        if "grid_search" in spec and len(spec) == 1:
            raise ValueError("Grid search parameters cannot be automatically converted to a HyperOpt search space.")
        return {k: _convert(v, f"{prefix}/{k}" if prefix else str(k)) for k, v in spec.items()
                if not isinstance(v, Function)}
    return spec


def convert_search_space(spec):
    return _convert(spec)


class HyperOptSearch(Searcher):
    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, n_initial_points=20,
                 random_state_seed=None, gamma=0.25, **kwargs):
        check_kwargs("HyperOptSearch", kwargs, ["space", "metric", "mode", "points_to_evaluate",
                                                "n_initial_points", "random_state_seed", "gamma"])
        require("tune", "hyperopt")  # says `pip install "mpiray[tune]"` when missing
        from hyperopt import tpe
        import functools
        super().__init__(metric=metric, mode=mode)
        self._points = copy.deepcopy(points_to_evaluate or [])
        self._algo = functools.partial(tpe.suggest, n_startup_jobs=n_initial_points, gamma=gamma)
        self._seed = random_state_seed
        self._rstate = np.random.default_rng(random_state_seed)
        self._live = {}
        self._space = None
        self._domain = None
        self._trials = None
        if space is not None:
            if isinstance(space, dict) and has_unresolved(space):
                space = convert_search_space(space)
            self._space = space
            self._setup()

    def _setup(self):
        import hyperopt as hpo
        self._domain = hpo.Domain(lambda spc: spc, self._space)
        self._trials = hpo.Trials()
        for p in self._points:
            self._add_point(p)
        self._points = []

    def _add_point(self, point):
        # enqueue a given configuration as HyperOpt's next trial
        self._pending_points = getattr(self, "_pending_points", []) + [flatten_dict(point)]

    def set_search_properties(self, metric, mode, config, **spec):
        if self._domain is not None:
            if metric:
                self._metric = metric
            if mode:
                self._mode = mode
            return bool(self._metric and self._mode)
        self._space = convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            check_mode(mode, "HyperOptSearch")
            self._mode = mode
        self._setup()
        return bool(self._metric and self._mode)

    def suggest(self, trial_id):
        import hyperopt as hpo
        if self._domain is None:
            raise RuntimeError("HyperOptSearch has no search space: pass `space` or a param_space")
        pending = getattr(self, "_pending_points", [])
        if pending:
            point = pending.pop(0)
            self._live[trial_id] = None
            return unflatten_dict(point)
        new_ids = self._trials.new_trial_ids(1)
        self._trials.refresh()
        seed = int(self._rstate.integers(2 ** 31 - 1))
        new_trials = self._algo(new_ids, self._domain, self._trials, seed)
        self._trials.insert_trial_docs(new_trials)
        self._trials.refresh()
        doc = new_trials[0]
        self._live[trial_id] = (doc["tid"], doc)
        config = hpo.base.spec_from_misc(doc["misc"])
        ctrl = hpo.base.Ctrl(self._trials, current_trial=doc)
        memo = self._domain.memo_from_config(config)
        hpo.utils.use_obj_for_literal_in_memo(self._domain.expr, ctrl, hpo.base.Ctrl, memo)
        suggested = hpo.pyll.rec_eval(self._domain.expr, memo=memo)
        return copy.deepcopy(suggested)

    def _find_doc(self, tid):
        for t in self._trials.trials:
            if t["tid"] == tid:
                return t
        return None

    def on_trial_complete(self, trial_id, result=None, error=False):
        import hyperopt as hpo
        entry = self._live.pop(trial_id, None)
        if entry is None:
            return
        doc = self._find_doc(entry[0])
        if doc is None:
            return
        val = (result or {}).get(self._metric)
        if error or val is None:
            doc["state"] = hpo.base.JOB_STATE_ERROR
            doc["misc"]["error"] = (str(TypeError), "trial failed")
        else:
            loss = -val if self._mode == "max" else val
            doc["state"] = hpo.base.JOB_STATE_DONE
            doc["result"] = {"loss": loss, "status": "ok"}
        import datetime
        doc["refresh_time"] = datetime.datetime.now()
        self._trials.refresh()

    def get_state(self):
        return {"space": self._space, "metric": self._metric, "mode": self._mode, "trials": self._trials,
                "live": self._live, "rstate": self._rstate}

    def set_state(self, state):
        self._space = state["space"]
        self._metric = state["metric"]
        self._mode = state["mode"]
        import hyperopt as hpo
        self._domain = hpo.Domain(lambda spc: spc, self._space)
        self._trials = state["trials"]
        self._live = state["live"]
        self._rstate = state["rstate"]
