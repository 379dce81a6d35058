"""Finding and building environments for the env runners.

``resolve_env(config)`` (driver side) turns ``config.env`` into a creator: a name registered
with ``tune.register_env``, an env class, or a Gymnasium id (checked against Gymnasium's
registry; an unknown name is an error listing what is registered and the nearest Gymnasium
ids). ``make_vector_env`` (runner side) builds the runner's vector env: mpiray's Kokkos
batched env for the classic-control ids when ``num_envs_per_env_runner > 1`` (unless
``env_runners(kokkos_vector_env=False)``), otherwise Gymnasium's ``SyncVectorEnv``; both
autoreset on the step after an episode ends (Gymnasium's NEXT_STEP mode).
"""

import difflib
import inspect

import gymnasium as gym
import numpy as np

from .env_context import EnvContext
from .multi_agent_env import MultiAgentEnv


class EnvError(Exception):
    """An environment failed (raised in ``reset``/``step``, or returned something that does not
    fit its spaces). The message carries the env's own traceback."""


def _kokkos_ids():
    try:
        from ...kernels import envs as kenvs
        return tuple(kenvs.ENV_IDS)
    except Exception:  # no native kernels in this build
        return ()


class EnvSpec:
    """What the runners need to build the env: picklable, resolved on the driver."""

    def __init__(self, kind, name, creator=None, env_config=None):
        self.kind = kind          # "gym" | "creator"
        self.name = name
        self.creator = creator
        self.env_config = dict(env_config or {})

    def __repr__(self):
        return f"EnvSpec({self.kind}, {self.name!r})"


def resolve_env(env, env_config, registry):
    """An ``EnvSpec`` for ``config.env``; a clear ValueError when it names nothing known."""
    if env is None:
        raise ValueError("No environment: call config.environment(env=...) with a Gymnasium id, a name "
                         "registered with tune.register_env, or an env class")
    if isinstance(env, str):
        if env in registry:
            return EnvSpec("creator", env, registry[env], env_config)
        try:
            gym.spec(env)
        except Exception:
            gym_ids = sorted(k for k in gym.registry.keys())
            close = difflib.get_close_matches(env, gym_ids + list(registry), n=5, cutoff=0.5)
            raise ValueError(
                f"Unknown env {env!r}: it is neither registered with tune.register_env "
                f"(registered: {sorted(registry) or 'none'}) nor a Gymnasium id"
                + (f"; did you mean {close}?" if close else "")
                + f" Gymnasium ids include: {', '.join(i for i in gym_ids if '/' not in i)[:600]}..."
                + f" Kokkos-vectorised ids: {list(_kokkos_ids())}") from None
        return EnvSpec("gym", env, None, env_config)
    if inspect.isclass(env):
        if not (issubclass(env, gym.Env) or issubclass(env, MultiAgentEnv)):
            raise ValueError(f"env class {env.__name__} is not a gymnasium.Env or MultiAgentEnv subclass")
        return EnvSpec("creator", env.__name__, env, env_config)
    if callable(env):
        return EnvSpec("creator", getattr(env, "__name__", "env"), env, env_config)
    raise ValueError(f"config.environment(env=...) must be a string, an env class or a creator, got {env!r}")


def make_single_env(spec, worker_index=0, vector_index=0, num_workers=None, recreated=False):
    """One env instance (gym.Env or MultiAgentEnv)."""
    ctx = EnvContext(spec.env_config, worker_index=worker_index, vector_index=vector_index,
                     remote=worker_index > 0, num_workers=num_workers, recreated_worker=recreated)
    if spec.kind == "gym":
        try:
            return gym.make(spec.name, **spec.env_config)
        except TypeError as e:
            raise ValueError(f"gymnasium.make({spec.name!r}, **env_config) rejected env_config "
                             f"{sorted(spec.env_config)}: {e}") from e
    env = spec.creator(ctx)
    if not isinstance(env, (gym.Env, MultiAgentEnv)):
        # Allow gym.Wrapper-like objects that quack like envs
        if not (hasattr(env, "reset") and hasattr(env, "step")):
            raise ValueError(f"The env creator for {spec.name!r} returned {type(env).__name__}, not an env")
    return env


def is_multi_agent(spec):
    """Whether ``spec`` builds a MultiAgentEnv (creates and closes one instance if needed)."""
    if spec.kind == "gym":
        return False
    if inspect.isclass(spec.creator):
        return issubclass(spec.creator, MultiAgentEnv)
    env = make_single_env(spec)
    try:
        return isinstance(env, MultiAgentEnv)
    finally:
        try:
            env.close()
        except Exception:
            pass


def uses_kokkos(spec, num_envs, enabled=True):
    """Whether the runner steps ``spec`` with mpiray's Kokkos batched env."""
    if not enabled or num_envs <= 1 or spec.kind != "gym" or spec.name not in _kokkos_ids():
        return False
    from ...kernels import envs as kenvs
    allowed = kenvs._ENV_KWARGS[spec.name] | {"max_episode_steps"}
    return set(spec.env_config) <= allowed


def make_vector_env(spec, num_envs, worker_index=0, num_workers=None, kokkos=True, recreated=False):
    """A Gymnasium vector env with NEXT_STEP autoreset for a single-agent spec."""
    if uses_kokkos(spec, num_envs, kokkos):
        from ...kernels import envs as kenvs
        return kenvs.make_vec(spec.name, num_envs=num_envs, **spec.env_config)
    fns = [(lambda i=i: make_single_env(spec, worker_index, i, num_workers, recreated)) for i in range(num_envs)]
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
