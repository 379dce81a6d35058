"""PPO (Ray's ``ray.rllib.algorithms.ppo``): synchronous sampling from every env runner, then
``num_epochs`` of minibatch SGD on the learner(s), then one broadcast of the new weights."""

import time

from ...utils import metrics as M
from ..algorithm import Algorithm
from ..algorithm_config import AlgorithmConfig


class PPOConfig(AlgorithmConfig):
    """PPO's options (Ray 2.60's defaults): ``lr=5e-5``, ``train_batch_size=4000``,
    ``minibatch_size=128``, ``num_epochs=30``, ``lambda_=1.0``, ``clip_param=0.3``,
    ``vf_clip_param=10.0``, ``use_kl_loss=True``, ``kl_coeff=0.2``, ``kl_target=0.01``,
    ``vf_loss_coeff=1.0``, ``entropy_coeff=0.0``, ``num_env_runners=2``."""

    _EXTRA_OPTIONS = {"training": ["use_critic", "use_gae", "lambda_", "use_kl_loss", "kl_coeff", "kl_target",
                                   "vf_loss_coeff", "entropy_coeff", "entropy_coeff_schedule", "clip_param",
                                   "vf_clip_param", "lr_schedule", "sgd_minibatch_size", "vf_share_layers"]}

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or PPO)
        self.lr = 5e-5
        self.rollout_fragment_length = "auto"
        self.train_batch_size = 4000
        self.num_env_runners = 2
        self.minibatch_size = 128
        self.num_epochs = 30
        self.use_critic = True
        self.use_gae = True
        self.lambda_ = 1.0
        self.use_kl_loss = True
        self.kl_coeff = 0.2
        self.kl_target = 0.01
        self.vf_loss_coeff = 1.0
        self.entropy_coeff = 0.0
        self.entropy_coeff_schedule = None
        self.clip_param = 0.3
        self.vf_clip_param = 10.0
        self.grad_clip = None
        self.lr_schedule = None
        self.sgd_minibatch_size = None
        self.vf_share_layers = None

    def validate(self):
        super().validate()
        if self.sgd_minibatch_size is not None:
            raise ValueError("PPOConfig: sgd_minibatch_size was renamed minibatch_size (Ray 2.x)")
        if self.entropy_coeff_schedule is not None:
            self.entropy_coeff = self.entropy_coeff_schedule
        if self.lr_schedule is not None:
            self.lr = self.lr_schedule
        if isinstance(self.entropy_coeff, (int, float)) and self.entropy_coeff < 0:
            raise ValueError("PPOConfig: entropy_coeff must be >= 0")
        if self.clip_param <= 0:
            raise ValueError("PPOConfig: clip_param must be > 0")
        return self


class PPO(Algorithm):
    """Proximal Policy Optimization."""

    _config_cls = PPOConfig

    @property
    def _learner_cls(self):
        from .ppo_learner import PPOTorchLearner
        return self.config.learner_class or PPOTorchLearner

    def training_step(self):
        cfg = self.config
        timers = self._it["timers"]
        t = time.perf_counter()
        parts, rows, tries = [], 0, 0
        target = cfg.total_train_batch_size
        while rows < target:
            outs = self.env_runner_group.sample(self._weights, self._weights_seq_no)
            self._record_samples([m for _, m in outs])
            for b, m in outs:
                parts.append(b)
                rows += m["num_rows"]
            tries += 1
            if not outs and tries > cfg.num_consecutive_env_runner_failures_tolerance:
                raise RuntimeError("no env runner returned samples") from self.env_runner_group.last_error
        timers[M.ENV_RUNNER_SAMPLING_TIMER] += time.perf_counter() - t
        t = time.perf_counter()
        results = self.learner_group.update(parts, self._timesteps())
        timers[M.LEARNER_UPDATE_TIMER] += time.perf_counter() - t
        self._record_learner(results, results.get("__all_modules__", {}).get("num_env_steps_trained", 0))
        t = time.perf_counter()
        self._publish_weights()
        timers[M.SYNCH_WORKER_WEIGHTS_TIMER] += time.perf_counter() - t
