"""``TorchConfig`` and the torch backend: one torch.distributed process group per worker
group.

Rendezvous goes through the head: rank 0 opens a ``TCPStore`` on a port the kernel picks
(port 0), its address reaches the other workers through the controller, and every rank calls
``init_process_group(store=...)``. No fixed ``MASTER_PORT``, so any number of jobs (or runs of
one job) share a node without colliding. ``MASTER_ADDR``/``MASTER_PORT`` are still set in the
workers for code that reads them.

``backend="mpiray"``: the process group is gloo (DDP's parameter broadcast and buffers), and
``prepare_model`` registers a DDP communication hook that all-reduces the gradient buckets
with ``mpiray.util.collective`` (shared memory within a node, UCX between nodes) on a
background thread, so communication overlaps the backward pass as gloo's does.
"""

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Optional

from ..backend import Backend, BackendConfig

logger = logging.getLogger("mpiray.train")

_state = {}   # per worker process: the rank-0 store, the mpiray collective group name


class TorchConfigContextManager:
    """Runs around the training function: sets the default CUDA device."""

    def __enter__(self):
        try:
            import torch
            if torch.cuda.is_available():
                from .train_loop_utils import get_device
                d = get_device()
                if d.type == "cuda":
                    torch.cuda.set_device(d)
        except Exception:
            pass

    def __exit__(self, *exc):
        return False


@dataclass
class TorchConfig(BackendConfig):
    """backend: "gloo" (CPU default), "nccl" (GPU default), "mpiray" (gloo process group +
    mpiray's collectives for the gradients), or any torch.distributed backend string.
    init_method: "env" (accepted; rendezvous always goes through the head's store).
    timeout_s: the process group's timeout."""

    backend: Optional[str] = None
    init_method: str = "env"
    timeout_s: int = 1800

    def __post_init__(self):
        if self.init_method not in ("env", "tcp"):
            raise ValueError(f"TorchConfig(init_method={self.init_method!r}) must be 'env' or 'tcp'")
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise ValueError(f"TorchConfig(timeout_s={self.timeout_s!r}) must be a positive number")

    @property
    def backend_cls(self):
        return _TorchBackend

    @property
    def train_func_context(self):
        return TorchConfigContextManager

    @property
    def framework(self):
        return "torch"

    def to_dict(self):
        return {"backend": self.backend, "init_method": self.init_method, "timeout_s": self.timeout_s}


def _resolve_backend(config, use_gpu):
    b = config.backend
    if b is None:
        return "nccl" if use_gpu else "gloo"
    return b


# ---------------------------------------------------------------- functions run in the workers
def _import_torch():
    import torch.distributed  # noqa: F401
    return True


def _open_store(addr, world_size, timeout_s):
    import torch.distributed as dist
    store = dist.TCPStore(addr, 0, world_size, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=timeout_s))
    _state["store"] = store
    return addr, store.port


def _init_process_group(backend, addr, port, rank, world_size, timeout_s, run_key):
    import torch
    import torch.distributed as dist
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))
    if dist.is_initialized():
        raise RuntimeError("a torch.distributed process group already exists in this worker process")
    if backend == "nccl" or (backend and "nccl" in backend):
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    store = _state.get("store") if rank == 0 else None
    if store is None:
        store = dist.TCPStore(addr, port, world_size, is_master=False,
                              timeout=datetime.timedelta(seconds=timeout_s))
        _state["store"] = store
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)
    pg_backend = "gloo" if backend == "mpiray" else backend
    dist.init_process_group(backend=pg_backend, store=dist.PrefixStore(run_key, store), rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s))
    _state["backend"] = backend
    return True


def _init_mpiray_group(world_size, rank, group_name):
    import mpiray.util.collective as col
    col.init_collective_group(world_size, rank, backend="ucx", group_name=group_name)
    _state["col_group"] = group_name
    return True


def _shutdown_torch():
    try:
        from ._mpiray_hook import stop_hook_threads
        stop_hook_threads()
    except Exception:
        pass
    g = _state.pop("col_group", None)
    if g is not None:
        try:
            import mpiray.util.collective as col
            col.destroy_collective_group(g)
        except Exception:
            pass
    try:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:
        pass
    _state.pop("store", None)
    _state.pop("backend", None)
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:
        pass


def backend_in_use():
    """The TorchConfig backend of this worker's process group ("gloo", "nccl", "mpiray"), or None."""
    return _state.get("backend")


def mpiray_group_name():
    return _state.get("col_group")


class _TorchBackend(Backend):
    share_cuda_visible_devices = True

    def on_start(self, worker_group, backend_config):
        worker_group.shutdown_fns.append(_shutdown_torch)
        n = len(worker_group)
        use_gpu = any(inf.get("gpu_ids") for inf in worker_group.infos)
        backend = _resolve_backend(backend_config, use_gpu)
        if backend in ("nccl",) and not use_gpu:
            raise ValueError("TorchConfig(backend='nccl') needs GPUs: set ScalingConfig(use_gpu=True)")
        # every worker imports torch at once (rank 0's store would otherwise import it alone first)
        import mpiray
        warm = worker_group.execute_async(_import_torch)
        addr = worker_group.infos[0]["ip"]
        addr, port = worker_group.execute_single(0, _open_store, addr, n, backend_config.timeout_s)
        mpiray.get(warm)
        run_key = f"mpiray-train/{worker_group.run_id}/{worker_group.generation}/"
        refs = [a.execute.remote(_init_process_group, backend, addr, port, rank, n, backend_config.timeout_s,
                                 run_key)
                for rank, a in enumerate(worker_group.actors)]
        mpiray.get(refs)
        if backend == "mpiray":
            name = f"mpiray-train-{worker_group.run_id}-{worker_group.generation}"
            mpiray.get([a.execute.remote(_init_mpiray_group, n, rank, name)
                        for rank, a in enumerate(worker_group.actors)])

    def on_shutdown(self, worker_group, backend_config):
        pass  # _shutdown_torch runs in each worker once its loop has ended (WorkerGroup.shutdown)
