"""mpiray.air (Ray's ``ray.air``): the config names and the logger integrations."""

from ..train._config import CheckpointConfig, FailureConfig, RunConfig
from ..train._result import Result

__all__ = ["CheckpointConfig", "FailureConfig", "RunConfig", "Result"]
