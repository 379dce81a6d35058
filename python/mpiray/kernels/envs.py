"""Batched classic-control environments as Gymnasium vector environments.

    from mpiray.kernels.envs import make_vec
    envs = make_vec("CartPole-v1", num_envs=4096)
    obs, info = envs.reset(seed=0)
    obs, rewards, terminations, truncations, infos = envs.step(envs.action_space.sample())

CartPole-v1, Pendulum-v1, MountainCar-v0, MountainCarContinuous-v0 and Acrobot-v1 have
Gymnasium's dynamics, rewards, termination, time limits (``max_episode_steps``) and spaces;
all environments step together in one native kernel (libs/kernels). Autoreset follows the
installed Gymnasium's vector envs (``AutoresetMode.NEXT_STEP`` by default; ``SAME_STEP`` puts
the last observation in ``infos["final_obs"]``; ``DISABLED`` leaves resets to
``reset(options={"reset_mask": mask})``). Seeding: ``reset(seed=s)`` seeds env ``i`` with
``s + i`` (as SyncVectorEnv); the random streams are mpiray's own, so the initial states
differ from Gymnasium's for the same seed, while their distribution is the same.
"""

import copy
from typing import Any

import numpy as np

import gymnasium as gym
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .. import _kernels

__all__ = ["make_vec", "ClassicControlVectorEnv", "ENV_IDS"]

ENV_IDS = tuple(_kernels.env_ids())

# Keyword arguments each id accepts (those of Gymnasium's env constructors).
_ENV_KWARGS = {
    "CartPole-v1": {"sutton_barto_reward"},
    "Pendulum-v1": {"g"},
    "MountainCar-v0": {"goal_velocity"},
    "MountainCarContinuous-v0": {"goal_velocity"},
    "Acrobot-v1": set(),
}

_MODES = {AutoresetMode.NEXT_STEP: 0, AutoresetMode.SAME_STEP: 1, AutoresetMode.DISABLED: 2}


def _number(x):
    try:
        return float(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"An option ({x}) could not be converted to a float.") from e


