"""Collective communication among actors and tasks: Ray's ``ray.util.collective`` API.

    import mpiray as ray
    import mpiray.util.collective as col

    @ray.remote
    class Worker:
        def __init__(self, rank):
            col.init_collective_group(world_size=4, rank=rank, group_name="g")   # backend="ucx"
        def step(self, grads):
            col.allreduce(grads, group_name="g")    # numpy array or torch tensor, in place
            return grads

Backends: "ucx" (default; host memory: shared memory within a node, UCX between nodes),
"nccl" (CUDA tensors), "mpi" (the launcher's MPI, with ``mpiray.init(keep_mpi=True)``).
A member that dies makes the group's pending and later operations raise ``CollectiveError``
within about a second; destroy the group and create it again. See docs/collective.md.
"""

from mpiray._collective import CollectiveError

from .backend_registry import register_collective_backend
from .collective import (
    allgather, allgather_multigpu, allreduce, allreduce_multigpu, barrier, broadcast, broadcast_multigpu,
    create_collective_group, destroy_collective_group, get_collective_group_size, get_group_handle,
    get_rank, gloo_available, init_collective_group, is_backend_available, is_group_initialized,
    mpi_available, nccl_available, recv, recv_multigpu, reduce, reduce_multigpu, reducescatter,
    reducescatter_multigpu, send, send_multigpu, ucx_available,
)
from .types import Backend, ReduceOp

__all__ = [
    "nccl_available", "gloo_available", "ucx_available", "mpi_available", "is_backend_available",
    "is_group_initialized", "init_collective_group", "destroy_collective_group",
    "create_collective_group", "get_rank", "get_collective_group_size", "allreduce",
    "allreduce_multigpu", "barrier", "reduce", "reduce_multigpu", "broadcast", "broadcast_multigpu",
    "allgather", "allgather_multigpu", "reducescatter", "reducescatter_multigpu", "send",
    "send_multigpu", "recv", "recv_multigpu", "get_group_handle", "register_collective_backend",
    "Backend", "ReduceOp", "CollectiveError",
]
