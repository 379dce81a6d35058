"""``Tuner`` (Ray's): the experiment's front door, with ``fit``, ``restore`` and
``can_restore``."""

import datetime
import inspect
import os
import pickle
import random
import uuid
import warnings

import cloudpickle

from ..train._checkpoint import Checkpoint
from ..train._config import RunConfig
from . import _journal
from .error import TuneError
from .experiment.trial import Trial
from .result_grid import ResultGrid
from .tune_config import TuneConfig

_TUNER_PKL = "tuner.pkl"


class Tuner:
    """``Tuner(trainable, param_space=..., tune_config=TuneConfig(...), run_config=RunConfig(...)).fit()``."""

    def __init__(self, trainable=None, *, param_space=None, tune_config=None, run_config=None,
                 _tuner_kwargs=None, _restored=None):
        if trainable is None:
            raise ValueError("Tuner needs a trainable: a function, a tune.Trainable subclass, or the name "
                             "of a registered trainable")
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise ValueError(f"tune_config must be a tune.TuneConfig, got {type(tune_config).__name__}")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise ValueError(f"run_config must be a tune.RunConfig, got {type(run_config).__name__}")
        if param_space is not None and not isinstance(param_space, dict) and callable(getattr(param_space, "to_dict", None)):
            param_space = param_space.to_dict()  # an RLlib AlgorithmConfig, as Ray accepts it
        if param_space is not None and not isinstance(param_space, dict):
            raise ValueError(f"param_space must be a dict, got {type(param_space).__name__}")
        self._trainable = _resolve_trainable(trainable)
        self._param_space = param_space or {}
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        self._restored = _restored
        self._results = None

    @classmethod
    def can_restore(cls, path, storage_filesystem=None):
        """Whether ``path`` holds an experiment that ``Tuner.restore`` can continue."""
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        return os.path.exists(os.path.join(path, _journal.JOURNAL)) and os.path.exists(os.path.join(path, _TUNER_PKL))

    @classmethod
    def restore(cls, path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False,
                param_space=None, storage_filesystem=None, _resume_config=None):
        """Continue the experiment in ``path``: finished trials are kept as they are, trials
        that were running continue from their latest checkpoints (from the start without one),
        paused and never-started trials start, and the searcher goes on where it stopped.
        ``resume_errored`` resumes errored trials from their checkpoints, ``restart_errored``
        starts them again from scratch."""
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not cls.can_restore(path):
            raise ValueError(f"Could not restore an experiment from {path!r}: it has no {_journal.JOURNAL} "
                             f"and {_TUNER_PKL}. Pass the experiment directory (storage_path/name) of a "
                             "Tuner.fit() run.")
        with open(os.path.join(path, _TUNER_PKL), "rb") as f:
            state = pickle.load(f)
        tune_config = state["tune_config"]
        run_config = state["run_config"]
        run_config.storage_path = os.path.dirname(path)
        run_config.name = os.path.basename(path)
        tuner = cls(trainable, param_space=param_space if param_space is not None else state["param_space"],
                    tune_config=tune_config, run_config=run_config,
                    _restored={"path": path, "state": state, "resume_unfinished": resume_unfinished,
                               "resume_errored": resume_errored, "restart_errored": restart_errored})
        return tuner

    def get_results(self):
        if self._results is None:
            raise RuntimeError("Can't return results as experiment has not been run yet. Call Tuner.fit() first.")
        return self._results

    def fit(self):
        """Run the experiment; returns a ``ResultGrid``. Trial errors do not raise (see
        ``ResultGrid.errors``); experiment-level problems raise ``TuneError``/``ValueError``."""
        import mpiray
        if not mpiray.is_initialized():
            mpiray.init()
        from ._controller import TuneController
        tc, rc = self._tune_config, self._run_config
        trainable = self._trainable
        name = _trainable_name(trainable)
        is_class = _is_class(trainable)
        restored = self._restored
        if restored:
            exp_path = restored["path"]
            exp_name = os.path.basename(exp_path)
            seed = restored["state"]["seed"]
            exp_id = restored["state"]["exp_id"]
        else:
            exp_name = rc.name or f"{name}_{datetime.datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}"
            exp_path = os.path.join(rc.resolved_storage_path(), exp_name)
            os.makedirs(exp_path, exist_ok=True)
            old = os.path.join(exp_path, _journal.JOURNAL)
            if os.path.exists(old):
                os.replace(old, f"{old}.old-{int(datetime.datetime.now().timestamp())}")
            seed = random.SystemRandom().randrange(2 ** 31)
            exp_id = uuid.uuid4().hex[:5]
            _write_tuner_pkl(exp_path, self._param_space, tc, rc, seed, exp_id, name)
        search_alg, scheduler = _make_search_and_scheduler(tc, self._param_space, seed, restored)
        from .stopper import to_stopper
        stopper = to_stopper(rc.stop)
        callbacks = _callbacks(rc)
        resources = getattr(trainable, "_mpiray_resources", None)
        if resources is None and is_class:
            req = trainable.default_resource_request({})
            resources = req
        trials = None
        if restored:
            trials = _restore_trials(exp_path, restored, search_alg, scheduler)
        ctl = TuneController(trainable=trainable, trainable_name=name, is_class=is_class,
                             param_space=self._param_space, tune_config=tc, run_config=rc,
                             experiment_path=exp_path, experiment_name=exp_name, search_alg=search_alg,
                             scheduler=scheduler, stopper=stopper, callbacks=callbacks, trials=trials,
                             seed=seed, resources=resources)
        ctl._exp_id = exp_id
        if restored:
            ctl.journal.write("resume")
            for t in ctl._trials:
                if t.status in (Trial.PENDING,) and restored["state"] is not None:
                    pass
        else:
            ctl.journal.write("start", name=exp_name, trainable=name, seed=seed, exp_id=exp_id)
        trials = ctl.run()
        self._results = ResultGrid(trials, exp_path, tc.metric, tc.mode)
        self._experiment_path = exp_path
        return self._results


