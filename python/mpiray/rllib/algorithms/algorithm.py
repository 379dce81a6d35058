"""``Algorithm`` (Ray's ``ray.rllib.algorithms.algorithm``): env runners + learners, one
``train()`` call per iteration, RLlib's result layout and checkpoint layout.

An ``Algorithm`` is also a ``tune.Trainable``: ``Tuner("PPO", param_space=config)`` runs it as
a trial (the env runners and learner actors are created from the trial's actor).
"""

import collections
import json
import logging
import math
import os
import pickle
import socket
import tempfile
import time

import cloudpickle
import numpy as np

from ...tune.trainable import Trainable
from ..core import ALL_MODULES, DEFAULT_MODULE_ID
from ..core.learner.learner_group import LearnerGroup
from ..env.env_runner_group import EnvRunnerGroup
from ..env.utils import is_multi_agent, resolve_env
from ..utils import metrics as M
from .algorithm_config import AlgorithmConfig

logger = logging.getLogger("mpiray.rllib")

_CKPT_META = {"type": "Algorithm", "checkpoint_version": "2.1", "format": "cloudpickle",
              "state_file": "algorithm_state", "class_and_ctor_args_file": "class_and_ctor_args.pkl",
              "ray_version": "2.60.0", "framework": "mpiray"}


class _Window:
    """The last ``n`` finished episodes (RLlib's ``metrics_num_episodes_for_smoothing``)."""

    def __init__(self, n):
        self.n = n
        self.returns = collections.deque(maxlen=n)
        self.lengths = collections.deque(maxlen=n)
        self.durations = collections.deque(maxlen=n)
        self.agent = {}
        self.module = {}

    def add(self, ep):
        self.returns.extend(ep["returns"])
        self.lengths.extend(ep["lengths"])
        self.durations.extend(ep["durations"])
        for a, rs in ep.get("agent_returns", {}).items():
            self.agent.setdefault(a, collections.deque(maxlen=self.n)).extend(rs)
        for m, rs in ep.get("module_returns", {}).items():
            self.module.setdefault(m, collections.deque(maxlen=self.n)).extend(rs)

    def state(self):
        return {"n": self.n, "returns": list(self.returns), "lengths": list(self.lengths),
                "durations": list(self.durations), "agent": {k: list(v) for k, v in self.agent.items()},
                "module": {k: list(v) for k, v in self.module.items()}}

    @classmethod
    def from_state(cls, s):
        w = cls(s["n"])
        w.returns.extend(s["returns"])
        w.lengths.extend(s["lengths"])
        w.durations.extend(s["durations"])
        w.agent = {k: collections.deque(v, maxlen=w.n) for k, v in s["agent"].items()}
        w.module = {k: collections.deque(v, maxlen=w.n) for k, v in s["module"].items()}
        return w

    def results(self):
        def mean(x):
            return float(np.mean(x)) if len(x) else float("nan")
        return {
            M.EPISODE_RETURN_MEAN: mean(self.returns),
            M.EPISODE_RETURN_MIN: float(np.min(self.returns)) if self.returns else float("nan"),
            M.EPISODE_RETURN_MAX: float(np.max(self.returns)) if self.returns else float("nan"),
            M.EPISODE_LEN_MEAN: mean(self.lengths),
            M.EPISODE_LEN_MIN: int(np.min(self.lengths)) if self.lengths else float("nan"),
            M.EPISODE_LEN_MAX: int(np.max(self.lengths)) if self.lengths else float("nan"),
            M.EPISODE_DURATION_SEC_MEAN: mean(self.durations),
            M.AGENT_EPISODE_RETURNS_MEAN: {a: mean(v) for a, v in self.agent.items()},
            M.MODULE_EPISODE_RETURNS_MEAN: {m: mean(v) for m, v in self.module.items()},
        }


