"""Types of ``mpiray.util.collective`` (Ray's ``ray.util.collective.types``)."""

from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import importlib.util
import sys


def torch_available():
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def torch_module():
    """torch if the program imported it (a torch tensor implies it); never imports it."""
    return sys.modules.get("torch")


def cupy_available():
    """CuPy arrays are not supported (CUDA tensors are torch tensors here)."""
    return False


class Backend(object):
    """Backend names. ``UCX`` (the default) runs on host memory: shared memory within a node,
    UCX between nodes. ``NCCL`` runs on CUDA tensors. ``MPI`` uses the launcher's MPI and needs
    a launch that keeps MPI alive (``mpiray.init(keep_mpi=True)``)."""

    UCX = "ucx"
    NCCL = "nccl"
    MPI = "mpi"
    GLOO = "ucx"  # Ray's host-memory backend: served by "ucx"
    UNRECOGNIZED = "unrecognized"

    def __new__(cls, name: str):
        from .backend_registry import _global_registry

        if not isinstance(name, str):
            raise ValueError(f"Unrecognized backend: {name!r}. A backend is a name: "
                             f"{sorted(_global_registry.names())}")
        key = name.upper()
        if key in ("GLOO", "TORCH_GLOO"):
            return Backend.UCX
        if key in _global_registry.names():
            return getattr(Backend, key, name.lower())
        raise ValueError(f"Unrecognized backend: '{name}'. The backends are "
                         f"{sorted(n.lower() for n in _global_registry.names())} ('ucx' is the default; "
                         f"Ray's 'gloo' is accepted and runs on 'ucx')")


class ReduceOp(Enum):
    SUM = 0
    PRODUCT = 1
    MIN = 2
    MAX = 3


unset_timeout_ms = timedelta(milliseconds=-1)


@dataclass
class AllReduceOptions:
    reduceOp = ReduceOp.SUM
    timeout_ms = unset_timeout_ms


@dataclass
class BarrierOptions:
    timeout_ms = unset_timeout_ms


@dataclass
class ReduceOptions:
    reduceOp = ReduceOp.SUM
    root_rank = 0
    root_tensor = 0
    timeout_ms = unset_timeout_ms


@dataclass
class AllGatherOptions:
    timeout_ms = unset_timeout_ms


@dataclass
class BroadcastOptions:
    root_rank = 0
    root_tensor = 0
    timeout_ms = unset_timeout_ms


@dataclass
class ReduceScatterOptions:
    reduceOp = ReduceOp.SUM
    timeout_ms = unset_timeout_ms


@dataclass
class SendOptions:
    dst_rank = 0
    dst_gpu_index = 0
    n_elements = 0
    timeout_ms = unset_timeout_ms


@dataclass
class RecvOptions:
    src_rank = 0
    src_gpu_index = 0
    n_elements = 0
    unset_timeout_ms = unset_timeout_ms
