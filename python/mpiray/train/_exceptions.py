"""Errors of a training run (Ray 2.60's ``ray.train`` names)."""


class TrainingFailedError(RuntimeError):
    """``trainer.fit()`` failed: a :class:`WorkerGroupError` or a :class:`ControllerError`."""


class WorkerGroupError(TrainingFailedError):
    """Workers failed and no retry was left (``FailureConfig(max_failures)``).

    ``worker_failures``: world rank -> the exception of that worker (its string carries the
    remote traceback, with the worker's pid and host).
    """

    def __init__(self, error_message, worker_failures):
        super().__init__("Training failed due to worker errors:\n" + error_message)
        self._error_message = error_message
        self.worker_failures = worker_failures

    def __reduce__(self):
        return (self.__class__, (self._error_message, self.worker_failures))


class ControllerError(TrainingFailedError):
    """The training controller itself failed (bad configuration found at run time, storage
    errors, resources that can never be had)."""

    def __init__(self, controller_failure):
        super().__init__("Training failed due to controller error:\n" + str(controller_failure))
        self.controller_failure = controller_failure

    def __reduce__(self):
        return (self.__class__, (self.controller_failure,))


class PreemptionError(TrainingFailedError):
    """Kept for Ray's name; mpiray handles the walltime signal by checkpointing and exiting."""
