"""The opt-in ``import ray`` alias: ``ray`` and every ``ray.X`` module resolve to mpiray's.

Turned on by ``python -m mpiray script.py`` / ``mpiray run script.py`` (both set
``MPIRAY_AS_RAY=1`` for the processes they start), or by ``MPIRAY_AS_RAY=1`` in the
environment of an installed mpiray (a ``.pth`` file calls :func:`install_if_requested` at
interpreter start-up), or by calling :func:`install` before the first ``import ray``. The
installed Ray package, if any, is not touched: while the alias is on it is just not found.

``ray.X`` is ``mpiray.X`` itself (the same module object), so ``ray.util.queue.Queue is
mpiray.util.queue.Queue`` and exceptions raised by mpiray are caught as ``ray.exceptions.X``.
A module mpiray does not have raises ``ModuleNotFoundError`` naming both names.

This file imports nothing of mpiray at module level: the ``.pth`` hook loads it on its own at
start-up, and mpiray (with its native runtime) is imported only when ``ray`` is.
"""

import importlib
import importlib.abc
import importlib.machinery
import os
import sys

ENV = "MPIRAY_AS_RAY"
_PREFIX = "ray"
_TARGET = "mpiray"


def requested(environ=None):
    """True when ``MPIRAY_AS_RAY`` asks for the alias (anything but empty, 0, false, no)."""
    value = (environ if environ is not None else os.environ).get(ENV, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


class _ExistingModuleLoader(importlib.abc.Loader):
    """Hands the import system an already imported mpiray module under its ``ray`` name."""

    def __init__(self, module):
        self._module = module

    def create_module(self, spec):
        return self._module

    def exec_module(self, module):
        pass  # already executed as mpiray.X


class RayAliasFinder(importlib.abc.MetaPathFinder):
    """Finds ``ray`` / ``ray.X`` by importing ``mpiray`` / ``mpiray.X``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _PREFIX and not fullname.startswith(_PREFIX + "."):
            return None
        real = _TARGET + fullname[len(_PREFIX):]
        try:
            module = importlib.import_module(real)
        except ModuleNotFoundError as e:
            if e.name is not None and e.name != real and not real.startswith(e.name + "."):
                raise  # a module that mpiray.X itself imports is missing: that error
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: the `import ray` alias (MPIRAY_AS_RAY) maps it "
                f"to {real!r}, which mpiray does not have", name=fullname) from None
        spec = importlib.machinery.ModuleSpec(
            fullname, _ExistingModuleLoader(module),
            is_package=hasattr(module, "__path__"))
        if hasattr(module, "__path__"):
            spec.submodule_search_locations = list(module.__path__)
        return spec


def installed():
    # By name: the .pth hook loads this file as a module of its own (another class object).
    return any(type(f).__name__ == "RayAliasFinder" for f in sys.meta_path)


def install():
    """Make ``import ray`` (and ``ray.X``) load mpiray from now on, in this process; the
    processes mpiray starts (local workers) inherit it through ``MPIRAY_AS_RAY=1``. Fails if
    another ``ray`` was imported already (two different ``ray`` modules in one program)."""
    os.environ[ENV] = "1"
    # Ray's process model for `import ray` programs: every actor in a process of its own
    # (standalone runs; MPIRAY_ACTOR_PROCESSES=shared keeps mpiray's shared workers).
    os.environ.setdefault("MPIRAY_ACTOR_PROCESSES", "dedicated")
    if installed():
        return
    loaded = sys.modules.get(_PREFIX)
    if loaded is not None and not getattr(loaded, "__name__", "").startswith(_TARGET):
        raise RuntimeError(
            f"the `import ray` alias cannot be turned on: Ray itself ({getattr(loaded, '__file__', '?')}) "
            "is already imported in this process")
    sys.meta_path.insert(0, RayAliasFinder())


def install_if_requested():
    """Called at start-up (the ``.pth`` hook) and by mpiray's worker entry point."""
    if requested():
        install()
