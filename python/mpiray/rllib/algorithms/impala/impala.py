"""IMPALA (Ray's ``ray.rllib.algorithms.impala``): env runners sample without waiting for the
learner (one request in flight each, answered with whatever weights they last received);
the learner trains on each train batch as it fills, off-policy corrected by V-trace, and the
new weights go out every ``broadcast_interval`` updates."""

import collections
import time

from ...utils import metrics as M
from ..algorithm import Algorithm
from ..algorithm_config import AlgorithmConfig


class IMPALAConfig(AlgorithmConfig):
    """IMPALA's options (Ray 2.60's defaults): ``lr=5e-4``, ``train_batch_size=500``,
    ``rollout_fragment_length=50``, ``vtrace=True``, ``vtrace_clip_rho_threshold=1.0``,
    ``vtrace_clip_pg_rho_threshold=1.0``, ``vf_loss_coeff=0.5``, ``entropy_coeff=0.01``,
    ``grad_clip=40``, ``broadcast_interval=1``, ``learner_queue_size=3``, ``num_learners=1``,
    ``min_time_s_per_iteration=10``."""

    _EXTRA_OPTIONS = {"training": ["vtrace", "vtrace_clip_rho_threshold", "vtrace_clip_pg_rho_threshold",
                                   "num_gpu_loader_threads", "num_multi_gpu_tower_stacks", "minibatch_buffer_size",
                                   "replay_proportion", "replay_buffer_num_slots", "learner_queue_size",
                                   "learner_queue_timeout", "timeout_s_sampler_manager",
                                   "timeout_s_aggregator_manager", "broadcast_interval", "num_aggregation_workers",
                                   "max_requests_in_flight_per_aggregator_worker", "grad_clip", "opt_type",
                                   "lr_schedule", "decay", "momentum", "epsilon", "vf_loss_coeff",
                                   "entropy_coeff", "entropy_coeff_schedule", "_separate_vf_optimizer", "_lr_vf",
                                   "after_train_step"]}

    def __init__(self, algo_class=None):
        super().__init__(algo_class=algo_class or IMPALA)
        self.lr = 5e-4
        self.train_batch_size = 500
        self.rollout_fragment_length = 50
        self.num_env_runners = 2
        self.num_learners = 1
        self.vtrace = True
        self.vtrace_clip_rho_threshold = 1.0
        self.vtrace_clip_pg_rho_threshold = 1.0
        self.num_gpu_loader_threads = 8
        self.num_multi_gpu_tower_stacks = 1
        self.minibatch_buffer_size = 1
        self.replay_proportion = 0.0
        self.replay_buffer_num_slots = 0
        self.learner_queue_size = 3
        self.learner_queue_timeout = 300
        self.timeout_s_sampler_manager = 0.0
        self.timeout_s_aggregator_manager = 0.0
        self.broadcast_interval = 1
        self.num_aggregation_workers = 0
        self.max_requests_in_flight_per_aggregator_worker = 2
        self.grad_clip = 40.0
        self.opt_type = "adam"
        self.lr_schedule = None
        self.decay = 0.99
        self.momentum = 0.0
        self.epsilon = 0.1
        self.vf_loss_coeff = 0.5
        self.entropy_coeff = 0.01
        self.entropy_coeff_schedule = None
        self._separate_vf_optimizer = False
        self._lr_vf = 0.0005
        self.after_train_step = None
        self.min_time_s_per_iteration = 10
        self.num_epochs = 1
        self.minibatch_size = None

    def validate(self):
        super().validate()
        if not self.vtrace:
            raise ValueError(f"{type(self).__name__}: vtrace=False is not supported (V-trace is IMPALA's correction)")
        if self.entropy_coeff_schedule is not None:
            self.entropy_coeff = self.entropy_coeff_schedule
        if self.lr_schedule is not None:
            self.lr = self.lr_schedule
        return self

    def _exploration_mode(self):
        return "stochastic"


class IMPALA(Algorithm):
    """Importance Weighted Actor-Learner Architecture."""

    _config_cls = IMPALAConfig

    @property
    def _learner_cls(self):
        from .impala_learner import IMPALATorchLearner
        return self.config.learner_class or IMPALATorchLearner

    def _setup_algorithm(self):
        self._queue = collections.deque()     # (batch part, rows)
        self._queued_rows = 0
        self._inflight = collections.deque()  # remote learner updates
        self._num_updates = 0
        self._dropped = 0

    def _train_parts(self, parts, rows):
        """Start (remote) or run (local) one update; returns finished results."""
        lg = self.learner_group
        done = []
        if lg.is_local:
            done.append((lg.update(parts, self._timesteps()), rows))
        else:
            self._inflight.append((lg.update_async(parts, self._timesteps()), rows))
            while self._inflight and (len(self._inflight) > self.config.max_requests_in_flight_per_learner
                                      or lg.is_ready(self._inflight[0][0])):
                h, r = self._inflight.popleft()
                done.append((lg._collect(h), r))
        return done

    def _after_updates(self, done):
        for results, _ in done:
            self._record_learner(results, results.get("__all_modules__", {}).get("num_env_steps_trained", 0))
            self._num_updates += 1
            if self._num_updates % max(1, int(self.config.broadcast_interval)) == 0:
                self._publish_weights()

    def _next_train_batch(self):
        target = self.config.train_batch_size_per_learner * max(1, self.config.num_learners)
        if self._queued_rows < target:
            return None
        parts, rows = [], 0
        while self._queue and rows < target:
            p, r = self._queue.popleft()
            parts.append(p)
            rows += r
        self._queued_rows -= rows
        return parts, rows

    def _learn_on(self, parts, rows):
        return self._train_parts(parts, rows)

    def training_step(self):
        cfg = self.config
        timers = self._it["timers"]
        t = time.perf_counter()
        wait = 0.02 if (self._queue or self._inflight) else min(1.0, cfg.sample_timeout_s)
        outs = self.env_runner_group.sample_async(self._weights, self._weights_seq_no, timeout_s=wait)
        timers[M.ENV_RUNNER_SAMPLING_TIMER] += time.perf_counter() - t
        self._record_samples([m for _, m in outs])
        for b, m in outs:
            self._queue.append((b, m["num_rows"]))
            self._queued_rows += m["num_rows"]
        # a full queue drops its oldest rollouts (the learner cannot keep up)
        target = cfg.train_batch_size_per_learner * max(1, cfg.num_learners)
        while self._queued_rows > target * max(1, cfg.learner_queue_size) and len(self._queue) > 1:
            _, r = self._queue.popleft()
            self._queued_rows -= r
            self._dropped += 1
        t = time.perf_counter()
        done = []
        while True:
            nxt = self._next_train_batch()
            if nxt is None:
                break
            done += self._learn_on(*nxt)
        if not self.learner_group.is_local:
            while self._inflight and self.learner_group.is_ready(self._inflight[0][0]):
                h, r = self._inflight.popleft()
                done.append((self.learner_group._collect(h), r))
        timers[M.LEARNER_UPDATE_TIMER] += time.perf_counter() - t
        self._after_updates(done)

    def _compile_results(self, calls, elapsed):
        r = super()._compile_results(calls, elapsed)
        r["learner_queue"] = {"size_count": len(self._queue), "num_rollouts_dropped_lifetime": self._dropped}
        return r

    def stop(self):
        inflight = getattr(self, "_inflight", None)
        if inflight:
            import mpiray
            for h, _ in list(inflight):
                try:
                    mpiray.get(h[1], timeout=30)
                except Exception:
                    pass
            inflight.clear()
        super().stop()
