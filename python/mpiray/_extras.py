"""Optional dependencies of the libraries, in Ray's style: ``pip install "mpiray[train]"``.

``import mpiray`` needs only numpy and cloudpickle. A library imports what its extra provides
through :func:`require`, which says which extra to install when a package is missing::

    from mpiray._extras import require
    torch = require("train", "torch")
    pd, pa = require("data", "pandas", "pyarrow")

EXTRAS must list the same packages as ``[project.optional-dependencies]`` in pyproject.toml
(tests/python/test_extras.py checks it); ``all`` is the union of the others.
"""

import importlib

#: extra -> the top-level modules it installs (the distribution names are the same).
EXTRAS = {
    "data": ("pandas", "pyarrow"),
    "train": ("torch",),
    "tune": ("pandas", "tensorboardX", "optuna", "hyperopt"),
    "rllib": ("torch", "gymnasium", "pandas", "tensorboardX"),
    "serve": ("fastapi", "starlette", "uvicorn", "requests"),
}
EXTRAS["all"] = tuple(sorted({m for mods in EXTRAS.values() for m in mods}))


class MissingExtraError(ModuleNotFoundError):
    """A library's optional dependency is not installed; the message names the extra."""


def require(extra, *modules):
    """Imports ``modules`` (names such as ``"torch"`` or ``"torch.distributed"``) for the library
    whose extra is ``extra`` and returns the module, or a tuple of them for several names.

    A package that is not installed raises :class:`MissingExtraError` (a
    ``ModuleNotFoundError``) saying ``pip install "mpiray[<extra>]"``. An import error from
    inside an installed package is not hidden: it is raised as it is.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}: one of {', '.join(sorted(EXTRAS))}")
    if not modules:
        raise ValueError("require() needs at least one module name")
    loaded = []
    for name in modules:
        top = name.split(".")[0]
        if top not in EXTRAS[extra]:
            raise ValueError(f"{top} is not in mpiray[{extra}] ({', '.join(EXTRAS[extra])}); add it "
                             f"to EXTRAS in mpiray/_extras.py and to pyproject.toml")
        try:
            loaded.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise  # something inside the installed package is missing: not ours to explain
            raise MissingExtraError(
                f"mpiray.{extra} needs {top}, which is not installed. Install the extra: "
                f'pip install "mpiray[{extra}]" (or install {top} yourself)', name=top) from None
    return loaded[0] if len(loaded) == 1 else tuple(loaded)
