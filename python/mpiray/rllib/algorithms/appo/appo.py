"""APPO (Ray's ``ray.rllib.algorithms.appo``): IMPALA's asynchronous sampling with PPO's
clipped objective against a target policy; each train batch is learned from
``circular_buffer_iterations_per_batch`` times (a circular buffer of
``circular_buffer_num_batches`` batches)."""

import random

from ..impala.impala import IMPALA, IMPALAConfig


class APPOConfig(IMPALAConfig):
    """APPO's options (Ray 2.60's defaults): IMPALA's plus ``clip_param=0.4``,
    ``use_kl_loss=False``, ``kl_coeff=1.0``, ``kl_target=0.01``, ``target_network_update_freq=2``,
    ``tau=1.0``, ``circular_buffer_num_batches=8``, ``circular_buffer_iterations_per_batch=2``,
    ``learner_queue_size=16``."""

    _EXTRA_OPTIONS = {"training": ["clip_param", "use_critic", "use_gae", "lambda_", "use_kl_loss", "kl_coeff",
                                   "kl_target", "target_network_update_freq", "tau", "target_worker_clipping",
                                   "circular_buffer_num_batches", "circular_buffer_iterations_per_batch",
                                   "use_circular_buffer"]}

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or APPO)
        self.clip_param = 0.4
        self.use_critic = True
        self.use_gae = True
        self.lambda_ = 1.0
        self.use_kl_loss = False
        self.kl_coeff = 1.0
        self.kl_target = 0.01
        self.target_network_update_freq = 2
        self.tau = 1.0
        self.target_worker_clipping = 2.0
        self.circular_buffer_num_batches = 8
        self.circular_buffer_iterations_per_batch = 2
        self.use_circular_buffer = True
        self.learner_queue_size = 16


class APPO(IMPALA):
    """Asynchronous PPO."""

    _config_cls = APPOConfig

    @property
    def _learner_cls(self):
        from .appo_learner import APPOTorchLearner
        return self.config.learner_class or APPOTorchLearner

    def _setup_algorithm(self):
        super()._setup_algorithm()
        self._buffer = []  # [parts, rows, uses]
        seed = self.config.seed
        self._buf_rng = random.Random(seed)

    def _learn_on(self, parts, rows):
        cfg = self.config
        k = max(1, int(cfg.circular_buffer_iterations_per_batch)) if cfg.use_circular_buffer else 1
        if k == 1:
            return self._train_parts(parts, rows)
        self._buffer.append([parts, rows, 0])
        while len(self._buffer) > max(1, int(cfg.circular_buffer_num_batches)):
            self._buffer.pop(0)
        done = []
        for _ in range(k):
            entry = self._buf_rng.choice(self._buffer)
            entry[2] += 1
            if entry[2] >= k:
                self._buffer.remove(entry)
            done += self._train_parts(entry[0], entry[1])
            if not self._buffer:
                break
        return done
