"""``DataParallelTrainer`` (Ray's ``ray.train.DataParallelTrainer``): the same training
function on every worker, each with its shard of the data (SPMD)."""

import inspect
import os
import warnings

import cloudpickle

from ._callback import TrainRunContext
from ._train_config import DataConfig, RunConfig, ScalingConfig
from .backend import BackendConfig

_RESTORE_WARNING = ("`{cls}.restore` is deprecated in Ray 2.60 (Train V2 resumes a run when fit() is called "
                    "again with the same RunConfig(name, storage_path)); mpiray keeps it working.")


def _construct_train_func(train_loop, config, context_cls):
    """A function of no argument that runs the user's loop (with ``config`` when it takes one)
    inside the backend's context."""
    if not callable(train_loop):
        raise TypeError(f"train_loop_per_worker must be a function, got {type(train_loop).__name__}")
    try:
        nparams = len(inspect.signature(train_loop).parameters)
    except (TypeError, ValueError):
        nparams = 1
    if nparams > 1:
        raise ValueError(f"train_loop_per_worker should take in 0 or 1 arguments, but it accepts {nparams} "
                         "arguments instead.")
    if nparams == 0 and config:
        raise ValueError("train_loop_per_worker takes no argument but a train_loop_config was given")

    def train_fn():
        with context_cls():
            if nparams == 1:
                return train_loop(config if config is not None else {})
            return train_loop()

    train_fn.__name__ = getattr(train_loop, "__name__", "train_loop_per_worker")
    return train_fn


