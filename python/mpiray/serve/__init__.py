"""mpiray.serve: Ray Serve's Python API on mpiray actors (``ray.serve`` names).

Part A: deployments, handles, composition, streaming, batching, reconfigure, multiplexing,
health checks and replica restart. The native HTTP proxy, CLI, config files and autoscaling
come with part B (see docs/serve.md)."""

from .api import (delete, deployment, get_app_handle, get_deployment_handle, run, shutdown,
                  start, status)
from .batching import batch
from .context import get_multiplexed_model_id, get_replica_context
from .deployment import Application, Deployment
from .handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator
from .multiplex import multiplexed
from . import exceptions

__all__ = ["batch", "start", "get_replica_context", "shutdown", "deployment", "run", "delete",
           "Application", "Deployment", "multiplexed", "get_multiplexed_model_id", "status",
           "get_app_handle", "get_deployment_handle", "DeploymentHandle", "DeploymentResponse",
           "DeploymentResponseGenerator", "exceptions"]
