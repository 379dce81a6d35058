"""Helpers for the training function (Ray's ``ray.train.torch`` utilities)."""

import logging
import os
import random

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset, RandomSampler, SequentialSampler

logger = logging.getLogger("mpiray.train")

_DEPRECATED = ("The `accelerate`, `backward`, and `prepare_optimizer` utility methods in the `ray.train.torch` module "
               "are deprecated and will be removed in a future release. Please use the native PyTorch mixed "
               "precision API directly, or a library such as Lightning or HuggingFace Transformers/Accelerate.")


def _context():
    from .. import get_context
    return get_context()


def get_devices():
    """The torch devices of this worker: its GPUs (``cuda:i`` in the worker's
    ``CUDA_VISIBLE_DEVICES``, which lists the GPUs of every worker of the node), else CPU."""
    if not torch.cuda.is_available():
        return [torch.device("cpu")]
    from .._session import current_session
    s = current_session()
    ctx = s.context() if s is not None else {}
    own = ctx.get("gpu_ids") or []
    if not own:
        return [torch.device(f"cuda:{torch.cuda.current_device()}")]
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    out = []
    for g in own:
        idx = visible.index(str(g)) if str(g) in visible else 0
        out.append(torch.device(f"cuda:{idx}"))
    return out


def get_device():
    """This worker's torch device (the first of :func:`get_devices`)."""
    return get_devices()[0]


def prepare_model(model, move_to_device=True, parallel_strategy="ddp", parallel_strategy_kwargs=None):
    """Move ``model`` to the worker's device and wrap it in ``DistributedDataParallel`` (when
    there are several workers). With ``TorchConfig(backend="mpiray")`` the DDP model
    all-reduces its gradients with mpiray's collectives."""
    if parallel_strategy not in ("ddp", "fsdp", None):
        raise ValueError(f"parallel_strategy must be 'ddp', 'fsdp' or None, got {parallel_strategy!r}")
    kwargs = dict(parallel_strategy_kwargs or {})
    ctx = _context()
    device = move_to_device if isinstance(move_to_device, torch.device) else get_device()
    if torch.cuda.is_available() and device.type == "cuda":
        torch.cuda.set_device(device)
    if move_to_device:
        model = model.to(device)
    if parallel_strategy and ctx.get_world_size() > 1:
        if parallel_strategy == "ddp":
            if torch.cuda.is_available() and device.type != "cpu":
                kwargs = {"device_ids": [device], "output_device": device, **kwargs}
            model = DistributedDataParallel(model, **kwargs)
            from .config import backend_in_use
            if backend_in_use() == "mpiray":
                from ._mpiray_hook import register_mpiray_hook
                register_mpiray_hook(model)
        else:
            if not torch.cuda.is_available():
                raise RuntimeError("FSDP is only available with GPU-enabled training. Set `use_gpu=True` in your "
                                   "Trainer to train with GPUs.")
            from torch.distributed.fsdp import FullyShardedDataParallel
            model = FullyShardedDataParallel(model, **kwargs)
    return model


class _WrappedDataLoader:
    """Moves each batch to the device (tensors, and tensors inside lists/tuples/dicts)."""

    def __init__(self, loader, device, auto_transfer):
        self._loader = loader
        self._device = device
        self._auto = auto_transfer and device.type == "cuda"

    def _move(self, item):
        if isinstance(item, torch.Tensor):
            return item.to(self._device, non_blocking=self._auto)
        if isinstance(item, (list, tuple)):
            return type(item)(self._move(i) for i in item)
        if isinstance(item, dict):
            return {k: self._move(v) for k, v in item.items()}
        return item

    def __len__(self):
        return len(self._loader)

    def __iter__(self):
        for batch in self._loader:
            yield self._move(batch)

    def __getattr__(self, name):
        return getattr(self._loader, name)


def prepare_data_loader(data_loader, add_dist_sampler=True, move_to_device=True, auto_transfer=True):
    """Give ``data_loader`` a ``DistributedSampler`` (each worker its part of the dataset;
    shuffled when the loader shuffled) and move its batches to the device. Call
    ``loader.sampler.set_epoch(epoch)`` each epoch for a new shuffle, as with plain DDP."""
    ctx = _context()
    ws, rank = ctx.get_world_size(), ctx.get_world_rank()
    if (ws > 1 and add_dist_sampler and not isinstance(data_loader.sampler, DistributedSampler)
            and not isinstance(getattr(data_loader, "dataset", None), IterableDataset)):
        loader = data_loader
        shuffle = not isinstance(loader.sampler, SequentialSampler)
        if not isinstance(loader.sampler, (SequentialSampler, RandomSampler)) and rank == 0:
            logger.warning("The %s will be overwritten with a DistributedSampler.", type(loader.sampler).__name__)
        data_loader = DataLoader(
            dataset=loader.dataset, batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
            collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
            timeout=loader.timeout, worker_init_fn=loader.worker_init_fn, generator=loader.generator,
            sampler=DistributedSampler(loader.dataset, num_replicas=ws, rank=rank, shuffle=shuffle))
    if move_to_device:
        data_loader = _WrappedDataLoader(data_loader, get_device(), auto_transfer)
    return data_loader


def enable_reproducibility(seed=0):
    """Seed torch, Python and numpy; deterministic algorithms; no cuDNN benchmarking."""
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"


def accelerate(amp=False):
    raise DeprecationWarning(_DEPRECATED)


def prepare_optimizer(optimizer):
    raise DeprecationWarning(_DEPRECATED)


def backward(tensor):
    raise DeprecationWarning(_DEPRECATED)
