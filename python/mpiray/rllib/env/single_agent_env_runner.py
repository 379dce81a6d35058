"""``SingleAgentEnvRunner``: steps a vector env with the current policy and returns time-major
rollouts.

The vector env autoresets on the step after an episode ends (Gymnasium's NEXT_STEP mode, also
mpiray's Kokkos envs): row ``t+1`` of an env whose episode ended at ``t`` holds the episode's
final observation and only resets. Such rows are marked ``valid=False`` (not a transition:
masked out of every loss, not counted as an env step), and their observation is the value a
truncated step bootstraps from. A rollout of ``T`` steps over ``N`` envs is returned as

    obs [T, N, *obs_shape]   actions [T, N, *act_shape]   logp, rewards [T, N] float32
    terminateds, truncateds, valid [T, N] bool   dist_inputs [T, N, k]   bootstrap_obs [N, *obs_shape]

(``bootstrap_obs``: the observation after the last row), the layout of mpiray.kernels.gae.
"""

import time

import gymnasium as gym
import numpy as np

from ..core import DEFAULT_AGENT_ID, DEFAULT_MODULE_ID
from ._policy import ModulePolicy, to_env_actions
from .env_runner import EnvRunnerBase, env_error
from .utils import EnvError, make_vector_env, uses_kokkos


