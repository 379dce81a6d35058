"""``UserCallback`` (Ray's ``ray.train.UserCallback``): hooks that run in the driver."""


class RayTrainCallback:
    """Base of Train callbacks."""


class UserCallback(RayTrainCallback):
    """Called in the driver (mpiray's training controller runs there)."""

    def after_report(self, run_context, metrics, checkpoint):
        """After every worker reported once more: ``metrics[i]`` is worker i's dict;
        ``checkpoint`` the persisted checkpoint of this report, or None."""

    def after_exception(self, run_context, worker_exceptions):
        """After workers failed: ``worker_exceptions`` maps world rank -> exception."""


class TrainRunContext:
    """What callbacks learn about the run (Ray's ``TrainRunContext``)."""

    def __init__(self, run_config, train_loop_config, scaling_config, backend_config, dataset_config):
        self.run_config = run_config
        self.train_loop_config = train_loop_config
        self.scaling_config = scaling_config
        self.backend_config = backend_config
        self.dataset_config = dataset_config

    def get_run_config(self):
        return self.run_config
