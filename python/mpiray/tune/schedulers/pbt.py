"""Population Based Training (Ray's ``PopulationBasedTraining``)."""

import copy
import math
import random

from ..search.sample import Domain
from ..search.searcher import check_kwargs, check_mode
from ..error import TuneError
from .trial_scheduler import FIFOScheduler, TrialScheduler


class _PBTState:
    def __init__(self, orig_tag=""):
        self.orig_tag = orig_tag
        self.last_score = None
        self.last_checkpoint = None       # kept while the trial is in the upper quantile
        self.last_perturbation_time = 0
        self.last_train_time = 0
        self.last_result = None


def explore(config, mutations, resample_probability, perturbation_factors, custom_explore_fn, rng=random):
    """A mutated copy of ``config`` (Ray's ``_explore``): each key in ``mutations`` is
    resampled (with ``resample_probability``) or perturbed: lists move to a neighbouring
    value, search-space domains and functions multiply the value by one of
    ``perturbation_factors`` (ints rounded)."""
    new = copy.deepcopy(config)
    for key, dist in mutations.items():
        if isinstance(dist, dict):
            new[key] = explore(config[key], dist, resample_probability, perturbation_factors, None, rng)
            continue
        cur = config[key]
        if isinstance(dist, (list, tuple)):
            if rng.random() < resample_probability or cur not in dist:
                new[key] = rng.choice(list(dist))
            else:
                i = list(dist).index(cur)
                shift = rng.choice([-1, 1])
                new[key] = dist[max(0, min(len(dist) - 1, i + shift))]
        elif isinstance(dist, Domain) or callable(dist):
            if rng.random() < resample_probability:
                new[key] = dist.sample() if isinstance(dist, Domain) else dist()
            else:
                new[key] = cur * rng.choice(list(perturbation_factors))
            if isinstance(cur, bool):
                new[key] = bool(new[key])
            elif isinstance(cur, int):
                new[key] = int(round(new[key]))
        else:
            raise ValueError(f"Unsupported hyperparameter distribution type: {type(dist)}")
    if custom_explore_fn:
        new = custom_explore_fn(new)
        if new is None:
            raise ValueError("Custom explore fn failed to return new config")
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
        self._log_config = log_config
        self._synch = synch
        self._next_perturbation_sync = max(perturbation_interval, burn_in_period)
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
        self._state[trial.trial_id] = _PBTState(trial.experiment_tag)

    def on_trial_result(self, tune_controller, trial, result):
        """Ray's algorithm. Every ``perturbation_interval``: the trial's score is recorded; a
        trial in the upper quantile keeps its checkpoint as the one others may copy, a trial
        in the lower quantile copies the checkpoint of a random upper one and continues with
        an explored config (it is paused and restarted from there). Asynchronous: each trial
        at its own time (and it yields when trials are waiting for resources). ``synch=True``:
        each trial pauses at the perturbation point until all have reached it, then the whole
        population is ranked at once."""
        if self._time_attr not in result or self._metric not in result:
            if self._require_attrs:
                missing = [k for k in (self._time_attr, self._metric) if k not in result]
                raise RuntimeError(f"Cannot find {missing} in trial result {sorted(result)}. Make sure that "
                                   "Tune is reporting the PBT time_attr and metric. If this is expected, "
                                   "set PBT(require_attrs=False)")
            return TrialScheduler.CONTINUE
        t = result[self._time_attr]
        state = self._state.setdefault(trial.trial_id, _PBTState(trial.experiment_tag))
        if t < self._burn_in_period:
            return TrialScheduler.CONTINUE
        if t - state.last_perturbation_time < self._perturbation_interval:
            return TrialScheduler.CONTINUE
        state.last_score = self._score(result)
        state.last_train_time = t
        state.last_result = result
        if not self._synch:
            state.last_perturbation_time = t
            lower, upper = self._quantiles(tune_controller)
            decision = TrialScheduler.CONTINUE
            for other in tune_controller.get_trials():
                if other.status in ("PENDING", "PAUSED") and other is not trial:
                    decision = TrialScheduler.PAUSE     # give waiting trials their turn
                    break
            self._checkpoint_or_exploit(trial, tune_controller, upper, lower)
            return TrialScheduler.NOOP if trial.status == "PAUSED" else decision
        if any(self._state[o.trial_id].last_train_time < self._next_perturbation_sync and o is not trial
               for o in tune_controller.get_live_trials() if o.trial_id in self._state):
            return TrialScheduler.PAUSE   # wait for the others to reach the perturbation point
        lower, upper = self._quantiles(tune_controller)
        rest = [o for o in tune_controller.get_trials()
                if o.trial_id not in lower and o.trial_id not in upper and o.trial_id in self._state]
        ordered = [tune_controller.get_trial(x) for x in upper] + rest + [tune_controller.get_trial(x) for x in lower]
        for o in ordered:
            self._state[o.trial_id].last_perturbation_time = t
            self._checkpoint_or_exploit(o, tune_controller, upper, lower)
        self._next_perturbation_sync = max(self._next_perturbation_sync + self._perturbation_interval,
                                           max(s.last_train_time for s in self._state.values()))
        return TrialScheduler.NOOP if trial.status == "PAUSED" else TrialScheduler.PAUSE

    def _checkpoint_or_exploit(self, trial, controller, upper, lower):
        state = self._state[trial.trial_id]
        if trial.trial_id in upper:
            # the checkpoint of this result (function trainables report it with the result;
            # class trainables save every perturbation interval)
            state.last_checkpoint = trial.checkpoint
            self._num_checkpoints += 1
        else:
            state.last_checkpoint = None
        if trial.trial_id not in lower:
            return
        donor = controller.get_trial(random.choice(upper))
        donor_state = self._state[donor.trial_id]
        ckpt = donor_state.last_checkpoint
        if ckpt is None:
            return   # as Ray: no checkpoint of the donor, no exploit
        new_config = explore(donor.config, self._hyperparam_mutations, self._resample_probability,
                             self._perturbation_factors, self._custom_explore_fn)
        if self._log_config:
            self._log_policy(controller, trial, donor, state, donor_state, new_config)
        self._num_perturbations += 1
        self.exploits.append((trial.trial_id, donor.trial_id, ckpt.path))
        controller.exploit_trial(trial, donor, new_config, checkpoint=ckpt)
        trial.experiment_tag = _tag(state.orig_tag, new_config, self._hyperparam_mutations)
        state.last_perturbation_time = donor_state.last_perturbation_time
        state.last_train_time = donor_state.last_train_time

    def _log_policy(self, controller, trial, donor, state, donor_state, new_config):
        import json
        import os
        import shutil
        exp = trial.experiment_path
        policy = [state.orig_tag, donor_state.orig_tag, (trial.last_result or {}).get("training_iteration", 0),
                  (donor.last_result or {}).get("training_iteration", 0), donor.config, new_config]
        line = json.dumps(policy, default=repr)
        try:
            with open(os.path.join(exp, "pbt_global.txt"), "a") as f:
                f.write(line + "\n")
            mine = os.path.join(exp, f"pbt_policy_{trial.trial_id}.txt")
            theirs = os.path.join(exp, f"pbt_policy_{donor.trial_id}.txt")
            if os.path.exists(theirs):
                shutil.copyfile(theirs, mine)
            with open(mine, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass

    def _quantiles(self, controller):
        scored = []
        for tid, s in self._state.items():
            t = controller.get_trial(tid)
            if t is None or t.is_finished() or s.last_score is None or s.last_score != s.last_score:
                continue
            scored.append((tid, s.last_score))
        if len(scored) <= 1:
            return [], []
        scored.sort(key=lambda x: x[1])
        n = int(math.ceil(len(scored) * self._quantile_fraction))
        if n > len(scored) / 2:
            n = int(math.floor(len(scored) / 2))
        return [tid for tid, _ in scored[:n]], [tid for tid, _ in scored[len(scored) - n:]]

    def choose_trial_to_run(self, tune_controller):
        """Fair share (as Ray): the waiting trial that is furthest behind in time_attr; with
        ``synch``, only trials that have not reached the next perturbation point."""
        from .trial_scheduler import _has_actor
        cands = []
        for t in tune_controller.get_trials():
            if t.status in ("PENDING", "PAUSED") and not _has_actor(tune_controller, t):
                st = self._state.get(t.trial_id)
                if st is None:
                    cands.append((0, t))
                elif not self._synch or st.last_train_time < self._next_perturbation_sync:
                    cands.append((st.last_train_time, t))
        if not cands:
            return None
        return min(cands, key=lambda x: x[0])[1]

    def debug_string(self):
        return f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, {self._num_perturbations} perturbs"

    def __str__(self):
        return "PopulationBasedTraining"


def _tag(orig_tag, config, mutations):
    from ..search.variant_generator import format_vars
    return "{}@perturbed[{}]".format(orig_tag, format_vars({("config", k): config.get(k) for k in mutations}))

