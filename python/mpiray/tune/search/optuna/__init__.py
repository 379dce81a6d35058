"""``OptunaSearch``: Optuna's samplers (TPE by default) as a Tune searcher (needs
``optuna``)."""

import math

from ...._extras import require
from ..sample import Categorical, Domain, Float, Function, Integer, LogUniform, Normal, Quantized, Uniform
from ..searcher import Searcher, check_kwargs, check_mode, UNRESOLVED_SEARCH_SPACE
from ..variant_generator import flatten_dict, has_unresolved, unflatten_dict


def _to_optuna(path, domain):
    import optuna.distributions as od
    sampler = domain.get_sampler()
    q = None
    if isinstance(sampler, Quantized):
        q = sampler.q
        sampler = sampler.get_sampler()
    if isinstance(domain, Float):
        if isinstance(sampler, LogUniform):
            if q is not None:
                raise ValueError(f"Optuna does not support quantized log-uniform floats ({path})")
            return od.FloatDistribution(domain.lower, domain.upper, log=True)
        if isinstance(sampler, Uniform):
            return od.FloatDistribution(domain.lower, domain.upper, step=q)
    if isinstance(domain, Integer):
        if isinstance(sampler, LogUniform):
            return od.IntDistribution(domain.lower, domain.upper - int(q or 1), log=True)
        if isinstance(sampler, Uniform):
            return od.IntDistribution(domain.lower, domain.upper - int(q or 1), step=int(q or 1))
    if isinstance(domain, Categorical) and isinstance(sampler, Uniform):
        return od.CategoricalDistribution(domain.categories)
    raise ValueError(f"Optuna search does not support parameters of type {type(domain).__name__} with "
                     f"samplers of type {type(sampler).__name__} ({path})")


def convert_search_space(spec):
    flat = flatten_dict(spec)
    out = {}
    for k, v in flat.items():
        if isinstance(v, dict) and "grid_search" in v:
            raise ValueError("Grid search parameters cannot be automatically converted to an Optuna search space.")
        if isinstance(v, Function):
            continue
        if isinstance(v, Domain):
            out[k] = _to_optuna(k, v)
    return out


class OptunaSearch(Searcher):
    def __init__(self, space=None, metric=None, mode=None, points_to_evaluate=None, sampler=None, seed=None,
                 evaluated_rewards=None, **kwargs):
        check_kwargs("OptunaSearch", kwargs, ["space", "metric", "mode", "points_to_evaluate", "sampler", "seed",
                                              "evaluated_rewards"])
        require("tune", "optuna")  # says `pip install "mpiray[tune]"` when missing
        super().__init__(metric=metric, mode=mode)
        if isinstance(space, dict) and space and has_unresolved(space):
            space = convert_search_space(space)
        self._space = space
        self._points = list(points_to_evaluate or [])
        self._sampler = sampler
        self._seed = seed
        self._evaluated_rewards = evaluated_rewards
        self._ot_trials = {}
        self._ot_study = None
        if self._space is not None and metric and mode:
            self._setup_study()

    def _setup_study(self):
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = self._sampler or optuna.samplers.TPESampler(seed=self._seed)
        self._ot_study = optuna.create_study(sampler=sampler,
                                             direction="minimize" if self._mode == "min" else "maximize")
        if self._evaluated_rewards is not None:
            for p, r in zip(self._points, self._evaluated_rewards):
                self._ot_study.enqueue_trial(p)
                t = self._ot_study.ask(self._space)
                self._ot_study.tell(t, r)
            self._points = []
        for p in self._points:
            self._ot_study.enqueue_trial(flatten_dict(p))

    def set_search_properties(self, metric, mode, config, **spec):
        if self._space is not None and self._ot_study is not None:
            return False
        if self._space is None:
            self._space = convert_search_space(config)
        if metric:
            self._metric = metric
        if mode:
            check_mode(mode, "OptunaSearch")
            self._mode = mode
        if not self._metric or not self._mode:
            return False
        self._setup_study()
        return True

    def suggest(self, trial_id):
        if self._ot_study is None:
            raise RuntimeError(UNRESOLVED_SEARCH_SPACE.format(cls="OptunaSearch", par="space")
                               if self._space is None else
                               "OptunaSearch needs a metric and mode (pass them or set TuneConfig)")
        if callable(self._space):
            ot_trial = self._ot_study.ask()
            consts = self._space(ot_trial) or {}
            params = {**ot_trial.params, **consts}
        else:
            ot_trial = self._ot_study.ask(fixed_distributions=self._space)
            params = dict(ot_trial.params)
        self._ot_trials[trial_id] = ot_trial
        return unflatten_dict(params)

    def on_trial_result(self, trial_id, result):
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or self._metric not in result:
            return
        step = result.get("training_iteration", 0)
        try:
            ot_trial.report(result[self._metric], step)
        except Exception:
            pass

    def on_trial_complete(self, trial_id, result=None, error=False):
        import optuna
        ot_trial = self._ot_trials.pop(trial_id, None)
        if ot_trial is None:
            return
        val = (result or {}).get(self._metric)
        state = optuna.trial.TrialState.COMPLETE
        if error or val is None or (isinstance(val, float) and math.isnan(val)):
            state, val = optuna.trial.TrialState.FAIL, None
        self._ot_study.tell(ot_trial, val, state=state)

    def add_evaluated_point(self, parameters, value, error=False, pruned=False, intermediate_values=None):
        import optuna
        import optuna.trial as ott
        dist = self._space
        t = ott.create_trial(params=flatten_dict(parameters), distributions=dist, value=value,
                             state=optuna.trial.TrialState.COMPLETE)
        self._ot_study.add_trial(t)

    @property
    def study(self):
        return self._ot_study

    def get_state(self):
        return {"space": self._space, "metric": self._metric, "mode": self._mode, "study": self._ot_study,
                "trials": self._ot_trials, "points": self._points}

    def set_state(self, state):
        self._space = state["space"]
        self._metric = state["metric"]
        self._mode = state["mode"]
        self._ot_study = state["study"]
        self._ot_trials = state["trials"]
        self._points = state["points"]
