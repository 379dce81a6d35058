"""DQN (Ray's ``ray.rllib.algorithms.dqn``): epsilon-greedy sampling into a replay buffer,
(double, dueling) Q-learning on replayed batches, a target network copied every
``target_network_update_freq`` sampled steps."""

import time

import numpy as np

from ...core import ALL_MODULES
from ...utils import metrics as M
from ...utils.replay_buffers import PrioritizedReplayBuffer, ReplayBuffer, rollout_to_transitions
from ..algorithm import Algorithm
from ..algorithm_config import AlgorithmConfig


class DQNConfig(AlgorithmConfig):
    """DQN's options (Ray 2.60's defaults): ``lr=5e-4``, ``train_batch_size=32``,
    ``replay_buffer_config={"type": "PrioritizedEpisodeReplayBuffer", "capacity": 50000,
    "alpha": 0.6, "beta": 0.4}``, ``target_network_update_freq=500``, ``double_q=True``,
    ``dueling=True``, ``n_step=1``, ``num_steps_sampled_before_learning_starts=1000``,
    ``epsilon=[(0, 1.0), (10000, 0.05)]``, ``hiddens=[256]``, ``grad_clip=40``,
    ``min_sample_timesteps_per_iteration=1000``, ``num_env_runners=0``."""

    _EXTRA_OPTIONS = {"training": ["target_network_update_freq", "replay_buffer_config",
                                   "store_buffer_in_checkpoints", "lr_schedule", "epsilon", "adam_epsilon",
                                   "grad_clip", "num_steps_sampled_before_learning_starts", "tau", "num_atoms",
                                   "v_min", "v_max", "noisy", "sigma0", "dueling", "hiddens", "double_q", "n_step",
                                   "before_learn_on_batch", "training_intensity", "td_error_loss_fn",
                                   "categorical_distribution_temperature", "burn_in_len"]}

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or DQN)
        self.lr = 5e-4
        self.train_batch_size = 32
        self.rollout_fragment_length = "auto"
        self.num_env_runners = 0
        self.grad_clip = 40.0
        self.target_network_update_freq = 500
        self.replay_buffer_config = {"type": "PrioritizedEpisodeReplayBuffer", "capacity": 50000,
                                     "alpha": 0.6, "beta": 0.4}
        self.store_buffer_in_checkpoints = False
        self.lr_schedule = None
        self.epsilon = [(0, 1.0), (10000, 0.05)]
        self.adam_epsilon = 1e-8
        self.num_steps_sampled_before_learning_starts = 1000
        self.tau = 1.0
        self.num_atoms = 1
        self.v_min = -10.0
        self.v_max = 10.0
        self.noisy = False
        self.sigma0 = 0.5
        self.dueling = True
        self.hiddens = [256]
        self.double_q = True
        self.n_step = 1
        self.before_learn_on_batch = None
        self.training_intensity = None
        self.td_error_loss_fn = "huber"
        self.categorical_distribution_temperature = 1.0
        self.burn_in_len = 0
        self.min_sample_timesteps_per_iteration = 1000

    def _exploration_mode(self):
        return "epsilon_greedy"

    def _default_module_class(self):
        from ...core.rl_module.torch.default_modules import DefaultDQNRLModule
        return DefaultDQNRLModule

    def _model_config_defaults(self):
        return {"fcnet_activation": "relu"}

    def _model_config_extras(self):
        return ["dueling", "hiddens"]

    @property
    def model_config(self):
        d = super().model_config
        d.setdefault("dueling", self.dueling)
        d.setdefault("hiddens", list(self.hiddens))
        return d

    def get_rollout_fragment_length(self, worker_index=0):
        if self.rollout_fragment_length == "auto":
            n = self.n_step
            return int(n[1] if isinstance(n, (list, tuple)) else n)
        return int(self.rollout_fragment_length)

    def validate(self):
        super().validate()
        if self.num_atoms != 1:
            raise ValueError("DQNConfig: num_atoms > 1 (distributional DQN) is not supported by mpiray.rllib")
        if self.noisy:
            raise ValueError("DQNConfig: noisy=True (noisy nets) is not supported by mpiray.rllib")
        if self.td_error_loss_fn not in ("huber", "mse"):
            raise ValueError(f"DQNConfig: td_error_loss_fn must be 'huber' or 'mse', got {self.td_error_loss_fn!r}")
        t = (self.replay_buffer_config or {}).get("type", "PrioritizedEpisodeReplayBuffer")
        name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
        valid = ("EpisodeReplayBuffer", "PrioritizedEpisodeReplayBuffer", "ReplayBuffer", "PrioritizedReplayBuffer")
        if name not in valid:
            raise ValueError(f"DQNConfig: replay_buffer_config type {name!r} is not supported; valid: {valid}")
        if self.lr_schedule is not None:
            self.lr = self.lr_schedule
        return self


