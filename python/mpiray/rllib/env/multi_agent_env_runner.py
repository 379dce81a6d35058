"""``MultiAgentEnvRunner``: steps ``MultiAgentEnv`` instances, one module per policy.

Agents are mapped to modules once per episode (``policy_mapping_fn(agent_id, episode)``).
An agent's transition is complete when it observes again or is done (rewards that arrive
meanwhile are added to it), so turn-based envs work. Each module's rollout is returned in the
single-agent layout with ``N = 1``: the agent's segments one after another, each ending in a
done row (terminated, truncated, or cut at the end of the fragment) followed by one
``valid=False`` row holding the observation a truncated or cut segment bootstraps from.
"""

import time

import numpy as np

from ..core import DEFAULT_MODULE_ID
from ._policy import ModulePolicy, to_env_action
from .env_runner import EnvRunnerBase, env_error
from .multi_agent_env import MultiAgentEnv
from .utils import EnvError, make_single_env


class _Episode:
    """What ``policy_mapping_fn`` sees of the episode."""

    _next = 0

    def __init__(self, env_index):
        _Episode._next += 1
        self.id_ = f"{env_index}-{_Episode._next}"
        self.env_index = env_index
        self.start = time.time()
        self.agent_returns = {}
        self.agent_to_module = {}
        self.length = 0


class _ModuleBuffer:
    def __init__(self):
        self.obs, self.actions, self.logp, self.dist, self.rewards = [], [], [], [], []
        self.term, self.trunc, self.valid = [], [], []

    def add_segment(self, rows, kind, final_obs):
        for (o, a, lp, d, r) in rows:
            self.obs.append(o)
            self.actions.append(a)
            self.logp.append(lp)
            self.dist.append(d)
            self.rewards.append(r)
            self.term.append(False)
            self.trunc.append(False)
            self.valid.append(True)
        if kind == "terminated":
            self.term[-1] = True
        else:
            self.trunc[-1] = True
        o, a, lp, d, _ = rows[-1]
        self.obs.append(o if final_obs is None else final_obs)
        self.actions.append(a)
        self.logp.append(0.0)
        self.dist.append(d)
        self.rewards.append(0.0)
        self.term.append(False)
        self.trunc.append(False)
        self.valid.append(False)

    def __len__(self):
        return len(self.obs)

    def to_batch(self):
        col = lambda xs, dt=None: np.asarray(xs, dtype=dt)[:, None]  # noqa: E731
        obs = np.stack(self.obs)[:, None]
        return {"obs": obs, "bootstrap_obs": obs[-1].copy(), "actions": np.stack(self.actions)[:, None],
                "logp": col(self.logp, np.float32), "dist_inputs": np.stack(self.dist)[:, None].astype(np.float32),
                "rewards": col(self.rewards, np.float32), "terminateds": col(self.term, bool),
                "truncateds": col(self.trunc, bool), "valid": col(self.valid, bool)}


