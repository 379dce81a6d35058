"""mpiray.serve: Ray Serve's Python API on mpiray actors (``ray.serve`` names).

Deployments, handles, composition, streaming, batching, reconfigure, multiplexing, health
checks and replica restart; HTTP through a native proxy (libs/serve) in the driver, FastAPI
ingress, autoscaling, the ``mpiray serve`` CLI and config files (see docs/serve.md)."""

from .api import (delete, deployment, get_app_handle, get_deployment_handle, ingress, run,
                  shutdown, start, status)
from .batching import batch
from .context import get_multiplexed_model_id, get_replica_context
from .deployment import Application, Deployment
from .handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator
from .multiplex import multiplexed
from . import exceptions

__all__ = ["ingress", "batch", "start", "get_replica_context", "shutdown", "deployment", "run", "delete",
           "Application", "Deployment", "multiplexed", "get_multiplexed_model_id", "status",
           "get_app_handle", "get_deployment_handle", "DeploymentHandle", "DeploymentResponse",
           "DeploymentResponseGenerator", "exceptions"]
