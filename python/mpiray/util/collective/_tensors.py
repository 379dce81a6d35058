"""Tensors as the native layer sees them: (address, element count, dtype code), in place."""

import numpy as np

from .types import torch_module

# Codes of mpiray::kernels::DType.
_NUMPY_CODES = {np.dtype(np.float16): 0, np.dtype(np.float32): 2, np.dtype(np.float64): 3,
                np.dtype(np.int32): 4, np.dtype(np.int64): 5, np.dtype(np.uint8): 6}
_TORCH_NAMES = {"float16": 0, "bfloat16": 1, "float32": 2, "float64": 3, "int32": 4, "int64": 5,
                "uint8": 6}

SUPPORTED = "float16, bfloat16 (torch), float32, float64, int32, int64, uint8"


def is_torch(t):
    th = torch_module()
    return th is not None and isinstance(t, th.Tensor)


def check_tensor(t, what="tensor"):
    if isinstance(t, np.ndarray) or is_torch(t):
        return
    raise RuntimeError(f"Unrecognized tensor type '{type(t)}' for {what}. Supported types are: "
                       "np.ndarray, torch.Tensor.")


def is_cuda(t):
    return is_torch(t) and t.device.type == "cuda"


def buffer(t, *, writable, what, device="host"):
    """(address, element count, dtype code) of tensor ``t``, which must be contiguous (and
    writeable when ``writable``); ``device`` is "host" (ucx, mpi) or "cuda" (nccl)."""
    if type(t) is np.ndarray and device == "host":  # the hot path
        code = _NUMPY_CODES.get(t.dtype)
        flags = t.flags
        if code is not None and flags.c_contiguous and (flags.writeable or not writable):
            return t.__array_interface__["data"][0], t.size, code
    if isinstance(t, np.ndarray):
        if device == "cuda":
            raise ValueError(f"{what}: the nccl backend needs CUDA tensors (torch, device='cuda'), "
                             f"got a numpy array")
        code = _NUMPY_CODES.get(t.dtype)
        if code is None and t.dtype.name == "bfloat16":  # ml_dtypes' bfloat16
            code = 1
        if code is None:
            raise TypeError(f"{what}: unsupported dtype {t.dtype}; supported: {SUPPORTED}")
        if not t.flags.c_contiguous:
            raise ValueError(f"{what}: the array must be C-contiguous (use np.ascontiguousarray)")
        if writable and not t.flags.writeable:
            raise ValueError(f"{what}: the array is read-only, and the result is written into it in place")
        return t.__array_interface__["data"][0], t.size, code
    if is_torch(t):
        code = _TORCH_NAMES.get(str(t.dtype).replace("torch.", ""))
        if code is None:
            raise TypeError(f"{what}: unsupported dtype {t.dtype}; supported: {SUPPORTED}")
        if device == "host" and t.device.type != "cpu":
            raise ValueError(f"{what}: this backend works on host memory, got a tensor on {t.device} "
                             f"(use backend='nccl' for CUDA tensors, or .cpu())")
        if device == "cuda" and t.device.type != "cuda":
            raise ValueError(f"{what}: the nccl backend needs CUDA tensors, got a tensor on {t.device}")
        if not t.is_contiguous():
            raise ValueError(f"{what}: the tensor must be contiguous (use .contiguous())")
        return t.data_ptr(), t.numel(), code
    check_tensor(t, what)
    raise AssertionError("unreachable")


def same_layout(a, b):
    """Same type, dtype and shape."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape
    if is_torch(a) and is_torch(b):
        return a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) and a.device == b.device
    return False


def describe(t):
    return f"{type(t).__name__}(shape={tuple(t.shape)}, dtype={t.dtype})"


def empty_like_stack(t, n):
    """A contiguous tensor of n blocks shaped like t (same kind, dtype, device)."""
    if isinstance(t, np.ndarray):
        return np.empty((n,) + t.shape, dtype=t.dtype)
    return torch_module().empty((n,) + tuple(t.shape), dtype=t.dtype, device=t.device)


def stack(ts):
    if isinstance(ts[0], np.ndarray):
        return np.ascontiguousarray(np.stack(ts))
    return torch_module().stack(list(ts)).contiguous()


def copy_into(dst, src):
    """dst[...] = src, in place."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src.reshape(dst.shape))
    else:
        dst.copy_(src.reshape(dst.shape))
