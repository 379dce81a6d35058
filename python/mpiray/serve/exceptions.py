"""Serve's exceptions (``ray.serve.exceptions`` names)."""

from mpiray.exceptions import RayError


class RayServeException(RayError):
    """A Serve API was used wrongly, or a deployment could not be reached."""


class BackPressureError(RayServeException):
    """A handle already holds ``max_queued_requests`` requests beyond its replicas' capacity."""

    def __init__(self, *, num_queued_requests=0, max_queued_requests=0, message=None):
        self.num_queued_requests = num_queued_requests
        self.max_queued_requests = max_queued_requests
        super().__init__(message or (
            f"Request dropped due to backpressure (num_queued_requests={num_queued_requests}, "
            f"max_queued_requests={max_queued_requests})."))


class DeploymentUnavailableError(RayServeException):
    """No live replica of a deployment could take the request."""


class RequestCancelledError(RayServeException):
    """The request was cancelled."""