class Algorithm(Trainable):
    """Base class of PPO, DQN, IMPALA, APPO."""

    _config_cls = AlgorithmConfig
    _learner_cls = None
    _env_registry = None  # set on the classes registered with Tune (carries tune.register_env's envs)

    @classmethod
    def get_default_config(cls):
        return cls._config_cls(algo_class=cls)

    def __init__(self, config=None, env=None, logger_creator=None, **kwargs):
        trial_info = kwargs.pop("_trial_info", None)
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(kwargs)}")
        if config is None:
            cfg = self.get_default_config()
        elif isinstance(config, AlgorithmConfig):
            cfg = config
            if cfg.algo_class is None:
                cfg.algo_class = type(self)
        elif isinstance(config, dict):
            cfg = self.get_default_config().update_from_dict(config)
        else:
            raise TypeError(f"{type(self).__name__}(config=...) takes an AlgorithmConfig or a dict, "
                            f"got {type(config).__name__}")
        if env is not None:
            cfg.env = env
        self._trial_info = trial_info or {}
        cfg._in_tune_trial = bool(trial_info)
        self.config = cfg
        self._iteration = 0
        self._time_total = 0.0
        self._episodes_total = 0
        self._timesteps_total = 0
        self._restored_from = None
        self._stopped = False
        self.env_runner_group = None
        self.eval_env_runner_group = None
        self.learner_group = None
        self.setup(cfg)

    # ------------------------------------------------------------------ set-up
    def setup(self, config):
        import mpiray
        config.validate()
        if not mpiray.is_initialized():
            mpiray.init()
        registry = {}
        try:
            from ...tune import trainable as _tt
            registry.update(_tt._env_registry)
        except Exception:
            pass
        if type(self)._env_registry:
            registry.update(type(self)._env_registry)
        config._env_spec = resolve_env(config.env, config.env_config, registry)
        self._multi_agent = bool(config.is_multi_agent) or is_multi_agent(config._env_spec)
        if self._multi_agent and not config._is_multi_agent:
            config._is_multi_agent = True  # a MultiAgentEnv with RLlib's default single policy
        if not config._in_tune_trial:
            self._check_resources(config)
        self._window = _Window(config.metrics_num_episodes_for_smoothing)
        self._lifetime = collections.Counter()
        self._lifetime_agents = collections.Counter()
        self._lifetime_modules = collections.Counter()
        self._lifetime_modules_trained = collections.Counter()
        self._episodes_lifetime = 0
        self._weights_seq_no = 0
        self._weights = None
        self._new_iteration_stats()
        try:
            self.env_runner_group = EnvRunnerGroup(config, config.num_env_runners, multi_agent=self._multi_agent)
            self._spaces = self.env_runner_group.first_runner_call("get_spaces")
            self._module_specs = {mid: config.get_rl_module_spec(mid, o, a) for mid, (o, a) in self._spaces.items()}
            self.learner_group = LearnerGroup(config, self._learner_cls, self._module_specs)
        except BaseException:
            self.stop()
            raise
        self._publish_weights()
        self._setup_algorithm()
        cb = config.on_algorithm_init or _callback(config, "on_algorithm_init")
        if cb:
            cb(algorithm=self, metrics_logger=None)

    def _setup_algorithm(self):
        """Algorithm-specific state (replay buffers, ...)."""

    def _check_resources(self, config):
        import mpiray
        try:
            total = float(mpiray.cluster_resources().get("CPU", 0))
        except Exception:
            return
        need = 0.0
        if config.num_env_runners:
            need += config.num_env_runners * float(config.num_cpus_per_env_runner)
        if config.num_learners:
            cpl = 1 if config.num_cpus_per_learner == "auto" else float(config.num_cpus_per_learner)
            need += config.num_learners * cpl
        if need > total + 1e-9:
            raise ValueError(
                f"{type(self).__name__} needs {need:g} CPUs for its actors ({config.num_env_runners} env runners x "
                f"{config.num_cpus_per_env_runner} + {config.num_learners} learners) but the cluster has {total:g}: "
                "lower num_env_runners / num_learners / num_cpus_per_env_runner (num_learners=0 trains in this "
                "process), or start more workers")
        gpus = float(config.num_gpus_per_learner or 0) * max(1, config.num_learners)
        if gpus and gpus > float(mpiray.cluster_resources().get("GPU", 0)) + 1e-9 and config.num_learners:
            raise ValueError(f"{type(self).__name__} asks for {gpus:g} GPUs for its learners but the cluster has "
                             f"{mpiray.cluster_resources().get('GPU', 0):g}")

    @classmethod
    def default_resource_request(cls, config):
        """One bundle holding the algorithm's process, its env runners and learners (its actors
        then reserve nothing more inside the trial)."""
        from ...tune.resources import PlacementGroupFactory
        if isinstance(config, dict) and not config:
            # mpiray.tune asks once, without a trial's config: reserve the algorithm's own CPU;
            # its actors then run inside the trial without reservations of their own
            return PlacementGroupFactory([{"CPU": 1.0}])
        if isinstance(config, dict):
            config = cls.get_default_config().update_from_dict(config)
        cpu = float(config.num_cpus_for_main_process)
        cpu += config.num_env_runners * float(config.num_cpus_per_env_runner)
        cpl = 1 if config.num_cpus_per_learner == "auto" else float(config.num_cpus_per_learner)
        cpu += config.num_learners * cpl
        gpu = float(config.num_gpus_per_learner or 0) * max(1, config.num_learners)
        bundle = {"CPU": cpu}
        if gpu:
            bundle["GPU"] = gpu
        return PlacementGroupFactory([bundle])

    # ------------------------------------------------------------------ weights
    def _publish_weights(self):
        """New weights for the runners: one object in the store (or a dict for a local runner)."""
        import mpiray
        self._weights_seq_no += 1
        if self.env_runner_group is not None and self.env_runner_group.local_env_runner is not None \
                and self.learner_group.is_local:
            self._weights = self.learner_group.get_weights()
        else:
            self._weights = self.learner_group.get_weights_ref()
        return self._weights

    # ------------------------------------------------------------------ iteration bookkeeping
    def _new_iteration_stats(self):
        self._it = {"env_steps": 0, "agent_steps": collections.Counter(), "module_steps": collections.Counter(),
                    "episodes": 0, "sample_time": 0.0, "trained": 0, "module_trained": collections.Counter(),
                    "learner": [], "timers": collections.defaultdict(float), "weights_seq_no": []}

    def _record_samples(self, metrics_list):
        for m in metrics_list:
            steps = int(m["num_env_steps_sampled"])
            self._it["env_steps"] += steps
            self._lifetime["env_steps"] += steps
            for a, n in m["num_agent_steps_sampled"].items():
                self._it["agent_steps"][a] += n
                self._lifetime_agents[a] += n
            for mid, n in m["num_module_steps_sampled"].items():
                self._it["module_steps"][mid] += n
                self._lifetime_modules[mid] += n
            ep = m["episodes"]
            self._it["episodes"] += len(ep["returns"])
            self._episodes_lifetime += len(ep["returns"])
            self._window.add(ep)
            self._it["sample_time"] += m.get("sample_time_s", 0.0)
            self._it["weights_seq_no"].append(m.get("weights_seq_no", 0))

    def _record_learner(self, results, env_steps_trained):
        self._it["learner"].append(results)
        self._it["trained"] += int(env_steps_trained)
        self._lifetime["trained"] += int(env_steps_trained)
        for mid, r in results.items():
            if mid != ALL_MODULES and isinstance(r, dict):
                n = int(r.get(M.NUM_MODULE_STEPS_TRAINED, 0))
                self._it["module_trained"][mid] += n
                self._lifetime_modules_trained[mid] += n

    @property
    def num_env_steps_sampled_lifetime(self):
        return self._lifetime["env_steps"]

    def _timesteps(self):
        return {M.NUM_ENV_STEPS_SAMPLED_LIFETIME: self._lifetime["env_steps"],
                M.NUM_AGENT_STEPS_SAMPLED_LIFETIME: sum(self._lifetime_agents.values())}

    # ------------------------------------------------------------------ train
    def training_step(self):
        raise NotImplementedError

    def step(self):
        """One iteration (Tune calls this; ``train()`` adds Tune's keys)."""
        cfg = self.config
        t0 = time.perf_counter()
        self._new_iteration_stats()
        calls = 0
        while True:
            ts = time.perf_counter()
            self.training_step()
            self._it["timers"][M.TRAINING_STEP_TIMER] += time.perf_counter() - ts
            calls += 1
            elapsed = time.perf_counter() - t0
            if cfg.min_time_s_per_iteration and elapsed < cfg.min_time_s_per_iteration:
                continue
            if cfg.min_sample_timesteps_per_iteration and self._it["env_steps"] < cfg.min_sample_timesteps_per_iteration:
                continue
            if cfg.min_train_timesteps_per_iteration and self._it["trained"] < cfg.min_train_timesteps_per_iteration:
                continue
            break
        result = self._compile_results(calls, time.perf_counter() - t0)
        if cfg.evaluation_interval and (self._iteration + 1) % int(cfg.evaluation_interval) == 0:
            result[M.EVALUATION_RESULTS] = self.evaluate()
        cb = cfg.on_train_result or _callback(cfg, "on_train_result")
        if cb:
            cb(algorithm=self, metrics_logger=None, result=result)
        return result

    def train(self):
        """One iteration; returns RLlib's result dict."""
        if self._stopped:
            raise RuntimeError(f"{type(self).__name__} was stopped")
        start = time.time()
        result = self.step()
        self._iteration += 1
        now = time.time()
        this = now - start
        self._time_total += this
        result.update({
            "training_iteration": self._iteration, "iterations_since_restore": self._iteration,
            "time_this_iter_s": this, "time_total_s": self._time_total, "time_since_restore": self._time_total,
            "timestamp": int(now), "date": time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now)),
            "done": False, "trial_id": self._trial_info.get("trial_id", "default"), "pid": os.getpid(),
            "hostname": socket.gethostname(), "node_ip": _node_ip(), "config": self.config.to_dict()})
        return result

    def _compile_results(self, calls, elapsed):
        it = self._it
        env = self._window.results()
        env.update({
            M.NUM_EPISODES: it["episodes"], M.NUM_EPISODES_LIFETIME: self._episodes_lifetime,
            M.NUM_ENV_STEPS_SAMPLED: it["env_steps"], M.NUM_ENV_STEPS_SAMPLED_LIFETIME: self._lifetime["env_steps"],
            M.NUM_AGENT_STEPS_SAMPLED: dict(it["agent_steps"]),
            M.NUM_AGENT_STEPS_SAMPLED_LIFETIME: dict(self._lifetime_agents),
            M.NUM_MODULE_STEPS_SAMPLED: dict(it["module_steps"]),
            M.NUM_MODULE_STEPS_SAMPLED_LIFETIME: dict(self._lifetime_modules),
            "num_env_steps_sampled_lifetime_throughput": it["env_steps"] / elapsed if elapsed > 0 else 0.0,
            "sample": it["sample_time"],
            M.WEIGHTS_SEQ_NO: float(np.mean(it["weights_seq_no"])) if it["weights_seq_no"] else 0.0,
        })
        learners = _reduce_learner_results(it["learner"])
        allm = learners.setdefault(ALL_MODULES, {})
        allm.update({M.NUM_ENV_STEPS_TRAINED: it["trained"], M.NUM_ENV_STEPS_TRAINED_LIFETIME: self._lifetime["trained"],
                     M.NUM_MODULE_STEPS_TRAINED: sum(it["module_trained"].values()),
                     M.NUM_MODULE_STEPS_TRAINED_LIFETIME: sum(self._lifetime_modules_trained.values()),
                     "num_env_steps_trained_lifetime_throughput": it["trained"] / elapsed if elapsed > 0 else 0.0})
        for mid, n in self._lifetime_modules_trained.items():
            if mid in learners:
                learners[mid][M.NUM_MODULE_STEPS_TRAINED_LIFETIME] = n
        group = self.env_runner_group
        timers = dict(it["timers"])
        timers[M.TRAINING_ITERATION_TIMER] = elapsed
        return {
            M.ENV_RUNNER_RESULTS: env,
            M.LEARNER_RESULTS: learners,
            M.FAULT_TOLERANCE_STATS: {
                "num_healthy_workers": group.num_healthy_remote_workers() if group else 0,
                "num_remote_worker_restarts": group.num_remote_worker_restarts if group else 0,
                "num_env_runners_dropped_lifetime": group.num_dropped if group else 0},
            M.TIMERS: timers,
            M.NUM_ENV_STEPS_SAMPLED_LIFETIME: self._lifetime["env_steps"],
            "num_env_steps_trained_lifetime": self._lifetime["trained"],
            "num_episodes_lifetime": self._episodes_lifetime,
            M.NUM_TRAINING_STEP_CALLS_PER_ITERATION: calls,
        }

    # ------------------------------------------------------------------ evaluation
    def _eval_config(self):
        cfg = self.config.copy()
        over = dict(cfg.evaluation_config or {})
        over.setdefault("explore", False)
        if hasattr(over, "to_dict"):
            over = over.to_dict()
        cfg.update_from_dict({k: v for k, v in over.items() if k != "class"})
        cfg._env_spec = self.config._env_spec
        cfg._is_multi_agent = self.config._is_multi_agent
        cfg._in_tune_trial = self.config._in_tune_trial
        return cfg

    def evaluate(self):
        """Run the evaluation runners (created on first use): ``evaluation_duration`` episodes
        (or timesteps), ``explore=False`` unless ``evaluation_config`` says otherwise. Returns
        ``{"env_runners": {...}}``."""
        cfg = self.config
        t0 = time.perf_counter()
        cb = cfg.on_evaluate_start or _callback(cfg, "on_evaluate_start")
        if cb:
            cb(algorithm=self, metrics_logger=None)
        if self.eval_env_runner_group is None:
            ecfg = self._eval_config()
            self._eval_cfg = ecfg
            self.eval_env_runner_group = EnvRunnerGroup(ecfg, cfg.evaluation_num_env_runners, evaluation=True,
                                                        multi_agent=self._multi_agent)
        weights = self._weights
        if self.eval_env_runner_group.local_env_runner is None and not _is_ref(weights):
            import mpiray
            weights = mpiray.put(weights)
        dur = cfg.evaluation_duration
        if dur == "auto":
            dur = 10
        kw = {"num_episodes": int(dur)} if cfg.evaluation_duration_unit == "episodes" else {"num_timesteps": int(dur)}
        metrics = self.eval_env_runner_group.sample_episodes(weights, self._weights_seq_no,
                                                             explore=self._eval_cfg.explore, **kw)
        w = _Window(10 ** 9)
        steps = 0
        for m in metrics:
            w.add(m["episodes"])
            steps += m["num_env_steps_sampled"]
        env = w.results()
        env.update({M.NUM_EPISODES: len(w.returns), M.NUM_ENV_STEPS_SAMPLED: steps})
        out = {M.ENV_RUNNER_RESULTS: env, M.TIMERS: {M.EVALUATION_ITERATION_TIMER: time.perf_counter() - t0}}
        cb = cfg.on_evaluate_end or _callback(cfg, "on_evaluate_end")
        if cb:
            cb(algorithm=self, metrics_logger=None, evaluation_metrics=out)
        return out

    # ------------------------------------------------------------------ modules
    def get_module(self, module_id=DEFAULT_MODULE_ID):
        """The trained RLModule (``forward_inference({"obs": tensor})`` to act)."""
        if module_id not in self._module_specs:
            raise KeyError(f"no module {module_id!r}; this algorithm has {sorted(self._module_specs)}")
        return self.learner_group.get_module(module_id)

    def get_weights(self, module_ids=None):
        return self.learner_group.get_weights(module_ids, inference_only=False)

    def set_weights(self, weights):
        self.learner_group.set_weights(weights)
        self._publish_weights()

    # ------------------------------------------------------------------ checkpoints
    def get_state(self):
        return {"iteration": self._iteration, "time_total": self._time_total,
                "lifetime": dict(self._lifetime), "lifetime_agents": dict(self._lifetime_agents),
                "lifetime_modules": dict(self._lifetime_modules),
                "lifetime_modules_trained": dict(self._lifetime_modules_trained),
                "episodes_lifetime": self._episodes_lifetime, "window": self._window.state(),
                "weights_seq_no": self._weights_seq_no, "algo": self._get_algorithm_state()}

    def set_state(self, state):
        self._iteration = state["iteration"]
        self._time_total = state["time_total"]
        self._lifetime = collections.Counter(state["lifetime"])
        self._lifetime_agents = collections.Counter(state["lifetime_agents"])
        self._lifetime_modules = collections.Counter(state["lifetime_modules"])
        self._lifetime_modules_trained = collections.Counter(state["lifetime_modules_trained"])
        self._episodes_lifetime = state["episodes_lifetime"]
        self._window = _Window.from_state(state["window"])
        self._weights_seq_no = state["weights_seq_no"]
        self._set_algorithm_state(state.get("algo", {}))

    def _get_algorithm_state(self):
        return {}

    def _set_algorithm_state(self, state):
        pass

    def save_to_path(self, path=None):
        """Write a checkpoint as RLlib lays it out; returns its path."""
        path = os.path.abspath(os.fspath(path) if path is not None else tempfile.mkdtemp(prefix="rllib_ckpt_"))
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "rllib_checkpoint.json"), "w") as f:
            json.dump(_CKPT_META, f)
        with open(os.path.join(path, "metadata.json"), "w") as f:
            json.dump(_CKPT_META, f)
        cfg = self.config.copy()
        cfg._env_spec = None
        with open(os.path.join(path, "class_and_ctor_args.pkl"), "wb") as f:
            cloudpickle.dump({"class": type(self), "ctor_args_and_kwargs": ((), {"config": cfg})}, f)
        with open(os.path.join(path, "algorithm_state.pkl"), "wb") as f:
            pickle.dump(self.get_state(), f)
        lstate = self.learner_group.get_state()
        ldir = os.path.join(path, "learner_group", "learner")
        os.makedirs(ldir, exist_ok=True)
        with open(os.path.join(path, "learner_group", "metadata.json"), "w") as f:
            json.dump(_CKPT_META, f)
        with open(os.path.join(ldir, "state.pkl"), "wb") as f:
            pickle.dump({k: v for k, v in lstate.items() if k != "rl_module"}, f)
        with open(os.path.join(ldir, "metadata.json"), "w") as f:
            json.dump(_CKPT_META, f)
        mdir = os.path.join(ldir, "rl_module")
        for mid in self._module_specs:
            module = self.learner_group.get_module(mid)
            module.save_to_path(os.path.join(mdir, str(mid)))
        with open(os.path.join(mdir, "metadata.json"), "w") as f:
            json.dump(_CKPT_META, f)
        rstate = self._runner_states()
        edir = os.path.join(path, "env_runner")
        os.makedirs(edir, exist_ok=True)
        with open(os.path.join(edir, "state.pkl"), "wb") as f:
            cloudpickle.dump(rstate, f)
        return path

    def _runner_states(self):
        g = self.env_runner_group
        try:
            if g.local_env_runner is not None:
                return {0: g.local_env_runner.get_state()}
            import mpiray
            idx = g.healthy_indices
            return dict(zip(idx, mpiray.get([g._actors[i].get_state.remote() for i in idx])))
        except Exception as e:  # noqa: BLE001 - a runner dying now must not lose the checkpoint
            logger.warning("env runner states not saved: %s", e)
            return {}

    def restore_from_path(self, path):
        """Load a checkpoint written by ``save_to_path`` (modules, optimizers, counters, and
        env runner states where the runners match)."""
        path = os.fspath(path)
        if not os.path.exists(os.path.join(path, "algorithm_state.pkl")):
            raise FileNotFoundError(f"{path} is not an RLlib algorithm checkpoint (no algorithm_state.pkl)")
        mdir = os.path.join(path, "learner_group", "learner", "rl_module")
        states = {}
        for mid in self._module_specs:
            mpath = os.path.join(mdir, str(mid), "module_state.pkl")
            if not os.path.exists(mpath):
                raise ValueError(f"checkpoint {path} has no module {mid!r} (it has "
                                 f"{sorted(d for d in os.listdir(mdir) if os.path.isdir(os.path.join(mdir, d)))})")
            with open(mpath, "rb") as f:
                states[mid] = pickle.load(f)
        with open(os.path.join(path, "learner_group", "learner", "state.pkl"), "rb") as f:
            lstate = pickle.load(f)
        lstate["rl_module"] = states
        try:
            self.learner_group.set_state(lstate)
        except ValueError as e:
            raise ValueError(f"checkpoint {path} does not fit this algorithm's modules: {e}") from e
        with open(os.path.join(path, "algorithm_state.pkl"), "rb") as f:
            self.set_state(pickle.load(f))
        rpath = os.path.join(path, "env_runner", "state.pkl")
        if os.path.exists(rpath):
            with open(rpath, "rb") as f:
                rstates = pickle.load(f)
            self._restore_runner_states(rstates)
        self._weights_seq_no -= 1
        self._publish_weights()
        self._restored_from = path
        cb = self.config.on_checkpoint_loaded or _callback(self.config, "on_checkpoint_loaded")
        if cb:
            cb(algorithm=self, metrics_logger=None)
        return self

    def _restore_runner_states(self, rstates):
        g = self.env_runner_group
        try:
            if g.local_env_runner is not None:
                if 0 in rstates:
                    g.local_env_runner.set_state(rstates[0])
                return
            import mpiray
            refs = [g._actors[i].set_state.remote(s) for i, s in rstates.items() if i in g._actors]
            mpiray.get(refs)
        except Exception as e:  # noqa: BLE001
            logger.warning("env runner states not restored: %s", e)

    @classmethod
    def from_checkpoint(cls, path, **kwargs):
        """A new algorithm built from the checkpoint's config and restored from it."""
        path = os.fspath(getattr(path, "path", path))
        f = os.path.join(path, "class_and_ctor_args.pkl")
        if not os.path.exists(f):
            raise FileNotFoundError(f"{path} is not an RLlib algorithm checkpoint (no class_and_ctor_args.pkl)")
        with open(f, "rb") as fh:
            info = pickle.load(fh)
        klass = info["class"]
        _, kw = info["ctor_args_and_kwargs"]
        config = kw["config"]
        for k, v in kwargs.items():
            setattr(config, k, v)
        algo = klass(config=config)
        algo.restore_from_path(path)
        return algo

    # Ray's older names
    def save(self, checkpoint_dir=None):
        from ...train import Checkpoint
        p = self.save_to_path(checkpoint_dir)

        class _TrainingResult:
            def __init__(self, checkpoint, metrics):
                self.checkpoint = checkpoint
                self.metrics = metrics
        return _TrainingResult(Checkpoint(p), {"training_iteration": self._iteration})

    def restore(self, checkpoint_path):
        return self.restore_from_path(getattr(checkpoint_path, "path", checkpoint_path))

    # Tune's Trainable hooks
    def save_checkpoint(self, checkpoint_dir):
        self.save_to_path(checkpoint_dir)
        return None

    def load_checkpoint(self, checkpoint):
        if isinstance(checkpoint, dict):
            raise ValueError("RLlib checkpoints are directories")
        self.restore_from_path(checkpoint)

    def reset_config(self, new_config):
        return False

    def cleanup(self):
        self.stop()

    def stop(self):
        """Stop env runners and learners (idempotent)."""
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        for g in (getattr(self, "eval_env_runner_group", None), getattr(self, "env_runner_group", None)):
            if g is not None:
                try:
                    g.stop()
                except Exception:
                    pass
        lg = getattr(self, "learner_group", None)
        if lg is not None:
            try:
                lg.stop()
            except Exception:
                pass

    @property
    def env_runner(self):
        """The local env runner (``num_env_runners=0``), else None."""
        return self.env_runner_group.local_env_runner if self.env_runner_group else None

    @property
    def iteration(self):
        return self._iteration

    @property
    def training_iteration(self):
        return self._iteration

    def __repr__(self):
        return f"{type(self).__name__}(env={self.config.env!r}; env-runners={self.config.num_env_runners}; " \
               f"learners={self.config.num_learners})"