class ClassicControlVectorEnv(VectorEnv):
    """``num_envs`` copies of one classic-control environment, stepped in one native kernel."""

    def __init__(self, id: str, num_envs: int = 1, *, max_episode_steps: int | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
                 render_mode: str | None = None, **kwargs: Any):
        if id not in ENV_IDS:
            raise gym.error.Error(
                f"mpiray.kernels.envs has no environment {id!r}; it has {', '.join(ENV_IDS)}")
        unknown = set(kwargs) - _ENV_KWARGS[id]
        if unknown:
            raise TypeError(f"{id} got unexpected keyword argument(s) {sorted(unknown)}; "
                            f"it accepts {sorted(_ENV_KWARGS[id]) or 'none'}")
        if render_mode is not None:
            raise ValueError("mpiray.kernels.envs does not render (render_mode must be None)")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        limit = -1 if max_episode_steps is None else int(max_episode_steps)
        self._env = _kernels.BatchedEnv(
            id, int(num_envs), limit, _MODES[self.autoreset_mode],
            bool(kwargs.get("sutton_barto_reward", False)), float(kwargs.get("g", 10.0)),
            float(kwargs.get("goal_velocity", 0.0)))
        info = self._env.info
        self.num_envs = int(num_envs)
        self.render_mode = None
        self.max_episode_steps = self._env.max_episode_steps
        self.metadata = {"render_modes": [], "autoreset_mode": self.autoreset_mode}
        self._obs_dim = info["obs_dim"]
        self._discrete = info["discrete"]
        self.single_observation_space = spaces.Box(
            np.array(info["obs_low"], np.float32), np.array(info["obs_high"], np.float32),
            dtype=np.float32)
        if self._discrete:
            self.single_action_space = spaces.Discrete(info["num_actions"])
        else:
            self.single_action_space = spaces.Box(
                low=info["action_low"][0], high=info["action_high"][0],
                shape=(info["action_dim"],), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        spec = gym.spec(id)
        # A copy: the registry's spec is shared by every later gym.make in this process.
        self.spec = copy.copy(spec)
        try:
            self.spec.max_episode_steps = self.max_episode_steps or None
            self.spec.kwargs = {**spec.kwargs, **kwargs}
        except Exception:  # pragma: no cover - spec layout of another gymnasium
            pass
        self._obs = np.zeros((self.num_envs, self._obs_dim), np.float32)
        self._shape_obs = (self.num_envs, self._obs_dim)

    # ------------------------------------------------------------------ Gymnasium's API
    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None):
        """Reset all envs (or those in ``options["reset_mask"]``); returns (obs, infos)."""
        seeds = None
        if seed is not None:
            if isinstance(seed, (int, np.integer)):
                super().reset(seed=int(seed))
                seeds = (np.arange(self.num_envs, dtype=np.uint64) + np.uint64(int(seed) % 2**64))
            else:
                seed = list(seed)
                if len(seed) != self.num_envs:
                    raise ValueError(
                        f"If seeds are passed as a list the length must match num_envs="
                        f"{self.num_envs} but got length={len(seed)}.")
                fresh = np.random.SeedSequence().generate_state(self.num_envs, np.uint64)
                seeds = np.array([fresh[i] if s is None else int(s) % 2**64
                                  for i, s in enumerate(seed)], dtype=np.uint64)
        options = dict(options) if options else {}
        mask = None
        if "reset_mask" in options:
            mask = options.pop("reset_mask")
            if not isinstance(mask, np.ndarray):
                raise TypeError(f"`options['reset_mask']` must be a numpy array, got {type(mask)}")
            if mask.shape != (self.num_envs,):
                raise ValueError(f"`options['reset_mask']` must have shape `({self.num_envs},)`, "
                                 f"got {mask.shape}")
            if mask.dtype != np.bool_:
                raise TypeError(f"`options['reset_mask']` must have `dtype=np.bool_`, got {mask.dtype}")
            if not np.any(mask):
                raise ValueError("`options['reset_mask']` must contain a boolean array with at least "
                                 f"one True value, got reset_mask={mask}")
        bounds = {k: (_number(options[k]) if k in options else None)
                  for k in ("low", "high", "x_init", "y_init")}
        obs = self._obs.copy() if mask is not None else np.empty(self._shape_obs, np.float32)
        self._env.reset(obs, seeds, mask, **bounds)
        self._obs = obs
        return obs.copy() if mask is not None else obs, {}

    def step(self, actions):
        """Step every env; returns (obs, rewards, terminations, truncations, infos)."""
        n = self.num_envs
        obs = np.empty(self._shape_obs, np.float32)
        rewards = np.empty(n, np.float64)
        terminations = np.empty(n, np.bool_)
        truncations = np.empty(n, np.bool_)
        if self.autoreset_mode is AutoresetMode.SAME_STEP:
            final = np.empty(self._shape_obs, np.float32)
            self._env.step(actions, obs, rewards, terminations, truncations, final)
            done = terminations | truncations
            infos = {}
            if done.any():
                final_obs = np.full(n, None, dtype=object)
                for i in np.flatnonzero(done):
                    final_obs[i] = final[i]
                infos = {"final_obs": final_obs, "_final_obs": done, "final_info": {},
                         "_final_info": done.copy()}
        else:
            self._env.step(actions, obs, rewards, terminations, truncations)
            infos = {}
        self._obs = obs
        return obs, rewards, terminations, truncations, infos

    def close_extras(self, **kwargs: Any):
        self._env = None

    # ------------------------------------------------------------------ mpiray extensions
    def get_state(self):
        """The internal states ``[N, state_dim]`` (float64, the ``state`` of Gymnasium's env)
        and the steps taken in each current episode ``[N]`` (TimeLimit's elapsed steps)."""
        return self._env.get_state()

    def set_state(self, state, elapsed_steps=None):
        """Overwrite the internal states (and elapsed steps); returns the observations."""
        obs = np.empty(self._shape_obs, np.float32)
        self._env.set_state(np.asarray(state, np.float64), elapsed_steps, obs)
        self._obs = obs
        return obs.copy()

    def pending_resets(self):
        """Envs whose episode ended: reset by the next step (NEXT_STEP) or to be reset by the
        caller (DISABLED)."""
        return self._env.pending_resets()

    def __repr__(self):
        return f"ClassicControlVectorEnv({self.spec.id if self.spec else '?'}, num_envs={self.num_envs})"


def make_vec(id: str, num_envs: int = 1, *, max_episode_steps: int | None = None,
             autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
             **kwargs: Any) -> ClassicControlVectorEnv:
    """Gymnasium's ``make_vec`` for the classic-control ids, on mpiray's native kernel.

    ``max_episode_steps`` overrides the id's time limit (None: Gymnasium's: 500 CartPole-v1 and
    Acrobot-v1, 200 Pendulum-v1 and MountainCar-v0, 999 MountainCarContinuous-v0; 0: none).
    Further keyword arguments are the env's own (``sutton_barto_reward``, ``g``,
    ``goal_velocity``).
    """
    return ClassicControlVectorEnv(id, num_envs, max_episode_steps=max_episode_steps,
                                   autoreset_mode=autoreset_mode, **kwargs)