class MultiAgentEnvRunner(EnvRunnerBase):
    """``num_envs_per_env_runner`` MultiAgentEnvs stepped in turn, modules batched per step."""

    def __init__(self, config, worker_index=0, num_workers=0, recreated=False, evaluation=False):
        super().__init__(config, worker_index, num_workers, recreated)
        self.evaluation = evaluation
        self.num_envs = int(config.num_envs_per_env_runner)
        self.uses_kokkos = False
        self.envs = []
        for i in range(self.num_envs):
            try:
                env = make_single_env(self.env_spec, worker_index, i, num_workers, recreated)
            except (ValueError, TypeError):
                raise
            except Exception as e:
                raise env_error("its constructor", self.env_spec.name, worker_index) from e
            if not isinstance(env, MultiAgentEnv):
                raise ValueError(f"config.multi_agent(...) is set but env {self.env_spec.name!r} is not a "
                                 f"MultiAgentEnv ({type(env).__name__})")
            self.envs.append(env)
        self.mapping_fn = config.policy_mapping_fn
        self.module_ids = config._module_ids()
        spaces = self._infer_spaces()
        self.spaces = spaces
        self.policies = {}
        for mid in self.module_ids:
            if mid not in spaces:
                raise ValueError(f"policy {mid!r} has no observation/action space: no agent of "
                                 f"{self.env_spec.name!r} maps to it and its PolicySpec gives none")
            osp, asp = spaces[mid]
            config._check_spaces(mid, osp, asp, self.env_spec.name)
            module = config.get_rl_module_spec(mid, osp, asp, inference_only=True).build()
            self.policies[mid] = ModulePolicy(module, osp, asp, mode=config._exploration_mode(),
                                              numpy_fast_path=getattr(config, "_numpy_inference", True))
        self._state = [None] * self.num_envs

    def _map(self, aid, episode):
        try:
            mid = self.mapping_fn(aid, episode)
        except TypeError:
            mid = self.mapping_fn(aid, episode, worker=None)
        if mid not in self.module_ids:
            raise ValueError(f"policy_mapping_fn({aid!r}) returned {mid!r}, which is not one of the policies "
                             f"{sorted(self.module_ids)}")
        return mid

    def _infer_spaces(self):
        env = self.envs[0]
        agents = list(getattr(env, "possible_agents", None) or getattr(env, "agents", None) or [])
        if not agents:
            obs, _ = env.reset(seed=self._seed)
            agents = list(obs)
            self._state_hint = obs
        spaces = {}
        specs = self.config._policy_specs()
        for mid, spec in specs.items():
            if spec is not None and getattr(spec, "observation_space", None) is not None and \
                    getattr(spec, "action_space", None) is not None:
                spaces[mid] = (spec.observation_space, spec.action_space)
        ep = _Episode(0)
        for aid in agents:
            mid = self._map(aid, ep)
            if mid not in spaces:
                spaces[mid] = (env.get_observation_space(aid), env.get_action_space(aid))
        return spaces

    def get_spaces(self):
        return dict(self.spaces)

    def close_env(self):
        for e in self.envs:
            e.close()

    # ------------------------------------------------------------------ stepping
    def _reset_env(self, e):
        try:
            obs, _ = self.envs[e].reset(seed=None if self._seed is None else self._seed + e)
        except Exception as ex:
            raise env_error("reset()", self.env_spec.name, self.worker_index) from ex
        if self._seed is not None:
            self._seed += 7919
        self._state[e] = {"obs": dict(obs), "episode": _Episode(e), "open": {}, "pending": {}}

    def _module_of(self, st, aid):
        ep = st["episode"]
        if aid not in ep.agent_to_module:
            ep.agent_to_module[aid] = self._map(aid, ep)
        return ep.agent_to_module[aid]

    def _step_env(self, e, bufs, explore, eps, counters):
        st = self._state[e]
        obs = st["obs"]
        if not obs:
            raise EnvError(f"The MultiAgentEnv {self.env_spec.name!r} returned no observation for any agent "
                           "while the episode is not over (__all__ not done)")
        by_mod = {}
        for aid, o in obs.items():
            by_mod.setdefault(self._module_of(st, aid), []).append(aid)
        action_dict, acted = {}, {}
        for mid, aids in by_mod.items():
            pol = self.policies[mid]
            ob = np.stack([np.asarray(obs[a]) for a in aids])
            if ob.shape[1:] != pol.obs_space.shape:
                raise EnvError(f"The MultiAgentEnv {self.env_spec.name!r} gave agent {aids[0]!r} an observation "
                               f"of shape {ob.shape[1:]}, but module {mid!r} was built for "
                               f"{pol.obs_space} (the spaces do not match the data)")
            actions, logp, dist = pol.act(ob, self.rng, explore, eps)
            for i, aid in enumerate(aids):
                action_dict[aid] = to_env_action(actions[i], pol.action_space, self.config.normalize_actions,
                                                 self.config.clip_actions)
                acted[aid] = (obs[aid], actions[i], float(logp[i]), dist[i], 0.0)
        try:
            o2, rew, term, trunc, _ = self.envs[e].step(action_dict)
        except Exception as ex:
            raise env_error("step()", self.env_spec.name, self.worker_index) from ex
        counters["env"] += 1
        for aid in acted:
            counters["agents"][aid] = counters["agents"].get(aid, 0) + 1
            mid = self._module_of(st, aid)
            counters["modules"][mid] = counters["modules"].get(mid, 0) + 1
        pending = st["pending"]
        pending.update({aid: list(row) for aid, row in acted.items()})
        ep = st["episode"]
        ep.length += 1
        for aid, r in rew.items():
            r = float(r)
            ep.agent_returns[aid] = ep.agent_returns.get(aid, 0.0) + r
            if aid in pending:
                pending[aid][4] += r
        all_term = bool(term.get("__all__", False))
        all_trunc = bool(trunc.get("__all__", False))
        all_done = all_term or all_trunc
        for aid in list(pending):
            aterm = bool(term.get(aid, False)) or all_term
            atrunc = bool(trunc.get(aid, False)) or (all_trunc and not aterm)
            if aid in o2 or aterm or atrunc or all_done:
                row = pending.pop(aid)
                seg = st["open"].setdefault(aid, [])
                seg.append(tuple(row))
                mid = self._module_of(st, aid)
                if aterm:
                    bufs.setdefault(mid, _ModuleBuffer()).add_segment(seg, "terminated", None)
                    del st["open"][aid]
                elif atrunc or all_done:
                    final = o2.get(aid)
                    bufs.setdefault(mid, _ModuleBuffer()).add_segment(
                        seg, "truncated", None if final is None else np.asarray(final))
                    del st["open"][aid]
        if all_done:
            mod_ret = {}
            for aid, r in ep.agent_returns.items():
                mid = ep.agent_to_module.get(aid)
                if mid is not None:
                    mod_ret[mid] = mod_ret.get(mid, 0.0) + r
            self.episodes.add(sum(ep.agent_returns.values()), ep.length, time.time() - ep.start,
                              ep.agent_returns, mod_ret)
            self._reset_env(e)
        else:
            st["obs"] = {aid: o for aid, o in o2.items() if not (term.get(aid) or trunc.get(aid))}

    def _cut(self, e, bufs):
        """End of a fragment: close the segments of agents that are about to act again."""
        st = self._state[e]
        for aid in list(st["open"]):
            if aid in st["pending"] or aid not in st["obs"]:
                continue
            seg = st["open"].pop(aid)
            if seg:
                bufs.setdefault(self._module_of(st, aid), _ModuleBuffer()).add_segment(
                    seg, "cut", np.asarray(st["obs"][aid]))

    def sample(self, weights=None, weights_seq_no=None, num_timesteps=None, explore=None,
               global_env_steps=None, random_actions=False):
        t0 = time.perf_counter()
        if weights is not None and weights_seq_no != self.weights_seq_no:
            self.set_weights(weights, weights_seq_no)
        if global_env_steps is not None:
            self.global_env_steps = global_env_steps
        explore = self.config.explore if explore is None else explore
        T = int(num_timesteps or self.config.get_rollout_fragment_length(self.worker_index))
        eps = self._epsilon()
        bufs = {}
        counters = {"env": 0, "agents": {}, "modules": {}}
        for e in range(self.num_envs):
            if self._state[e] is None:
                self._reset_env(e)
            for _ in range(T):
                self._step_env(e, bufs, explore, eps, counters)
            self._cut(e, bufs)
        self.num_env_steps_lifetime += counters["env"]
        self.global_env_steps += counters["env"]
        metrics = {"num_env_steps_sampled": counters["env"],
                   "num_agent_steps_sampled": {str(k): v for k, v in counters["agents"].items()},
                   "num_module_steps_sampled": dict(counters["modules"]), "episodes": self.episodes.pop(),
                   "sample_time_s": time.perf_counter() - t0, "weights_seq_no": self.weights_seq_no,
                   "worker_index": self.worker_index, "num_rows": T * self.num_envs}
        return {"batches": {mid: b.to_batch() for mid, b in bufs.items() if len(b)}, "metrics": metrics}

    def sample_episodes(self, weights=None, weights_seq_no=None, num_episodes=None, num_timesteps=None,
                        explore=False):
        t0 = time.perf_counter()
        if weights is not None and weights_seq_no != self.weights_seq_no:
            self.set_weights(weights, weights_seq_no)
        saved = self.episodes.pop()
        for e in range(self.num_envs):
            self._reset_env(e)
        counters = {"env": 0, "agents": {}, "modules": {}}
        scratch = {}
        while True:
            if num_episodes is not None and len(self.episodes.returns) >= num_episodes:
                break
            if num_timesteps is not None and counters["env"] >= num_timesteps:
                break
            for e in range(self.num_envs):
                self._step_env(e, scratch, explore, 0.0, counters)
            scratch.clear()
        ep = self.episodes.pop()
        self.episodes.clear()
        self._state = [None] * self.num_envs
        if num_episodes is not None:
            for k in ("returns", "lengths", "durations"):
                ep[k] = ep[k][:num_episodes]
        del saved
        return {"metrics": {"num_env_steps_sampled": counters["env"],
                            "num_agent_steps_sampled": {str(k): v for k, v in counters["agents"].items()},
                            "num_module_steps_sampled": dict(counters["modules"]), "episodes": ep,
                            "sample_time_s": time.perf_counter() - t0, "weights_seq_no": self.weights_seq_no,
                            "worker_index": self.worker_index}}
