"""Ray's ``ray.util`` utilities on mpiray.

* ``ActorPool`` (``mpiray.util.actor_pool``): schedule work over a fixed set of actors.
* ``mpiray.util.queue``: ``Queue``, ``Empty``, ``Full``: a FIFO queue shared by the driver,
  tasks and actors.
* ``mpiray.util.multiprocessing``: ``Pool``, a drop-in for ``multiprocessing.Pool`` that runs
  on actors.

``queue`` and ``multiprocessing`` are loaded on first use (``mpiray.util.queue.Queue`` works
without importing them first).
"""

import importlib

from .actor_pool import ActorPool

__all__ = ["ActorPool", "queue", "multiprocessing"]

_LAZY = ("queue", "multiprocessing")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
