"""The "nccl" backend: CUDA tensors (torch), NCCL and the CUDA runtime loaded at run time from
the nvidia-* wheels torch brings (or a system install). The NCCL unique id travels through the
group's rendezvous. Operations run on the tensor's current torch stream and return when done
(as Ray's NCCL groups)."""

import os

from mpiray import _collective

from .. import _tensors
from ..types import torch_module
from ._native_group import NativeGroup

_paths_set = False


def _wheel_library_dirs():
    """lib directories of the nvidia-* wheels (nccl, cuda runtime) that are installed."""
    dirs = []
    try:
        import nvidia  # namespace package of the wheels
    except ImportError:
        return dirs
    for base in list(getattr(nvidia, "__path__", [])):
        for sub in sorted(os.listdir(base)):
            lib = os.path.join(base, sub, "lib")
            if os.path.isdir(lib):
                dirs.append(lib)
    return dirs


def _set_library_paths():
    global _paths_set
    if not _paths_set:
        _collective.set_library_paths(_wheel_library_dirs())
        _paths_set = True


class NCCLGroup(NativeGroup):
    _backend = "nccl"
    _device = "cuda"

    def __init__(self, world_size, rank, group_name, timeout_ms=None):
        _set_library_paths()
        super().__init__(world_size, rank, group_name, timeout_ms)

    @classmethod
    def check_backend_availability(cls) -> bool:
        _set_library_paths()
        return super().check_backend_availability()

    @classmethod
    def unavailable_reason(cls):
        _set_library_paths()
        return super().unavailable_reason()

    def _device_index(self):
        th = torch_module()
        if th is not None and th.cuda.is_available():
            return th.cuda.current_device()
        return -1

    def _prepare(self, t):
        if _tensors.is_cuda(t):
            th = torch_module()
            self._g.set_cuda_stream(th.cuda.current_stream(t.device).cuda_stream)
