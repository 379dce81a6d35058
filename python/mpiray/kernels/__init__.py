"""mpiray.kernels: native Kokkos kernels for the libraries (libs/kernels).

    from mpiray.kernels import gae, discounted_returns, reduce_into, backend
    from mpiray.kernels.envs import make_vec      # batched classic control (needs gymnasium)

Arrays cross into C++ without copies when they already have the kernel's dtype and C order
(numpy arrays, and anything numpy reads through the buffer protocol or DLPack, e.g. CPU torch
tensors); the GIL is released while a kernel runs. ``import mpiray`` does not load this
module; ``import mpiray.kernels`` needs the native module ``mpiray._kernels`` (built with the
package by ``make build`` / ``pip install .``).
"""

import numpy as _np

try:
    from .. import _kernels
except ImportError as _e:  # pragma: no cover - depends on the build
    raise ImportError(
        "mpiray.kernels needs the native module mpiray._kernels, which this mpiray build lacks "
        "(it is built from libs/kernels by `make build` or `pip install .`; set MPIRAY_BUILD_DIR "
        "when using a build tree): " + str(_e)) from _e

__all__ = ["backend", "uses_kokkos", "reduce_into", "gae", "discounted_returns", "envs"]


def backend():
    """What runs the kernels, e.g. ``"Kokkos 3.4.1 Serial"`` or ``"plain C++ (no Kokkos)"``."""
    return _kernels.backend()


def uses_kokkos():
    """True when the kernels run through Kokkos."""
    return _kernels.uses_kokkos()


def _as_array(x):
    """A numpy view of ``x`` (no copy for numpy arrays, buffer-protocol objects and DLPack
    tensors on the CPU); returns (array, is_bfloat16)."""
    if isinstance(x, _np.ndarray):
        if x.dtype.name == "bfloat16":  # ml_dtypes
            return x.view(_np.uint16), True
        return x, False
    dtype = getattr(x, "dtype", None)
    if dtype is not None and str(dtype) == "torch.bfloat16":
        import torch
        return _np.from_dlpack(x.view(torch.int16)), True
    if hasattr(x, "__dlpack__"):
        return _np.from_dlpack(x), False
    return _np.asarray(x), False


def reduce_into(dst, src, op="sum"):
    """``dst = op(dst, src)`` elementwise and in place, with the collectives' Kokkos kernel.

    ``op`` is ``"sum"``, ``"product"``, ``"min"`` or ``"max"`` (NaN-propagating, as
    numpy.minimum/maximum); dtypes float16, bfloat16 (torch or ml_dtypes), float32, float64,
    int32, int64, uint8; integers wrap around. Returns ``dst``.
    """
    d, bf = _as_array(dst)
    s, _ = _as_array(src)
    if bf and s.dtype != d.dtype:
        s = s.view(d.dtype)
    _kernels.reduce_into(str(op).lower(), d, s, bf)
    return dst


def gae(rewards, values, terminated=None, truncated=None, *, bootstrap_values=None,
        final_values=None, gamma=0.99, lambda_=0.95):
    """Generalized advantage estimation over a time-major ``[T, N]`` rollout.

    Returns ``(advantages, value_targets)`` (float32, or float64 when rewards and values are).
    ``terminated``/``truncated`` are ``[T, N]`` booleans. At a termination nothing is
    bootstrapped; at a truncation the value of the state after it is, and the recursion stops
    (as RLlib's ``compute_value_targets``). That value is ``final_values[t, n]`` when given,
    else ``values[t + 1, n]`` (a NEXT_STEP-autoreset vector env's layout: the row after the
    last step holds the final observation), else ``bootstrap_values[n]`` at the last row.
    ``bootstrap_values`` (``[N]``) is V of the observation after the last row (0 if None).
    """
    return _kernels.gae(rewards, values, terminated, truncated, bootstrap_values, final_values,
                        float(gamma), float(lambda_))


def discounted_returns(rewards, terminated=None, truncated=None, *, gamma=0.99,
                       bootstrap_values=None, values=None, final_values=None):
    """Discounted returns per episode over a time-major ``[T, N]`` rollout.

    ``G_t = r_t + gamma * G_{t+1}`` within an episode; 0 follows a termination; after a
    truncation the value of the next state follows (``final_values``, else ``values[t + 1]``
    when ``values`` is given, else 0); ``bootstrap_values`` (``[N]``) follows the last row.
    """
    return _kernels.discounted_returns(rewards, terminated, truncated, float(gamma),
                                       bootstrap_values, values, final_values)


def __getattr__(name):
    # mpiray.kernels.envs needs gymnasium: imported on first use only.
    if name == "envs":
        import importlib
        return importlib.import_module(".envs", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