class SingleAgentEnvRunner(EnvRunnerBase):
    """One vector env and one module. ``sample()`` returns ``{"batches": {module_id: batch},
    "metrics": {...}}``."""

    def __init__(self, config, worker_index=0, num_workers=0, recreated=False, evaluation=False):
        super().__init__(config, worker_index, num_workers, recreated)
        self.evaluation = evaluation
        self.num_envs = int(config.num_envs_per_env_runner)
        kokkos = bool(getattr(config, "kokkos_vector_env", True))
        self.uses_kokkos = uses_kokkos(self.env_spec, self.num_envs, kokkos)
        try:
            self.env = make_vector_env(self.env_spec, self.num_envs, worker_index, num_workers, kokkos, recreated)
        except (ValueError, TypeError, gym.error.Error):
            raise
        except Exception as e:
            raise env_error("its constructor", self.env_spec.name, worker_index) from e
        self.observation_space = self.env.single_observation_space
        self.action_space = self.env.single_action_space
        config._check_spaces(DEFAULT_MODULE_ID, self.observation_space, self.action_space, self.env_spec.name)
        module = config.get_rl_module_spec(DEFAULT_MODULE_ID, self.observation_space, self.action_space,
                                           inference_only=True).build()
        self.policies = {DEFAULT_MODULE_ID: ModulePolicy(
            module, self.observation_space, self.action_space, mode=config._exploration_mode(),
            numpy_fast_path=getattr(config, "_numpy_inference", True))}
        self._obs_shape = self.observation_space.shape
        self._obs_dtype = self.observation_space.dtype
        self._obs = None
        self._pending_reset = np.zeros(self.num_envs, bool)
        self._ep_ret = np.zeros(self.num_envs, np.float64)
        self._ep_len = np.zeros(self.num_envs, np.int64)
        self._ep_start = np.zeros(self.num_envs, np.float64)

    def get_spaces(self):
        return {DEFAULT_MODULE_ID: (self.observation_space, self.action_space)}

    def get_state(self):
        """Counters, the random stream and, where the env can be copied, the envs in the middle
        of their episodes (so that a restored run continues the same trajectories)."""
        import cloudpickle
        state = super().get_state()
        state.update({"rng": self.rng.bit_generator.state, "seed": self._seed, "num_envs": self.num_envs})
        if self._obs is not None and not self.uses_kokkos:
            try:
                state["env"] = cloudpickle.dumps(self.env)
                state.update({"obs": self._obs.copy(), "pending": self._pending_reset.copy(),
                              "ep_ret": self._ep_ret.copy(), "ep_len": self._ep_len.copy()})
            except Exception:  # an env that cannot be copied starts fresh episodes after a restore
                pass
        return state

    def set_state(self, state):
        import pickle
        super().set_state(state)
        if state.get("num_envs") != self.num_envs:
            return
        self.rng.bit_generator.state = state["rng"]
        self._seed = state.get("seed", self._seed)
        if "env" in state:
            try:
                env = pickle.loads(state["env"])
            except Exception:
                return
            self.env.close()
            self.env = env
            self._obs = state["obs"]
            self._pending_reset = state["pending"]
            self._ep_ret = state["ep_ret"]
            self._ep_len = state["ep_len"]
            self._ep_start[:] = time.time()

    def close_env(self):
        self.env.close()

    # ------------------------------------------------------------------ stepping
    def _reset(self):
        try:
            obs, _ = self.env.reset(seed=self._seed)
        except ValueError as e:
            self._raise_shape_error(e, "reset()")
            raise env_error("reset()", self.env_spec.name, self.worker_index) from e
        except Exception as e:
            raise env_error("reset()", self.env_spec.name, self.worker_index) from e
        self._check_obs(obs, "reset()")
        self._obs = obs
        self._pending_reset[:] = False
        self._ep_ret[:] = 0
        self._ep_len[:] = 0
        self._ep_start[:] = time.time()
        if self._seed is not None:
            self._seed += 7919  # a later reset of all envs draws fresh episodes

    def _check_obs(self, obs, where):
        if obs.shape[1:] != self._obs_shape:
            raise EnvError(f"The environment {self.env_spec.name!r} returned observations of shape "
                           f"{obs.shape[1:]} from {where}, but its observation_space is "
                           f"{self.observation_space} (the spaces do not match the data)")

    def _raise_shape_error(self, e, where):
        """Gymnasium's vector env failing to stack an observation: the env's spaces are wrong."""
        msg = str(e)
        if "could not broadcast" in msg or "wrong shape" in msg or "shape mismatch" in msg:
            raise EnvError(f"The environment {self.env_spec.name!r} returned an observation from {where} that "
                           f"does not fit its observation_space {self.observation_space} (the spaces do not "
                           f"match the data): {msg}") from e

    def _step(self, env_actions):
        try:
            return self.env.step(env_actions)
        except EnvError:
            raise
        except ValueError as e:
            self._raise_shape_error(e, "step()")
            raise env_error("step()", self.env_spec.name, self.worker_index) from e
        except Exception as e:
            raise env_error("step()", self.env_spec.name, self.worker_index) from e

    def sample(self, weights=None, weights_seq_no=None, num_timesteps=None, explore=None,
               global_env_steps=None, random_actions=False):
        """``num_timesteps`` steps of every env (None: the config's rollout fragment)."""
        t0 = time.perf_counter()
        if weights is not None and weights_seq_no != self.weights_seq_no:
            self.set_weights(weights, weights_seq_no)
        if global_env_steps is not None:
            self.global_env_steps = global_env_steps
        explore = self.config.explore if explore is None else explore
        T = int(num_timesteps or self.config.get_rollout_fragment_length(self.worker_index))
        if self._obs is None:
            self._reset()
        N = self.num_envs
        pol = self.policies[DEFAULT_MODULE_ID]
        cfg = self.config
        aspace = self.action_space
        obs_buf = np.empty((T, N) + self._obs_shape, self._obs_dtype)
        act_buf = None
        logp_buf = np.empty((T, N), np.float32)
        dist_buf = None
        rew_buf = np.empty((T, N), np.float32)
        term_buf = np.empty((T, N), bool)
        trunc_buf = np.empty((T, N), bool)
        valid_buf = np.empty((T, N), bool)
        obs = self._obs
        pending = self._pending_reset
        ep_ret, ep_len = self._ep_ret, self._ep_len
        eps = self._epsilon() if pol.mode == "epsilon_greedy" else 0.0
        for t in range(T):
            obs_buf[t] = obs
            if random_actions:
                actions = np.array([aspace.sample() for _ in range(N)])
                logp = np.zeros(N, np.float32)
                dist = np.zeros((N, 1), np.float32)
            else:
                actions, logp, dist = pol.act(obs, self.rng, explore, eps)
            if act_buf is None:
                act_buf = np.empty((T,) + actions.shape, actions.dtype)
                dist_buf = np.empty((T,) + dist.shape, np.float32)
            act_buf[t] = actions
            logp_buf[t] = logp
            dist_buf[t] = dist
            env_actions = to_env_actions(actions, aspace, cfg.normalize_actions, cfg.clip_actions)
            obs, rew, term, trunc, _ = self._step(env_actions)
            valid = ~pending
            valid_buf[t] = valid
            rew_buf[t] = rew
            term_buf[t] = term
            trunc_buf[t] = trunc
            ep_ret += rew
            ep_len += valid
            done = term | trunc
            if done.any():
                now = time.time()
                for i in np.flatnonzero(done):
                    self.episodes.add(ep_ret[i], ep_len[i], now - self._ep_start[i])
                    self._ep_start[i] = now
                ep_ret[done] = 0.0
                ep_len[done] = 0
            pending = done
            if pol.mode == "epsilon_greedy":
                self.global_env_steps += int(valid.sum())
                if t % 16 == 15:
                    eps = self._epsilon()
        if obs.shape[1:] != self._obs_shape:
            self._check_obs(obs, "step()")
        self._obs = obs
        self._pending_reset = pending
        steps = int(valid_buf.sum())
        self.num_env_steps_lifetime += steps
        batch = {"obs": obs_buf, "bootstrap_obs": np.array(obs, copy=True), "actions": act_buf, "logp": logp_buf,
                 "dist_inputs": dist_buf, "rewards": rew_buf, "terminateds": term_buf, "truncateds": trunc_buf,
                 "valid": valid_buf}
        ep = self.episodes.pop()
        metrics = {"num_env_steps_sampled": steps, "num_agent_steps_sampled": {DEFAULT_AGENT_ID: steps},
                   "num_module_steps_sampled": {DEFAULT_MODULE_ID: steps}, "episodes": ep,
                   "sample_time_s": time.perf_counter() - t0, "weights_seq_no": self.weights_seq_no,
                   "worker_index": self.worker_index, "num_rows": T * N}
        return {"batches": {DEFAULT_MODULE_ID: batch}, "metrics": metrics}

    def sample_episodes(self, weights=None, weights_seq_no=None, num_episodes=None, num_timesteps=None,
                        explore=False):
        """Run until ``num_episodes`` episodes finished (or ``num_timesteps`` env steps); for
        evaluation. Returns ``{"metrics": ...}`` with the finished episodes."""
        t0 = time.perf_counter()
        if weights is not None and weights_seq_no != self.weights_seq_no:
            self.set_weights(weights, weights_seq_no)
        self._reset()
        pol = self.policies[DEFAULT_MODULE_ID]
        cfg = self.config
        N = self.num_envs
        obs = self._obs
        pending = np.zeros(N, bool)
        ep_ret, ep_len = np.zeros(N), np.zeros(N, np.int64)
        start = np.full(N, time.time())
        rets, lens, durs = [], [], []
        steps = 0
        # each env contributes its first episodes in order, so the set does not favour short ones
        while True:
            if num_episodes is not None and len(rets) >= num_episodes:
                break
            if num_timesteps is not None and steps >= num_timesteps:
                break
            actions, _, _ = pol.act(obs, self.rng, explore, 0.0)
            obs, rew, term, trunc, _ = self._step(to_env_actions(actions, self.action_space, cfg.normalize_actions,
                                                                cfg.clip_actions))
            valid = ~pending
            steps += int(valid.sum())
            ep_ret += rew
            ep_len += valid
            done = term | trunc
            for i in np.flatnonzero(done):
                rets.append(float(ep_ret[i]))
                lens.append(int(ep_len[i]))
                durs.append(time.time() - start[i])
                start[i] = time.time()
            ep_ret[done] = 0
            ep_len[done] = 0
            pending = done
        self._obs = None  # the training state of these envs is gone: reset next time
        if num_episodes is not None:
            rets, lens, durs = rets[:num_episodes], lens[:num_episodes], durs[:num_episodes]
        ep = {"returns": rets, "lengths": lens, "durations": durs, "agent_returns": {}, "module_returns": {}}
        return {"metrics": {"num_env_steps_sampled": steps, "num_agent_steps_sampled": {DEFAULT_AGENT_ID: steps},
                            "num_module_steps_sampled": {DEFAULT_MODULE_ID: steps}, "episodes": ep,
                            "sample_time_s": time.perf_counter() - t0, "weights_seq_no": self.weights_seq_no,
                            "worker_index": self.worker_index}}
