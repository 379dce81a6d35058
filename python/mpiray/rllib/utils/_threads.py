"""One compute thread per env runner and learner process.

RL's arrays are small: OpenBLAS' thread pool (numpy) and torch's intra-op threads cost far more
than they give on them (a 512x64 matmul took 9 ms with OpenBLAS' threads on a loaded 2-core
node, 0.4 ms with one), and several runners per node would oversubscribe the cores.
``limit_threads(n)`` sets both, in a process that has already loaded numpy (the runtime's
workers have), through OpenBLAS' own ``*_set_num_threads`` entry points, as threadpoolctl does.
"""

import ctypes
import os

_done = {}


def _openblas_libs():
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def limit_threads(n=1, torch_too=True):
    """Cap OpenBLAS (numpy) and torch at ``n`` threads in this process (idempotent)."""
    n = max(1, int(n))
    if _done.get("n") == n and (_done.get("torch") or not torch_too):
        return
    for path in _openblas_libs():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                break
    if torch_too:
        try:
            import torch
            torch.set_num_threads(n)
        except Exception:
            pass
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    _done["n"] = n
    _done["torch"] = _done.get("torch") or torch_too
