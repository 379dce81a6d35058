"""The group behind the ucx, nccl and mpi backends: mpiray._collective (C++) does the work;
this class checks the tensors, lays out list arguments and runs the rendezvous."""

import os

from mpiray import _collective

from .. import _rendezvous, _tensors
from ..types import (AllGatherOptions, AllReduceOptions, BarrierOptions, BroadcastOptions, ReduceOp,
                     ReduceOptions, ReduceScatterOptions)
from .base_collective_group import BaseGroup

_OPS = {ReduceOp.SUM: 0, ReduceOp.PRODUCT: 1, ReduceOp.MIN: 2, ReduceOp.MAX: 3}


def _op_code(op):
    code = _OPS.get(op)
    if code is None:
        raise ValueError(f"unknown reduce op {op!r}; use mpiray.util.collective.ReduceOp.SUM/PRODUCT/MIN/MAX")
    return code


def _env_ms(name, default):
    v = os.environ.get(name)
    return int(v) if v else default


class NativeGroup(BaseGroup):
    """A group of one of the native backends (``_backend``: "ucx", "nccl", "mpi")."""

    _backend = None
    _device = "host"

    def __init__(self, world_size, rank, group_name, timeout_ms=None):
        super().__init__(world_size, rank, group_name)
        join_ms = _env_ms("MPIRAY_COLLECTIVE_JOIN_TIMEOUT_MS", 60000)
        self._rdv = _rendezvous.Rendezvous(group_name, world_size, rank, join_ms / 1000.0)
        self._g = _collective.create_group(
            group_name, world_size, rank, self._backend,
            -1 if timeout_ms is None else int(timeout_ms), join_ms, "", self._device_index(),
            self._rdv.join, self._rdv.exchange, self._rdv.leave)

    def _device_index(self):
        return -1

    @classmethod
    def backend(cls):
        return cls._backend

    @classmethod
    def check_backend_availability(cls) -> bool:
        return bool(_collective.backend_available(cls._backend)[0])

    @classmethod
    def unavailable_reason(cls):
        ok, why = _collective.backend_available(cls._backend)
        return "" if ok else why

    @property
    def incarnation(self):
        return self._g.incarnation

    def destroy_group(self):
        self._g.destroy()
        self._rdv.leave()

    # ------------------------------------------------------------------ helpers

    def _buf(self, t, what, writable=True):
        ptr, n, code = _tensors.buffer(t, writable=writable, what=what, device=self._device)
        self._prepare(t)
        return ptr, n, code

    def _prepare(self, t):
        """Hook: the nccl group points its communicator at the tensor's stream."""

    # ------------------------------------------------------------------ operations

    def allreduce(self, tensors, allreduce_options=AllReduceOptions()):
        self.allreduce_one(tensors[0], allreduce_options.reduceOp)

    def allreduce_one(self, tensor, op):
        code = _OPS.get(op)
        if code is not None and self._device == "host" and self._g.allreduce_array(tensor, code):
            return  # a numpy array, straight through the buffer protocol
        ptr, n, code = self._buf(tensor, "allreduce")
        self._g.allreduce(ptr, n, code, _op_code(op))

    def barrier(self, barrier_options=BarrierOptions()):
        self._g.barrier()

    def reduce(self, tensors, reduce_options=ReduceOptions()):
        ptr, n, code = self._buf(tensors[0], "reduce")
        self._g.reduce(ptr, n, code, int(reduce_options.root_rank), _op_code(reduce_options.reduceOp))

    def broadcast(self, tensors, broadcast_options=BroadcastOptions()):
        ptr, n, code = self._buf(tensors[0], "broadcast")
        self._g.broadcast(ptr, n, code, int(broadcast_options.root_rank))

    def allgather(self, tensor_lists, tensors, allgather_options=AllGatherOptions()):
        tensor, outs = tensors[0], tensor_lists[0]
        for i, o in enumerate(outs):
            if not _tensors.same_layout(o, tensor):
                raise ValueError(f"allgather: tensor_list[{i}] is {_tensors.describe(o)} but the tensor is "
                                 f"{_tensors.describe(tensor)}; every entry must have its shape and dtype")
        src, n, code = self._buf(tensor, "allgather", writable=False)
        gathered = _tensors.empty_like_stack(tensor, self.world_size)
        dst, _, _ = self._buf(gathered, "allgather")
        self._g.allgather(src, dst, n, code)
        for i, o in enumerate(outs):
            _tensors.copy_into(o, gathered[i])

    def reducescatter(self, tensors, tensor_lists, reducescatter_options=ReduceScatterOptions()):
        tensor, ins = tensors[0], tensor_lists[0]
        for i, t in enumerate(ins):
            if not _tensors.same_layout(t, tensor):
                raise ValueError(f"reducescatter: tensor_list[{i}] is {_tensors.describe(t)} but the tensor is "
                                 f"{_tensors.describe(tensor)}; every entry must have its shape and dtype")
        stacked = _tensors.stack(ins)
        src, _, _ = self._buf(stacked, "reducescatter", writable=False)
        dst, n, code = self._buf(tensor, "reducescatter")
        self._g.reducescatter(src, dst, n, code, _op_code(reducescatter_options.reduceOp))

    def send(self, tensors, send_options):
        ptr, n, code = self._buf(tensors[0], "send", writable=False)
        self._g.send(ptr, n, code, int(send_options.dst_rank))

    def recv(self, tensors, recv_options):
        ptr, n, code = self._buf(tensors[0], "recv")
        self._g.recv(ptr, n, code, int(recv_options.src_rank))
