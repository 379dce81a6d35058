"""mpiray: Ray's API on an MPI/UCX runtime for supercomputers.

    import mpiray as ray

    @ray.remote
    def square(x):
        return x * x

    ray.init()        # under mpirun/srun: rank 0 returns, other ranks serve as workers
    print(ray.get([square.remote(i) for i in range(10)]))
"""

import os as _os

# Using the build tree without installing: the extension lives in <build>/python/mpiray.
_build = _os.environ.get("MPIRAY_BUILD_DIR") or _os.path.join(_os.path.dirname(__file__), "..", "..", "build")
_ext_dir = _os.path.abspath(_os.path.join(_build, "python", "mpiray"))
if _os.path.isdir(_ext_dir) and _ext_dir not in __path__:
    __path__.append(_ext_dir)

# The extension; when a system library it needs (MPI, UCX, ...) is missing, a stand-in whose
# first use raises an error naming the library (_native.py), so that the import still works.
from ._native import load_core as _load_core  # noqa: E402

_load_core()

from . import exceptions, runtime_env  # noqa: E402
from ._api import (  # noqa: E402
    ActorClass, ActorHandle, ActorID, ObjectRef, RemoteFunction, RuntimeContext, available_resources,
    cancel, cluster_resources, cpp_function, get, get_actor, get_gpu_ids, get_runtime_context, init,
    is_initialized, kill, method, nodes, put, register_checkpoint_callback, remote, shutdown, wait,
)
from ._api import (  # noqa: E402
    BaseID, DynamicObjectRefGenerator, JobID, NodeID, ObjectRefGenerator, RayContext, TaskID,
)
from . import actor, util  # noqa: E402  (ray.actor.exit_actor; ray.util: placement groups, ActorPool, ...)
from .util.placement_group import PlacementGroupID  # noqa: E402

# Ray's other top-level names.
ObjectID = ObjectRef  # Ray's older name of ObjectRef
SCRIPT_MODE, WORKER_MODE, LOCAL_MODE = 0, 1, 2


class UniqueID(BaseID):
    pass


class WorkerID(BaseID):
    pass


class FunctionID(BaseID):
    pass


class ActorClassID(BaseID):
    pass


def show_in_dashboard(message, key="", dtype="text"):
    """Ray's dashboard message for the calling actor: mpiray has no dashboard (ignored)."""


def __getattr__(name):
    if name == "cloudpickle":  # ray.cloudpickle without `import ray.cloudpickle`
        import importlib
        return importlib.import_module(f"{__name__}.cloudpickle")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "init", "shutdown", "is_initialized", "remote", "get", "put", "wait", "cancel", "kill",
    "get_actor", "get_gpu_ids", "method", "nodes", "cluster_resources", "available_resources",
    "get_runtime_context", "cpp_function", "ObjectRef", "ActorHandle", "ActorClass",
    "RemoteFunction", "RuntimeContext", "ActorID", "exceptions", "register_checkpoint_callback",
    "actor", "util", "runtime_env", "ObjectID", "JobID", "NodeID", "TaskID", "PlacementGroupID",
    "UniqueID", "WorkerID", "FunctionID", "ActorClassID", "ObjectRefGenerator",
    "DynamicObjectRefGenerator", "RayContext", "SCRIPT_MODE", "WORKER_MODE", "LOCAL_MODE",
    "show_in_dashboard",
]
