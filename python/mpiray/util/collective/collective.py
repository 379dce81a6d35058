"""The API of ``mpiray.util.collective`` (Ray's ``ray.util.collective.collective``).

Each process keeps its groups in a ``GroupManager``; a group is joined with
``init_collective_group`` inside an actor or task, or declared from the driver with
``create_collective_group`` and joined by each actor on its first collective call.
"""

import logging
import threading
from typing import Any, List

import mpiray as ray

from . import _rendezvous, _tensors, types
from .backend_registry import _global_registry, register_collective_backend
from .collective_group.mpi_collective_group import MPIGroup
from .collective_group.nccl_collective_group import NCCLGroup
from .collective_group.ucx_collective_group import UCXGroup

logger = logging.getLogger(__name__)

register_collective_backend("UCX", UCXGroup)
register_collective_backend("NCCL", NCCLGroup)
register_collective_backend("MPI", MPIGroup)
# Ray's host-memory backend names run on "ucx", so Ray programs that ask for gloo run unchanged.
_ALIASES = {"GLOO": "UCX", "TORCH_GLOO": "UCX"}


def ucx_available():
    return is_backend_available("UCX")


def nccl_available():
    return is_backend_available("NCCL")


def mpi_available():
    return is_backend_available("MPI")


def gloo_available():
    """Ray's "gloo" (host memory) is served by the "ucx" backend here."""
    return ucx_available()


def is_backend_available(backend: str) -> bool:
    """Whether ``backend`` is registered and can run in this process."""
    return _global_registry.check(_ALIASES.get(str(backend).upper(), backend))


def _backend_name(backend):
    if not isinstance(backend, str):
        raise ValueError(f"Unrecognized backend: {backend!r}")
    backend = _ALIASES.get(backend.upper(), backend)
    if not _global_registry.is_registered(backend):
        types.Backend(backend)  # raises the error that lists the backends
    return backend.upper()


def _owner():
    """Who a group belongs to in this process: the calling actor, else the calling task. (Ray
    keeps groups per process; an mpiray worker hosts many actors and runs several tasks at
    once, so several members of one group may share a process.)"""
    ctx = ray.get_runtime_context().get()
    actor = ctx.get("actor_id")
    return actor if actor is not None else ("task", ctx.get("task_id"))


class GroupManager:
    """The collective groups of this process, by name and owner (actor or task)."""

    def __init__(self):
        self._groups = {}       # name -> {owner: group}
        self._creating = set()  # (name, owner) being joined right now (outside the lock)
        self._registry = _global_registry

    def create_collective_group(self, backend, world_size, rank, group_name, timeout_ms=None, owner=None):
        """Join a group. Called without the manager's lock: joining waits for the other members,
        some of which may be actors in this same process."""
        owner = _owner() if owner is None else owner
        key = (group_name, owner)
        with _group_mgr_lock:
            if owner in self._groups.get(group_name, {}) or key in self._creating:
                raise RuntimeError("Trying to initialize a group a second time.")
            self._creating.add(key)
        try:
            g = self._create(backend, world_size, rank, group_name, timeout_ms)
            with _group_mgr_lock:
                self._groups.setdefault(group_name, {})[owner] = g
            return g
        finally:
            with _group_mgr_lock:
                self._creating.discard(key)

    def _create(self, backend, world_size, rank, group_name, timeout_ms):
        backend = _backend_name(backend)
        cls = self._registry.get(backend)
        if not cls.check_backend_availability():
            why = cls.unavailable_reason() if hasattr(cls, "unavailable_reason") else ""
            raise RuntimeError(f"Backend {backend.lower()} is not available in this process: "
                               f"{why or 'check the installation'}")
        if issubclass(cls, (UCXGroup, NCCLGroup, MPIGroup)):
            return cls(world_size, rank, group_name, timeout_ms)
        return cls(world_size, rank, group_name)

    def lookup(self, group_name, owner=None):
        by_owner = self._groups.get(group_name)
        if not by_owner:
            return None
        if owner is None and len(by_owner) == 1:
            # One member of this group in the process: it is the caller's (as in Ray, where a
            # group belongs to the process), without the cost of finding out who calls.
            return next(iter(by_owner.values()))
        return by_owner.get(_owner() if owner is None else owner)

    def is_group_exist(self, group_name):
        return self.lookup(group_name) is not None

    def get_group_by_name(self, group_name):
        g = self.lookup(group_name)
        if g is None:
            logger.warning("The group '%s' is not initialized.", group_name)
        return g

    def destroy_collective_group(self, group_name):
        owner = _owner()
        with _group_mgr_lock:
            g = self._groups.get(group_name, {}).pop(owner, None)
            if not self._groups.get(group_name, True):
                del self._groups[group_name]
        if g is None:
            logger.warning("The group '%s' does not exist.", group_name)
            return
        try:
            g.destroy_group()
        finally:
            # The declaration of create_collective_group goes with the group (as Ray kills
            # its info actor), so that the driver may declare the name again.
            _rendezvous.undeclare(group_name)