def _is_ref(x):
    import mpiray
    return isinstance(x, mpiray.ObjectRef)


def _callback(config, name):
    cls = config.callbacks_class
    if cls is None:
        return None
    if isinstance(cls, (list, tuple)):
        objs = [c() if isinstance(c, type) else c for c in cls]
    else:
        objs = [cls() if isinstance(cls, type) else cls]
    fns = [getattr(o, name) for o in objs if hasattr(o, name)]
    if not fns:
        return None

    def call(**kw):
        for f in fns:
            f(**kw)
    return call


def _node_ip():
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _reduce_learner_results(results):
    """Mean of each module's metrics over the updates of the iteration (counts summed)."""
    out = {}
    if not results:
        return out
    keys = {}
    for r in results:
        for mid, d in r.items():
            if isinstance(d, dict):
                keys.setdefault(mid, []).append(d)
    for mid, ds in keys.items():
        agg = {}
        for k in ds[0]:
            vals = [d[k] for d in ds if k in d]
            v0 = vals[0]
            if isinstance(v0, (int, float, np.floating, np.integer)) and not isinstance(v0, bool):
                if k.startswith("num_"):
                    agg[k] = int(sum(vals))
                elif k.startswith("curr_") or k.endswith("learning_rate"):
                    agg[k] = float(vals[-1])
                else:
                    agg[k] = float(np.mean(vals))
            else:
                agg[k] = v0
        out[mid] = agg
    return out


_ = math
