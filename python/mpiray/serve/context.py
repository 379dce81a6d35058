"""Per-replica and per-request context (``serve.get_replica_context``,
``serve.get_multiplexed_model_id``).

A worker process may host several replicas (of one or many deployments), so the context is
kept in ``contextvars`` that the replica sets around its constructor and every request, not in
process globals."""

import contextvars
from dataclasses import dataclass, field
from typing import Any, Optional

from .exceptions import RayServeException


@dataclass(frozen=True)
class DeploymentID:
    """A deployment inside an application."""

    name: str
    app_name: str = "default"


@dataclass(frozen=True)
class ReplicaID:
    """One replica of a deployment."""

    unique_id: str
    deployment_id: DeploymentID

    def to_full_id_str(self):
        return f"{self.deployment_id.app_name}#{self.deployment_id.name}#{self.unique_id}"


@dataclass
class ReplicaContext:
    """What a replica knows about itself (``serve.get_replica_context()``)."""

    replica_id: ReplicaID
    servable_object: Any = None
    rank: int = 0
    world_size: int = 1
    _user_config: Any = field(default=None, repr=False)

    @property
    def app_name(self):
        return self.replica_id.deployment_id.app_name

    @property
    def deployment(self):
        return self.replica_id.deployment_id.name

    @property
    def replica_tag(self):
        return self.replica_id.unique_id


@dataclass
class RequestContext:
    """Per-request metadata the replica sets while a request runs."""

    request_id: str = ""
    multiplexed_model_id: str = ""
    app_name: str = ""
    route: str = ""


_replica_ctx: contextvars.ContextVar[Optional[ReplicaContext]] = contextvars.ContextVar(
    "mpiray_serve_replica_context", default=None)
_request_ctx: contextvars.ContextVar[RequestContext] = contextvars.ContextVar(
    "mpiray_serve_request_context", default=RequestContext())


def _get_internal_replica_context():
    return _replica_ctx.get()


def get_replica_context() -> ReplicaContext:
    """The context of the replica whose code calls it (constructor or request)."""
    ctx = _replica_ctx.get()
    if ctx is None:
        raise RayServeException(
            "`serve.get_replica_context()` may only be called from within a Serve deployment "
            "(a replica's constructor or one of its requests).")
    return ctx


def get_multiplexed_model_id() -> str:
    """The model id the current request was sent with (handle
    ``.options(multiplexed_model_id=...)``), or "" if none."""
    return _request_ctx.get().multiplexed_model_id
