"""Class trainables (Ray's ``tune.Trainable``) and the trainable helpers ``with_parameters``,
``with_resources`` and ``register_trainable``."""

import copy
import functools
import inspect
import uuid

from .resources import PlacementGroupFactory, resources_to_pgf


class Trainable:
    """Subclass and implement ``setup(config)``, ``step() -> dict``, and for checkpoints
    ``save_checkpoint(checkpoint_dir) -> None | dict`` and ``load_checkpoint(checkpoint)``
    (the directory, or the dict ``save_checkpoint`` returned). ``reset_config(new_config)``
    returning True lets ``reuse_actors`` reuse the instance for another trial. The trial's
    actor calls ``step()`` in a loop; results flow to the driver without waiting for it."""

    def __init__(self, config=None, logger_creator=None, storage=None, _trial_info=None, **kwargs):
        self.config = dict(config or {})
        self._trial_info = _trial_info or {}
        self._iteration = 0
        setup_kwargs = getattr(type(self), "_mpiray_with_parameters", None)
        if setup_kwargs:
            import mpiray
            extra = {k: _cached_get(r) for k, r in setup_kwargs.items()}
            self.setup(copy.deepcopy(self.config), **extra)
        else:
            self.setup(copy.deepcopy(self.config))

    # -- to override
    def setup(self, config):
        pass

    def step(self):
        raise NotImplementedError(f"{type(self).__name__} must implement step()")

    def save_checkpoint(self, checkpoint_dir):
        return None

    def load_checkpoint(self, checkpoint):
        pass

    def reset_config(self, new_config):
        return False

    def cleanup(self):
        pass

    @classmethod
    def default_resource_request(cls, config):
        return None

    # -- information
    @property
    def iteration(self):
        return self._iteration

    @property
    def training_iteration(self):
        return self._iteration

    @property
    def trial_name(self):
        return self._trial_info.get("trial_name", "default")

    @property
    def trial_id(self):
        return self._trial_info.get("trial_id", "default")

    @property
    def logdir(self):
        return self._trial_info.get("trial_dir")

    @property
    def trial_resources(self):
        return self._trial_info.get("trial_resources")

    def get_config(self):
        return self.config


_get_cache = {}


def _cached_get(ref):
    import mpiray
    key = ref.hex() if hasattr(ref, "hex") else id(ref)
    if key not in _get_cache:
        _get_cache[key] = mpiray.get(ref)
    return _get_cache[key]


def with_parameters(trainable, **kwargs):
    """Pass large objects to every trial through the object store once (Ray's
    ``tune.with_parameters``): ``trainable(config, **kwargs)`` for functions, ``setup(config,
    **kwargs)`` for classes."""
    import mpiray
    if not (callable(trainable)):
        raise ValueError(f"with_parameters() needs a function or Trainable class, got {trainable!r}")
    if not mpiray.is_initialized():
        mpiray.init()
    refs = {k: mpiray.put(v) for k, v in kwargs.items()}
    if inspect.isclass(trainable):
        if not issubclass(trainable, Trainable):
            raise ValueError("with_parameters() works on functions and tune.Trainable subclasses")
        cls = type(trainable.__name__, (trainable,), {"_mpiray_with_parameters": refs})
        cls.__module__ = trainable.__module__
        return cls
    fn = trainable

    @functools.wraps(fn)
    def inner(config):
        return fn(config, **{k: _cached_get(r) for k, r in refs.items()})

    for attr in ("_mpiray_resources",):
        if hasattr(fn, attr):
            setattr(inner, attr, getattr(fn, attr))
    inner._mpiray_name = getattr(fn, "__name__", "trainable")
    return inner


def with_resources(trainable, resources):
    """Attach a resource request to a trainable (Ray's ``tune.with_resources``): a dict
    (``{"cpu": 2, "gpu": 1, "custom": 1}``), a ``PlacementGroupFactory``, or a function
    ``config -> either`` evaluated per trial."""
    if not callable(resources):
        resources_to_pgf(resources)  # validate now
    if inspect.isclass(trainable):
        cls = type(trainable.__name__, (trainable,), {"_mpiray_resources": resources})
        cls.__module__ = trainable.__module__
        return cls

    @functools.wraps(trainable)
    def inner(config, *a, **k):
        return trainable(config, *a, **k)

    inner._mpiray_resources = resources
    inner._mpiray_name = getattr(trainable, "_mpiray_name", getattr(trainable, "__name__", "trainable"))
    return inner


_registry = {}


def register_trainable(name, trainable, warn=True):
    """Register a trainable under a name usable as ``Tuner("name")``. Other libraries (RLlib
    algorithms such as ``"PPO"``) register theirs here."""
    if not isinstance(name, str) or not name:
        raise ValueError("register_trainable() needs a non-empty name")
    if not callable(trainable):
        raise TypeError(f"register_trainable({name!r}, ...) needs a function or Trainable class")
    _registry[name] = trainable


def register_env(name, env_creator):
    """Register an environment creator (used by RLlib trainables)."""
    if not callable(env_creator):
        raise TypeError("register_env() needs a callable env_creator")
    _env_registry[name] = env_creator


_env_registry = {}


def get_trainable_cls(name):
    if name not in _registry:
        # RLlib's algorithms ("PPO", "DQN", ...) register themselves when mpiray.rllib is imported
        try:
            import mpiray.rllib  # noqa: F401
        except ImportError:
            pass
    if name not in _registry:
        raise ValueError(f"Unknown trainable {name!r}: register it with tune.register_trainable "
                         f"(registered: {sorted(_registry)})")
    return _registry[name]