class DataParallelTrainer:
    """Run ``train_loop_per_worker(config)`` on ``scaling_config.num_workers`` workers.

    Args match Ray 2.60: ``train_loop_per_worker``, ``train_loop_config``, ``backend_config``,
    ``scaling_config``, ``run_config``, ``datasets``, ``dataset_config``. ``fit()`` returns a
    :class:`~mpiray.train.Result` and raises :class:`~mpiray.train.TrainingFailedError` when the
    run fails (the error's text carries the workers' remote tracebacks).
    """

    _backend_config_cls = BackendConfig

    def __init__(self, train_loop_per_worker, *, train_loop_config=None, backend_config=None, scaling_config=None,
                 run_config=None, datasets=None, dataset_config=None, resume_from_checkpoint=None, metadata=None,
                 validation_config=None):
        if resume_from_checkpoint is not None:
            raise DeprecationWarning("`resume_from_checkpoint` is deprecated: call `train.get_checkpoint()` in the "
                                     "training function, and run fit() again with the same RunConfig(name, "
                                     "storage_path) to resume a run.")
        if metadata is not None:
            raise DeprecationWarning("`metadata` is deprecated: pass the data in train_loop_config or save it "
                                     "in the checkpoint.")
        if validation_config is not None:
            raise NotImplementedError("validation_config is not supported by mpiray.train")
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self.scaling_config = scaling_config if scaling_config is not None else ScalingConfig()
        self.run_config = run_config if run_config is not None else RunConfig()
        self.backend_config = backend_config if backend_config is not None else self._backend_config_cls()
        self.datasets = datasets or {}
        self.data_config = dataset_config if dataset_config is not None else DataConfig()
        self._validate()
        self.train_run_context = TrainRunContext(self.run_config, self.train_loop_config, self.scaling_config,
                                                 self.backend_config, self.data_config)

    def _validate(self):
        if not isinstance(self.scaling_config, ScalingConfig):
            raise ValueError(f"Invalid `ScalingConfig` type: {self.scaling_config.__class__}. "
                             "Use `mpiray.train.ScalingConfig` instead.")
        if not isinstance(self.run_config, RunConfig):
            raise ValueError(f"Invalid `RunConfig` type: {self.run_config.__class__}. Use `mpiray.train.RunConfig` "
                             "instead (mpiray.tune.RunConfig is Tune's).")
        if not isinstance(self.backend_config, BackendConfig):
            raise ValueError(f"Invalid backend_config type: {type(self.backend_config).__name__}")
        if not isinstance(self.datasets, dict):
            raise TypeError(f"datasets must be a dict of name -> dataset, got {type(self.datasets).__name__}")
        if self.train_loop_config is not None and not isinstance(self.train_loop_config, dict):
            raise TypeError(f"train_loop_config must be a dict, got {type(self.train_loop_config).__name__}")
        # fail at construction, not in the workers
        _construct_train_func(self.train_loop_per_worker, self.train_loop_config, lambda: None)

    def _train_fn(self):
        return _construct_train_func(self.train_loop_per_worker, self.train_loop_config,
                                     self.backend_config.train_func_context)

    def _trainer_state(self):
        return {"cls": type(self), "train_loop_per_worker": self.train_loop_per_worker,
                "train_loop_config": self.train_loop_config, "backend_config": self.backend_config,
                "scaling_config": self.scaling_config, "run_config": self.run_config,
                "dataset_config": self.data_config, "dataset_names": sorted(self.datasets)}

    def fit(self):
        """Train; returns the :class:`~mpiray.train.Result`, raises ``TrainingFailedError``."""
        from ._internal.controller import TrainController
        from ._session import current_session
        tune_info = {}
        sess = current_session()
        if sess is not None and hasattr(sess, "trial_id"):
            try:
                c = sess.context()
                tune_info = {k: c.get(k) for k in ("trial_name", "trial_id", "trial_dir", "trial_resources")}
            except Exception:
                tune_info = {}
        controller = TrainController(
            train_fn=self._train_fn(), train_loop_config=self.train_loop_config, scaling_config=self.scaling_config,
            run_config=self.run_config, backend_config=self.backend_config, datasets=self.datasets,
            dataset_config=self.data_config, run_context=self.train_run_context, trainer_state=self._trainer_state(),
            tune_info=tune_info)
        self._controller = controller
        result = controller.run()
        if result.error is not None:
            raise result.error
        return result

    # -------------------------------------------------------------- restore (Ray 1.x/2.x API)
    @classmethod
    def can_restore(cls, path):
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        from ._internal.storage import SNAPSHOT_FILE
        return os.path.exists(os.path.join(path, "trainer.pkl")) or os.path.exists(os.path.join(path, SNAPSHOT_FILE))

    @classmethod
    def restore(cls, path, train_loop_per_worker=None, train_loop_config=None, datasets=None, **kwargs):
        """A trainer that resumes the run in ``path`` from its latest checkpoint: the arguments
        saved with the run are used unless given again here (``datasets`` must be given again
        when the run had any, as Ray)."""
        warnings.warn(_RESTORE_WARNING.format(cls=cls.__name__), DeprecationWarning, stacklevel=2)
        path = os.path.abspath(os.path.expanduser(os.fspath(path))).rstrip(os.sep)
        if not os.path.isdir(path):
            raise ValueError(f"{cls.__name__}.restore: the run directory {path} does not exist")
        state = {}
        pkl = os.path.join(path, "trainer.pkl")
        if os.path.exists(pkl):
            with open(pkl, "rb") as f:
                state = cloudpickle.load(f)
        elif train_loop_per_worker is None:
            raise ValueError(f"{cls.__name__}.restore: {path} has no trainer.pkl (not a training run directory?); "
                             "pass train_loop_per_worker and the configs")
        saved_cls = state.get("cls", cls)
        if not issubclass(saved_cls, cls) and not issubclass(cls, saved_cls):
            raise ValueError(f"the run in {path} was made by {saved_cls.__name__}, not {cls.__name__}")
        missing = [n for n in state.get("dataset_names", []) if not datasets or n not in datasets]
        if missing:
            raise ValueError(f"{cls.__name__}.restore: the run used datasets {missing}; pass them again "
                             "(datasets={...})")
        run_config = kwargs.pop("run_config", None) or state.get("run_config") or RunConfig()
        run_config.storage_path = os.path.dirname(path)
        run_config.name = os.path.basename(path)
        trainer = cls.__new__(cls)
        init_kwargs = dict(
            train_loop_per_worker=train_loop_per_worker or state["train_loop_per_worker"],
            train_loop_config=train_loop_config if train_loop_config is not None else state.get("train_loop_config"),
            scaling_config=kwargs.pop("scaling_config", None) or state.get("scaling_config"),
            run_config=run_config, datasets=datasets,
            dataset_config=kwargs.pop("dataset_config", None) or state.get("dataset_config"))
        bc = kwargs.pop("backend_config", None) or state.get("backend_config")
        init_kwargs.update(kwargs)
        cls._init_restored(trainer, bc, init_kwargs)
        return trainer

    @classmethod
    def _init_restored(cls, trainer, backend_config, kw):
        loop = kw.pop("train_loop_per_worker")
        DataParallelTrainer.__init__(trainer, loop, backend_config=backend_config, **kw)

    # -------------------------------------------------------------- Tune
    def as_trainable(self):
        """A Tune function trainable that runs this trainer (``Tuner(trainer)``, deprecated
        in Ray 2.x: build and fit the trainer inside a function trainable instead). The trial's
        ``config["train_loop_config"]`` is merged into this trainer's."""
        trainer = self

        def train_trainable(config):
            from ..tune.integration.ray_train import TuneReportCallback
            t = _copy_for_trial(trainer, config)
            t.run_config.callbacks = list(t.run_config.callbacks) + [TuneReportCallback()]
            t.fit()

        train_trainable.__name__ = type(self).__name__
        # the trial's own function holds nothing: the training workers get their own placement
        # group (mpiray cannot run them inside the trial's), and a trial holding CPUs while its
        # workers wait for CPUs could deadlock a full cluster
        from ..tune import with_resources
        return with_resources(train_trainable, {"CPU": 0})


def _copy_for_trial(trainer, config):
    import copy
    from .. import tune
    t = copy.copy(trainer)
    tl = dict(trainer.train_loop_config or {})
    tl.update((config or {}).get("train_loop_config", {}))
    t.train_loop_config = tl or None
    rc = copy.copy(trainer.run_config)
    ctx = tune.get_context()
    rc.storage_path = ctx.get_trial_dir()
    rc.name = "train"
    rc.callbacks = list(trainer.run_config.callbacks or [])
    t.run_config = rc
    t.train_run_context = TrainRunContext(rc, t.train_loop_config, t.scaling_config, t.backend_config, t.data_config)
    return t