_group_mgr = GroupManager()
_group_mgr_lock = threading.Lock()


def is_group_initialized(group_name):
    """Whether the calling actor (or task) has joined group ``group_name``."""
    return _group_mgr.is_group_exist(group_name)


def _check_inside_actor():
    """Collectives run in actors and tasks (as in Ray), not on the driver."""
    ctx = ray.get_runtime_context()
    if ctx.get_task_id() is None and ctx.get_actor_id() is None:  # the driver
        raise RuntimeError("The collective APIs shall be only used inside a Ray actor or task.")


def init_collective_group(world_size: int, rank: int, backend=types.Backend.UCX,
                          group_name: str = "default", gloo_timeout: int = 30000, *,
                          timeout_ms: int = None):
    """Join collective group ``group_name`` as ``rank`` of ``world_size``, inside an actor or
    task; returns once every member has joined. ``backend``: "ucx" (default), "nccl", "mpi".
    ``timeout_ms``: how long one operation waits for the other members before it fails
    (default ``MPIRAY_COLLECTIVE_TIMEOUT_MS`` or 30 minutes). ``gloo_timeout`` is accepted
    for Ray compatibility and unused."""
    _check_inside_actor()
    if not group_name or not isinstance(group_name, str):
        raise ValueError("group_name '{}' needs to be a string.".format(group_name))
    if not isinstance(world_size, int) or world_size <= 0:
        raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
    _group_mgr.create_collective_group(backend, world_size, rank, group_name, timeout_ms)


def create_collective_group(actors: List[Any], world_size: int, ranks: List[int],
                            backend=types.Backend.UCX, group_name: str = "default",
                            gloo_timeout: int = 30000):
    """Declare ``actors`` (with ``ranks``) as collective group ``group_name``, from the driver;
    each actor joins on its first collective call of the group."""
    if len(ranks) != len(actors):
        raise RuntimeError("Each actor should correspond to one rank. Got '{}' ranks but '{}' "
                           "actors".format(len(ranks), len(actors)))
    if set(ranks) != set(range(len(ranks))):
        raise RuntimeError("Ranks must be a permutation from 0 to '{}'. Got '{}'.".format(
            len(ranks), "".join([str(r) for r in ranks])))
    if world_size <= 0:
        raise RuntimeError("World size must be greater than zero. Got '{}'.".format(world_size))
    if world_size != len(actors):
        raise RuntimeError(f"World size {world_size} does not match the {len(actors)} actors given")
    name = _backend_name(backend)
    ids = []
    for a in actors:
        if not isinstance(a, ray.ActorHandle):
            raise RuntimeError(f"create_collective_group expects actor handles, got {type(a).__name__}")
        ids.append(a._actor_id.binary())
    _rendezvous.declare(group_name, {"ids": ids, "world_size": world_size, "ranks": list(ranks),
                                     "backend": name})


def destroy_collective_group(group_name: str = "default") -> None:
    """Leave group ``group_name`` and free its resources (shared memory, endpoints,
    communicators). After a failure every member destroys the group; it can then be created
    again with the same name."""
    _check_inside_actor()
    _group_mgr.destroy_collective_group(group_name)


def get_rank(group_name: str = "default") -> int:
    """This process's rank in ``group_name``, or -1 if it has not joined it."""
    _check_inside_actor()
    g = _group_mgr.lookup(group_name)
    return -1 if g is None else g.rank


def get_collective_group_size(group_name: str = "default") -> int:
    """The size of ``group_name``, or -1 if this process has not joined it."""
    _check_inside_actor()
    g = _group_mgr.lookup(group_name)
    return -1 if g is None else g.world_size


def get_group_handle(group_name: str = "default"):
    """The group ``group_name`` of this process, joining a declared one on first use."""
    g = _group_mgr.lookup(group_name)  # a joined group (no lock needed to read)
    if g is not None:
        return g
    _check_inside_actor()
    info = _rendezvous.declaration(group_name)
    me_hex = ray.get_runtime_context().get_actor_id()
    me = bytes.fromhex(me_hex) if me_hex else None
    if info is not None and me is not None and me in info["ids"]:
        rank = info["ranks"][info["ids"].index(me)]
        return _group_mgr.create_collective_group(info["backend"], info["world_size"], rank, group_name)
    raise RuntimeError("The collective group '{}' is not initialized in the process.".format(group_name))


def _check_single_tensor_input(tensor):
    _tensors.check_tensor(tensor)


def _check_tensor_list_input(tensor_list):
    if not isinstance(tensor_list, list):
        raise RuntimeError("The input must be a list of tensors. Got '{}'.".format(type(tensor_list)))
    if not tensor_list:
        raise RuntimeError("Got an empty list of tensors.")
    for t in tensor_list:
        _check_single_tensor_input(t)