class DQN(Algorithm):
    """Deep Q-Network (double, dueling, n-step, prioritized replay)."""

    _config_cls = DQNConfig

    @property
    def _learner_cls(self):
        from .dqn_learner import DQNTorchLearner
        return self.config.learner_class or DQNTorchLearner

    def _setup_algorithm(self):
        cfg = self.config
        rb = dict(cfg.replay_buffer_config or {})
        t = rb.pop("type", "PrioritizedEpisodeReplayBuffer")
        name = t if isinstance(t, str) else t.__name__
        cls = PrioritizedReplayBuffer if "Prioritized" in name else ReplayBuffer
        self._buffers = {mid: cls(seed=cfg.seed, **rb) for mid in self._module_specs}
        self._last_target_update = 0
        self._target_updates = 0
        self._n_rng = np.random.default_rng(cfg.seed)

    def _rr_weights(self):
        cfg = self.config
        if not cfg.training_intensity:
            return 1, 1
        native = cfg.total_train_batch_size / (cfg.get_rollout_fragment_length() * cfg.num_envs_per_env_runner
                                               * max(cfg.num_env_runners + 1, 1))
        w = cfg.training_intensity / native
        return (int(round(1 / w)), 1) if w < 1 else (1, int(round(w)))

    def training_step(self):
        import mpiray
        cfg = self.config
        timers = self._it["timers"]
        store_w, train_w = self._rr_weights()
        for _ in range(store_w):
            t = time.perf_counter()
            outs = self.env_runner_group.sample(self._weights, self._weights_seq_no,
                                                global_env_steps=self._lifetime["env_steps"])
            timers[M.ENV_RUNNER_SAMPLING_TIMER] += time.perf_counter() - t
            self._record_samples([m for _, m in outs])
            for b, _ in outs:
                batches = mpiray.get(b) if isinstance(b, mpiray.ObjectRef) else b
                for mid, batch in batches.items():
                    n = cfg.n_step
                    if isinstance(n, (list, tuple)):  # RLlib: a range, drawn per sample
                        n = int(self._n_rng.integers(int(n[0]), int(n[1]) + 1))
                    self._buffers[mid].add(rollout_to_transitions(batch, cfg.gamma, n))
        if self._lifetime["env_steps"] < cfg.num_steps_sampled_before_learning_starts:
            return
        t = time.perf_counter()
        for _ in range(train_w):
            parts = {}
            for mid, buf in self._buffers.items():
                if len(buf):
                    parts[mid] = buf.sample(cfg.total_train_batch_size, beta=(cfg.replay_buffer_config or {}).get("beta"))
            if not parts:
                return
            results = self.learner_group.update([parts], self._timesteps())
            for mid, res in results.items():
                if mid != ALL_MODULES and M.TD_ERROR_KEY in res:
                    self._buffers[mid].update_priorities(parts[mid]["indices"], res.pop(M.TD_ERROR_KEY))
            self._record_learner(results, results.get(ALL_MODULES, {}).get("num_env_steps_trained", 0))
        if self._lifetime["env_steps"] - self._last_target_update >= cfg.target_network_update_freq:
            self.learner_group.call("update_target_networks")
            self._last_target_update = self._lifetime["env_steps"]
            self._target_updates += 1
        timers[M.LEARNER_UPDATE_TIMER] += time.perf_counter() - t
        t = time.perf_counter()
        self._publish_weights()
        timers[M.SYNCH_WORKER_WEIGHTS_TIMER] += time.perf_counter() - t

    def _compile_results(self, calls, elapsed):
        r = super()._compile_results(calls, elapsed)
        r[M.REPLAY_BUFFER_RESULTS] = {mid: b.get_metrics() for mid, b in self._buffers.items()}
        r[M.LEARNER_RESULTS].setdefault(ALL_MODULES, {})["num_target_updates"] = self._target_updates
        return r

    def _get_algorithm_state(self):
        s = {"last_target_update": self._last_target_update, "target_updates": self._target_updates}
        if self.config.store_buffer_in_checkpoints:
            s["buffers"] = {mid: b.get_state() for mid, b in self._buffers.items()}
        return s

    def _set_algorithm_state(self, state):
        self._last_target_update = state.get("last_target_update", 0)
        self._target_updates = state.get("target_updates", 0)
        for mid, s in state.get("buffers", {}).items():
            if mid in self._buffers:
                self._buffers[mid].set_state(s)


_ = np
