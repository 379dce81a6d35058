"""The algorithms by name (Ray's ``ray.rllib.algorithms.registry``), and their registration
as Tune trainables (``Tuner("PPO", param_space=config)``)."""

import importlib

ALGORITHMS = {
    "PPO": ("mpiray.rllib.algorithms.ppo", "PPO"),
    "DQN": ("mpiray.rllib.algorithms.dqn", "DQN"),
    "IMPALA": ("mpiray.rllib.algorithms.impala", "IMPALA"),
    "APPO": ("mpiray.rllib.algorithms.appo", "APPO"),
}


def get_algorithm_class(name, return_config=False):
    """The class (and default config) of an algorithm by name."""
    if name not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {name!r}; mpiray.rllib has {sorted(ALGORITHMS)}")
    mod, cls = ALGORITHMS[name]
    klass = getattr(importlib.import_module(mod), cls)
    return (klass, klass.get_default_config()) if return_config else klass


def _tune_trainable(name):
    """A subclass of the algorithm for Tune whose class carries ``tune.register_env``'s
    registry: Tune pickles it by value into the trial's actor, so custom envs registered in the
    driver resolve there too."""
    from ...tune import trainable as tt
    base = get_algorithm_class(name)
    cls = type(name, (base,), {"_env_registry": tt._env_registry, "__doc__": base.__doc__})
    cls.__module__ = "mpiray.rllib.algorithms.registry._tune"
    cls.__qualname__ = f"{name}_for_tune"
    return cls


def register_with_tune():
    """Register every algorithm under its name with mpiray.tune."""
    from ...tune import trainable as tt
    for name in ALGORITHMS:
        if name not in tt._registry:
            try:
                tt.register_trainable(name, _tune_trainable(name))
            except (ImportError, AttributeError):  # pragma: no cover - a partial install
                pass
