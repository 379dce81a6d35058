"""What ``serve.status()`` returns (Ray's ``ServeStatus`` shape and status names)."""

from dataclasses import dataclass, field
from enum import Enum
from typing import Dict


class ApplicationStatus(str, Enum):
    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"

    def __str__(self):
        return self.value


class DeploymentStatus(str, Enum):
    UPDATING = "UPDATING"
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    UPSCALING = "UPSCALING"
    DOWNSCALING = "DOWNSCALING"

    def __str__(self):
        return self.value


class ReplicaState(str, Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"

    def __str__(self):
        return self.value


@dataclass
class DeploymentStatusOverview:
    """One deployment's state: status, a message (a traceback when it failed) and the count
    of replicas in each state."""

    status: DeploymentStatus
    status_trigger: str = ""
    replica_states: Dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass
class ApplicationStatusOverview:
    status: ApplicationStatus
    message: str = ""
    last_deployed_time_s: float = 0.0
    deployments: Dict[str, DeploymentStatusOverview] = field(default_factory=dict)
    route_prefix: str = None


@dataclass
class ServeStatus:
    """``serve.status()``: every application by name (``proxies`` is empty until the native
    HTTP proxy of part B)."""

    proxies: Dict[str, str] = field(default_factory=dict)
    applications: Dict[str, ApplicationStatusOverview] = field(default_factory=dict)
    target_capacity: float = None


def _status_from_dict(d):
    """Builds a ServeStatus from the controller's plain-dict answer."""
    apps = {}
    for name, a in d.items():
        deps = {dn: DeploymentStatusOverview(status=DeploymentStatus(x["status"]),
                                             status_trigger=x.get("status_trigger", ""),
                                             replica_states=dict(x.get("replica_states", {})),
                                             message=x.get("message", ""))
                for dn, x in a["deployments"].items()}
        apps[name] = ApplicationStatusOverview(status=ApplicationStatus(a["status"]),
                                               message=a.get("message", ""),
                                               last_deployed_time_s=a.get("last_deployed_time_s", 0.0),
                                               deployments=deps,
                                               route_prefix=a.get("route_prefix"))
    return ServeStatus(applications=apps)
