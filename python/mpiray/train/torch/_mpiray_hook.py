"""The DDP communication hook of ``TorchConfig(backend="mpiray")``: gradient buckets are
all-reduced with ``mpiray.util.collective`` (backend "ucx": shared memory within a node, UCX
between nodes) instead of gloo.

DDP hands a bucket to the hook as soon as its gradients are ready, while the backward pass
goes on. The hook queues the bucket for one communication thread per process (one thread
keeps every rank's collectives in the same order) and returns a future; the thread
all-reduces the bucket in place, divides it by the world size and completes the future, and
DDP waits for all futures at the end of the backward pass: communication overlaps
computation as with gloo.

Use it by hand: ``model.register_comm_hook(None, mpiray_allreduce_hook)`` on a DDP model
inside a worker of a ``TorchConfig(backend="mpiray")`` run (``prepare_model`` does it).
"""

import queue
import threading

import torch

_states = []
_lock = threading.Lock()
_buckets = [0]   # buckets all-reduced by this process (tests, benchmarks)


def allreduced_buckets():
    """How many gradient buckets this process has all-reduced through the hook."""
    return _buckets[0]


class _HookState:
    def __init__(self, group_name, world_size):
        self.group_name = group_name
        self.world_size = world_size
        self.q = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="mpiray-ddp-allreduce")
        self.thread.start()

    def _run(self):
        import mpiray.util.collective as col
        while True:
            item = self.q.get()
            if item is None:
                return
            buf, fut = item
            try:
                if self.error is not None:
                    raise self.error
                col.allreduce(buf, group_name=self.group_name)
                buf.div_(self.world_size)
                _buckets[0] += 1
                fut.set_result(buf)
            except BaseException as e:  # a dead peer: every later bucket fails at once
                self.error = e if isinstance(e, Exception) else RuntimeError(str(e))
                fut.set_exception(self.error)

    def stop(self):
        self.q.put(None)


def _default_state():
    from .config import mpiray_group_name
    import torch.distributed as dist
    name = mpiray_group_name()
    if name is None:
        raise RuntimeError("mpiray_allreduce_hook needs a worker of a TorchConfig(backend='mpiray') run")
    st = _HookState(name, dist.get_world_size())
    with _lock:
        _states.append(st)
    return st


def mpiray_allreduce_hook(state, bucket):
    """DDP comm hook: average the bucket over the workers with mpiray's collectives."""
    if state is None:
        state = getattr(mpiray_allreduce_hook, "_state", None)
        if state is None:
            state = mpiray_allreduce_hook._state = _default_state()
    buf = bucket.buffer()
    fut = torch.futures.Future()
    if buf.device.type != "cpu":
        # CUDA tensors: all-reduce a host copy (the nccl backend is the GPU path)
        host = buf.detach().to("cpu")
        inner = torch.futures.Future()
        state.q.put((host, inner))
        return inner.then(lambda f: buf.copy_(f.value()))
    state.q.put((buf, fut))
    return fut


def register_mpiray_hook(model):
    st = _default_state()
    model.register_comm_hook(st, mpiray_allreduce_hook)
    return st


def stop_hook_threads():
    with _lock:
        states = list(_states)
        _states.clear()
    for st in states:
        st.stop()
    mpiray_allreduce_hook._state = None
