"""Population Based Training (Ray's ``PopulationBasedTraining``)."""

import copy
import math
import random

from ..search.sample import Domain, Float, Integer
from ..search.searcher import check_kwargs, check_mode
from ..error import TuneError
from .trial_scheduler import FIFOScheduler, TrialScheduler


class _PBTState:
    def __init__(self):
        self.last_score = None
        self.last_perturbation_time = 0
        self.last_result = None


def explore(config, mutations, resample_probability, perturbation_factors, custom_explore_fn, rng=random):
    """A mutated copy of ``config``: each key in ``mutations`` is resampled (with
    ``resample_probability``) or perturbed (multiplied by one of ``perturbation_factors``;
    lists: the neighbouring value)."""
    new = copy.deepcopy(config)
    for key, dist in mutations.items():
        if isinstance(dist, dict):
            new[key] = explore(config.get(key, {}), dist, resample_probability, perturbation_factors, None, rng)
            continue
        cur = config.get(key)
        if isinstance(dist, (list, tuple)):
            if rng.random() < resample_probability or cur not in dist:
                new[key] = rng.choice(list(dist))
            else:
                i = list(dist).index(cur)
                shift = rng.choice([-1, 1])
                new[key] = dist[max(0, min(len(dist) - 1, i + shift))]
        elif isinstance(dist, Domain) or callable(dist):
            sample = (lambda: dist.sample()) if isinstance(dist, Domain) else dist
            if rng.random() < resample_probability or cur is None:
                new[key] = sample()
            else:
                v = cur * rng.choice(list(perturbation_factors))
                if isinstance(cur, int) and not isinstance(cur, bool):
                    v = int(round(v))
                if isinstance(dist, (Float, Integer)):
                    v = min(max(v, dist.lower), dist.upper if isinstance(dist, Float) else dist.upper - 1)
                new[key] = v
        else:
            raise ValueError(f"Unsupported hyperparam distribution type for {key!r}: {type(dist).__name__}")
    if custom_explore_fn:
        out = custom_explore_fn(new)
        new = out if out is not None else new
    return new


class PopulationBasedTraining(FIFOScheduler):
    """Every ``perturbation_interval`` (in ``time_attr``), a trial in the bottom
    ``quantile_fraction`` copies the latest checkpoint and config of a trial in the top one
    (exploit) and mutates the config (explore), then goes on from that checkpoint.

    Function trainables must report checkpoints (as in Ray); class trainables checkpoint
    automatically every perturbation interval."""

    def __init__(self, time_attr="time_total_s", metric=None, mode=None, perturbation_interval=60.0,
                 burn_in_period=0.0, hyperparam_mutations=None, quantile_fraction=0.25,
                 resample_probability=0.25, perturbation_factors=(1.2, 0.8), custom_explore_fn=None,
                 log_config=True, require_attrs=True, synch=False, **kwargs):
        check_kwargs("PopulationBasedTraining", kwargs, [
            "time_attr", "metric", "mode", "perturbation_interval", "burn_in_period",
            "hyperparam_mutations", "quantile_fraction", "resample_probability",
            "perturbation_factors", "custom_explore_fn", "log_config", "require_attrs", "synch"])
        check_mode(mode, "PopulationBasedTraining")
        hyperparam_mutations = hyperparam_mutations or {}
        for k, v in hyperparam_mutations.items():
            if not isinstance(v, (list, tuple, dict, Domain)) and not callable(v):
                raise TypeError(f"`hyperparam_mutation` values must be either a List, Tuple, Dict, a tune "
                                f"search space object, or a callable. Got {type(v)} for key {k!r}")
        if not hyperparam_mutations and not custom_explore_fn:
            raise TuneError("You must specify at least one of `hyperparam_mutations` or "
                            "`custom_explore_fn` to use PBT.")
        if quantile_fraction > 0.5 or quantile_fraction < 0:
            raise ValueError(f"You must set `quantile_fraction` to a value between 0 and 0.5. Current value: "
                             f"'{quantile_fraction}'")
        if perturbation_interval <= 0:
            raise ValueError(f"perturbation_interval must be a positive number greater than 0. "
                             f"Current value: '{perturbation_interval}'")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = perturbation_factors
        self._custom_explore_fn = custom_explore_fn
        self._require_attrs = require_attrs
        self._state = {}
        self._num_perturbations = 0
        self._num_checkpoints = 0
        self.exploits = []   # (exploited trial id, donor trial id, donor checkpoint path)

    @property
    def checkpoint_interval(self):
        """Class trainables save this often (in iterations) when time_attr counts iterations."""
        if self._time_attr == "training_iteration":
            return int(self._perturbation_interval)
        return 0

    def on_trial_add(self, tune_controller, trial):
        self._state[trial.trial_id] = _PBTState()

    def on_trial_result(self, tune_controller, trial, result):
        if self._time_attr not in result or self._metric not in result:
            if self._require_attrs:
                missing = [k for k in (self._time_attr, self._metric) if k not in result]
                raise RuntimeError(f"Cannot find {missing} in trial result {sorted(result)}. Make sure that "
                                   "Tune is reporting the PBT time_attr and metric.")
            return TrialScheduler.CONTINUE
        state = self._state.setdefault(trial.trial_id, _PBTState())
        t = result[self._time_attr]
        state.last_score = self._score(result)
        state.last_result = result
        if t - state.last_perturbation_time < self._perturbation_interval or t < self._burn_in_period:
            return TrialScheduler.CONTINUE
        state.last_perturbation_time = t
        lower, upper = self._quantiles(tune_controller)
        if trial.trial_id in lower:
            candidates = [tid for tid in upper if tune_controller.get_trial(tid).checkpoint is not None]
            if not candidates:
                return TrialScheduler.CONTINUE
            donor = tune_controller.get_trial(random.choice(candidates))
            new_config = explore(donor.config, self._hyperparam_mutations, self._resample_probability,
                                 self._perturbation_factors, self._custom_explore_fn)
            self._num_perturbations += 1
            self.exploits.append((trial.trial_id, donor.trial_id, donor.checkpoint.path))
            tune_controller.exploit_trial(trial, donor, new_config)
            return TrialScheduler.NOOP
        return TrialScheduler.CONTINUE

    def _quantiles(self, controller):
        scored = [(tid, s.last_score) for tid, s in self._state.items()
                  if s.last_score is not None and controller.get_trial(tid) is not None
                  and not controller.get_trial(tid).is_finished()]
        if len(scored) <= 1:
            return [], []
        scored.sort(key=lambda x: x[1])
        n = int(math.ceil(len(scored) * self._quantile_fraction))
        if n > len(scored) / 2:
            n = int(math.floor(len(scored) / 2))
        return [tid for tid, _ in scored[:n]], [tid for tid, _ in scored[-n:]]

    def reset_state_after_exploit(self, trial_id, t):
        st = self._state.setdefault(trial_id, _PBTState())
        st.last_perturbation_time = t

    def debug_string(self):
        return f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, {self._num_perturbations} perturbs"

    def __str__(self):
        return "PopulationBasedTraining"