# ---------------------------------------------------------------------- helpers

def _resolve_trainable(trainable):
    from .trainable import Trainable, get_trainable_cls
    if isinstance(trainable, str):
        return get_trainable_cls(trainable)
    if hasattr(trainable, "as_trainable") and not inspect.isclass(trainable):
        # Ray's older Tuner(trainer): a Train trainer turns itself into a trainable
        warnings.warn("Passing a Trainer to Tuner is deprecated (as in Ray 2.x): run the trainer inside "
                      "a function trainable instead.", DeprecationWarning, stacklevel=3)
        return trainable.as_trainable()
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable):
            raise ValueError(f"A class trainable must subclass tune.Trainable, got {trainable.__name__}")
        return trainable
    if callable(trainable):
        sig = None
        try:
            sig = inspect.signature(trainable)
        except (TypeError, ValueError):
            pass
        if sig is not None:
            required = [p for p in sig.parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if len(required) > 1:
                raise ValueError(f"The function trainable {getattr(trainable, '__name__', trainable)} must take "
                                 f"exactly one argument (config); it needs {len(required)}. Use "
                                 "tune.with_parameters to pass more.")
        return trainable
    raise ValueError(f"Invalid trainable {trainable!r}: pass a function, a tune.Trainable subclass or a "
                     "registered name")


def _trainable_name(t):
    n = getattr(t, "_mpiray_name", None)
    if n:
        return n
    return getattr(t, "__name__", type(t).__name__)


def _is_class(t):
    from .trainable import Trainable
    return inspect.isclass(t) and issubclass(t, Trainable)


def _write_tuner_pkl(path, param_space, tc, rc, seed, exp_id, name):
    import copy
    rc2 = copy.copy(rc)
    try:
        cloudpickle.dumps(rc2.callbacks)
    except Exception:
        rc2.callbacks = None
    try:
        cloudpickle.dumps(rc2.stop)
    except Exception:
        rc2.stop = None
    state = {"param_space": param_space, "tune_config": tc, "run_config": rc2, "seed": seed,
             "exp_id": exp_id, "trainable_name": name}
    try:
        data = cloudpickle.dumps(state)
    except Exception:
        state["param_space"] = None
        data = cloudpickle.dumps(state)
    tmp = os.path.join(path, _TUNER_PKL + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(path, _TUNER_PKL))


def _make_search_and_scheduler(tc, param_space, seed, restored):
    from .schedulers import FIFOScheduler, ResourceChangingScheduler
    from .search.basic_variant import BasicVariantGenerator
    from .search.concurrency_limiter import ConcurrencyLimiter
    from .search.searcher import SearchAlgorithm, SearchGenerator, Searcher
    search = tc.search_alg
    if search is None:
        search = BasicVariantGenerator()
    if isinstance(search, Searcher):
        if tc.max_concurrent_trials:
            if isinstance(search, ConcurrencyLimiter):
                raise ValueError("You have specified `max_concurrent_trials` but the `search_alg` is already a "
                                 "`ConcurrencyLimiter`. FIX THIS by setting `max_concurrent_trials=None`.")
            search = ConcurrencyLimiter(search, tc.max_concurrent_trials)
        if search.metric is not None and tc.metric is not None and search.metric != tc.metric:
            raise ValueError(f"The metric {tc.metric!r} of TuneConfig differs from the searcher's "
                             f"{search.metric!r}")
        if not search.set_search_properties(tc.metric, tc.mode, param_space):
            if search.metric is None or search.mode is None:
                raise ValueError(f"{type(search).__name__} needs a metric and mode: set them in TuneConfig or "
                                 "in the searcher")
        search = SearchGenerator(search)
    elif not isinstance(search, SearchAlgorithm):
        raise ValueError(f"search_alg must be a tune Searcher or SearchAlgorithm, got {type(search).__name__}")
    else:
        search.set_search_properties(tc.metric, tc.mode, param_space)
    search._setup(param_space, tc.num_samples, seed)
    scheduler = tc.scheduler or FIFOScheduler()
    if not scheduler.set_search_properties(tc.metric, tc.mode):
        raise ValueError(f"The metric/mode of TuneConfig ({tc.metric}, {tc.mode}) differ from the scheduler's "
                         f"({scheduler.metric}, {scheduler.mode})")
    needs = not isinstance(scheduler, FIFOScheduler) or type(scheduler).__name__ != "FIFOScheduler"
    if isinstance(scheduler, ResourceChangingScheduler):
        needs = type(scheduler._base).__name__ != "FIFOScheduler"
    if needs and (not scheduler.metric or not scheduler.mode):
        raise ValueError(f"{type(scheduler).__name__} needs a metric and mode: pass them to the scheduler or "
                         "to TuneConfig(metric=..., mode=...)")
    if restored:
        sp = os.path.join(restored["path"], "searcher-state.pkl")
        if os.path.exists(sp):
            try:
                search.restore(sp)
            except Exception as e:
                warnings.warn(f"Could not restore the searcher's state ({e}); it starts afresh")
        schp = os.path.join(restored["path"], "scheduler-state.pkl")
        if os.path.exists(schp):
            try:
                with open(schp, "rb") as f:
                    scheduler = pickle.load(f)
            except Exception:
                pass
    return search, scheduler


def _callbacks(rc):
    from .logger import default_logger_callbacks
    user = list(rc.callbacks or [])
    from .callback import Callback
    for cb in user:
        if not isinstance(cb, Callback):
            raise ValueError(f"RunConfig(callbacks=...) takes tune.Callback objects, got {type(cb).__name__}")
    if os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS") == "1":
        return user
    have = {type(c) for c in user}
    return user + [c for c in default_logger_callbacks() if type(c) not in have]


def _restore_trials(path, restored, search_alg, scheduler, read_all=False):
    from ._trial_dir import read_results
    events = _journal.read(path)
    trials, by_id = [], {}
    status, errors = {}, {}
    for ev in events:
        kind = ev.get("ev")
        if kind == "trial":
            t = Trial(ev["id"], restored["state"]["trainable_name"], _journal._unb64(ev["config"]), ev["tag"],
                      _journal._unb64(ev["pgf"]), os.path.join(path, ev["path"]), path, index=ev["index"])
            trials.append(t)
            by_id[t.trial_id] = t
        elif kind == "ckpt" and ev["id"] in by_id:
            t = by_id[ev["id"]]
            t.checkpoint = Checkpoint(os.path.join(t.local_path, ev["path"]))
            t.ckpt_iteration = ev["iter"]
            t.ckpt_time_total = ev.get("time_total", 0.0)
            t.ckpt_index = max(t.ckpt_index, ev.get("index", 0))
            t.checkpoints.append((t.checkpoint, {"training_iteration": ev["iter"]}))
        elif kind == "config" and ev["id"] in by_id:
            t = by_id[ev["id"]]
            t.config = _journal._unb64(ev["config"])
            t.placement_group_factory = _journal._unb64(ev["pgf"])
        elif kind == "status" and ev["id"] in by_id:
            status[ev["id"]] = ev["status"]
            t = by_id[ev["id"]]
            t.run_metadata.num_failures = ev.get("failures", 0)
            if ev.get("result"):
                t.last_result = ev["result"]
            if ev.get("analysis"):
                t.metric_analysis = ev["analysis"]
            if ev.get("error"):
                errors[ev["id"]] = ev["error"]
    for t in trials:
        st = status.get(t.trial_id)
        # checkpoints num_to_keep deleted are gone
        t.checkpoints = [(c, m) for c, m in t.checkpoints if os.path.isdir(c.path)]
        if read_all or st != "TERMINATED" or not t.metric_analysis:
            results = read_results(t.local_path)
            by_iter = {r.get("training_iteration"): r for r in results}
            t.checkpoints = [(c, by_iter.get(m["training_iteration"], m)) for c, m in t.checkpoints]
            if results:
                # what the trial will report again after resuming from its checkpoint counts
                # once: the analysis covers the results up to the checkpoint
                upto = t.ckpt_iteration if st not in ("TERMINATED", "ERROR") else float("inf")
                t.metric_analysis, t.metric_n_steps = {}, {}
                for r in results:
                    if r.get("training_iteration", 0) <= upto:
                        t.update_last_result(r)
                t.last_result = results[-1]
        if st == "TERMINATED":
            t.status = Trial.TERMINATED
        elif st == "ERROR":
            if restored["restart_errored"]:
                t.status = Trial.PENDING
                t.checkpoint = None
                t.ckpt_iteration = 0
                t.run_metadata.num_failures = 0
            elif restored["resume_errored"]:
                t.status = Trial.PENDING
                t.run_metadata.num_failures = 0
            else:
                t.status = Trial.ERROR
                t.error = TuneError(errors.get(t.trial_id, "trial errored"))
                p = os.path.join(t.local_path, "error.txt")
                t.run_metadata.error_filename = p if os.path.exists(p) else None
        else:
            t.status = Trial.PENDING if restored["resume_unfinished"] else Trial.TERMINATED
    # the basic generator continues after the trials the journal already has
    from .search.basic_variant import BasicVariantGenerator
    if isinstance(search_alg, BasicVariantGenerator):
        search_alg._generated = len(trials)
        search_alg._iter = None
        search_alg._finished = False
        search_alg._live = {t.trial_id for t in trials if not t.is_finished()}
    known = getattr(scheduler, "_trial_info", None) or getattr(scheduler, "_state", None) or {}
    for t in trials:
        if not t.is_finished() and t.trial_id not in known:
            scheduler.on_trial_add(None, t)
    return trials
