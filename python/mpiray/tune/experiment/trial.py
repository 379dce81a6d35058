"""``Trial``: one configuration's run, as the driver sees it."""

import collections


class _RunMetadata:
    def __init__(self):
        self.num_failures = 0
        self.error_filename = None
        self.pickled_error_filename = None


class Trial:
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    def __init__(self, trial_id, trainable_name, config, experiment_tag, placement_group_factory,
                 local_path, experiment_path, index=0, evaluated_params=None, stopping_criterion=None):
        self.trial_id = trial_id
        self.trainable_name = trainable_name
        self.config = config
        self.experiment_tag = experiment_tag
        self.placement_group_factory = placement_group_factory
        self.local_path = local_path
        self.path = local_path
        self.experiment_path = experiment_path
        self.index = index
        self.evaluated_params = evaluated_params or {}
        self.stopping_criterion = stopping_criterion or {}
        self.status = Trial.PENDING
        self.last_result = {}
        self.metric_analysis = {}
        self.metric_n_steps = {}
        self.run_metadata = _RunMetadata()
        self.error = None          # the exception (RayTaskError with the remote traceback)
        self.checkpoint = None     # latest Checkpoint
        self.checkpoints = []      # [(Checkpoint, metrics)] kept
        self.ckpt_index = 0
        self.ckpt_iteration = 0    # training_iteration of the latest checkpoint
        self.ckpt_time_total = 0.0
        self.custom_trial_name = None
        self.start_time = None
        self.resources_changed = False

    # Ray's names
    @property
    def error_file(self):
        return self.run_metadata.error_filename

    @property
    def num_failures(self):
        return self.run_metadata.num_failures

    @property
    def logdir(self):
        return self.local_path

    @property
    def local_dir(self):
        return self.experiment_path

    @property
    def storage(self):
        return None

    def is_finished(self):
        return self.status in (Trial.TERMINATED, Trial.ERROR)

    @property
    def resources(self):
        return self.placement_group_factory

    def update_last_result(self, result):
        """Keep the result and Ray's ``metric_analysis`` per numeric key (nested dicts as
        ``a/b``): max, min, avg, last, last-5-avg, last-10-avg."""
        self.last_result = result
        self._analyse(result, "")

    def _analyse(self, d, prefix):
        ma, steps = self.metric_analysis, self.metric_n_steps
        for k, v in d.items():
            if v.__class__ is float or v.__class__ is int:
                pass
            elif isinstance(v, dict):
                self._analyse(v, f"{prefix}{k}/")
                continue
            elif not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if prefix:
                k = prefix + k
            m = ma.get(k)
            if m is None:
                ma[k] = {"max": v, "min": v, "avg": v, "last": v, "last-5-avg": v, "last-10-avg": v}
                steps[k] = [1, collections.deque([v], maxlen=5), collections.deque([v], maxlen=10), v, v]
                continue
            st = steps[k]
            n = st[0] = st[0] + 1
            if v > m["max"]:
                m["max"] = v
            if v < m["min"]:
                m["min"] = v
            m["avg"] += (v - m["avg"]) / n
            m["last"] = v
            d5, d10 = st[1], st[2]
            # running sums of the last 5 and 10 values
            st[3] += v - (d5[0] if len(d5) == 5 else 0)
            st[4] += v - (d10[0] if len(d10) == 10 else 0)
            d5.append(v)
            d10.append(v)
            m["last-5-avg"] = st[3] / len(d5)
            m["last-10-avg"] = st[4] / len(d10)

    def __str__(self):
        if self.custom_trial_name:
            return self.custom_trial_name
        return f"{self.trainable_name}_{self.trial_id}"

    def __repr__(self):
        return str(self)