def _check_rank_valid(g, rank: int):
    if not isinstance(rank, int):
        raise ValueError(f"rank must be an integer, got {rank!r}")
    if rank < 0:
        raise ValueError("rank '{}' is negative.".format(rank))
    if rank >= g.world_size:
        raise ValueError("rank '{}' must be less than world size '{}'".format(rank, g.world_size))


def allreduce(tensor, group_name: str = "default", op=types.ReduceOp.SUM):
    """All-reduce ``tensor`` in place over the group."""
    by_owner = _group_mgr._groups.get(group_name)  # the hot path of get_group_handle, inline
    g = next(iter(by_owner.values())) if by_owner and len(by_owner) == 1 else get_group_handle(group_name)
    fast = getattr(g, "allreduce_one", None)
    if fast is not None:  # the native groups: no option objects on the hot path
        fast(tensor, op)
        return
    _check_single_tensor_input(tensor)
    opts = types.AllReduceOptions()
    opts.reduceOp = op
    g.allreduce([tensor], opts)


def barrier(group_name: str = "default"):
    """Return once every member of the group has called barrier."""
    g = get_group_handle(group_name)
    g.barrier()


def reduce(tensor, dst_rank: int = 0, group_name: str = "default", op=types.ReduceOp.SUM):
    """Reduce ``tensor`` over the group into ``dst_rank``'s tensor (the others' stay as they are)."""
    _check_single_tensor_input(tensor)
    g = get_group_handle(group_name)
    _check_rank_valid(g, dst_rank)
    opts = types.ReduceOptions()
    opts.reduceOp = op
    opts.root_rank = dst_rank
    opts.root_tensor = 0
    g.reduce([tensor], opts)


def broadcast(tensor, src_rank: int = 0, group_name: str = "default"):
    """Every member's ``tensor`` becomes ``src_rank``'s."""
    _check_single_tensor_input(tensor)
    g = get_group_handle(group_name)
    _check_rank_valid(g, src_rank)
    opts = types.BroadcastOptions()
    opts.root_rank = src_rank
    opts.root_tensor = 0
    g.broadcast([tensor], opts)


def allgather(tensor_list: list, tensor, group_name: str = "default"):
    """``tensor_list[r]`` becomes member r's ``tensor``, on every member."""
    _check_single_tensor_input(tensor)
    _check_tensor_list_input(tensor_list)
    g = get_group_handle(group_name)
    if len(tensor_list) != g.world_size:
        raise RuntimeError("The length of the tensor list operands to allgather must be equal to world_size.")
    g.allgather([tensor_list], [tensor], types.AllGatherOptions())


def reducescatter(tensor, tensor_list: list, group_name: str = "default", op=types.ReduceOp.SUM):
    """``tensor`` of member r becomes the reduction over members of their ``tensor_list[r]``."""
    _check_single_tensor_input(tensor)
    _check_tensor_list_input(tensor_list)
    g = get_group_handle(group_name)
    opts = types.ReduceScatterOptions()
    opts.reduceOp = op
    if len(tensor_list) != g.world_size:
        raise RuntimeError("The length of the tensor list operands to reducescatter must be equal to world_size.")
    g.reducescatter([tensor], [tensor_list], opts)


def send(tensor, dst_rank: int, group_name: str = "default"):
    """Send ``tensor`` to ``dst_rank`` (which calls recv with the same shape and dtype)."""
    _check_single_tensor_input(tensor)
    g = get_group_handle(group_name)
    _check_rank_valid(g, dst_rank)
    if dst_rank == g.rank:
        raise RuntimeError("The destination rank '{}' is self.".format(dst_rank))
    opts = types.SendOptions()
    opts.dst_rank = dst_rank
    g.send([tensor], opts)


def recv(tensor, src_rank: int, group_name: str = "default"):
    """Receive into ``tensor`` from ``src_rank``."""
    _check_single_tensor_input(tensor)
    g = get_group_handle(group_name)
    _check_rank_valid(g, src_rank)
    if src_rank == g.rank:
        raise RuntimeError("The destination rank '{}' is self.".format(src_rank))
    opts = types.RecvOptions()
    opts.src_rank = src_rank
    g.recv([tensor], opts)


def _multigpu(name):
    def f(*args, **kwargs):
        raise RuntimeError(f"{name} needs several GPUs per process with CuPy, which mpiray does not "
                           f"support; use one GPU per actor with the 'nccl' backend")
    f.__name__ = name
    return f


allreduce_multigpu = _multigpu("allreduce_multigpu")
reduce_multigpu = _multigpu("reduce_multigpu")
broadcast_multigpu = _multigpu("broadcast_multigpu")
allgather_multigpu = _multigpu("allgather_multigpu")
reducescatter_multigpu = _multigpu("reducescatter_multigpu")
send_multigpu = _multigpu("send_multigpu")
recv_multigpu = _multigpu("recv_multigpu")
