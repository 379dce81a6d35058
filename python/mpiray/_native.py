"""Loads the native runtime (``mpiray._core``) and says clearly what is missing when it cannot.

The extension links the system's MPI, UCX, libsodium, spdlog, fmt and cpp-httplib (through
``libmpiray_core.so``/``libmpiray_mpi.so``, installed next to it). When the dynamic loader cannot
find one of them, ``import mpiray`` still succeeds, so that ``mpiray.__version__``, the extras
helper and error reporting keep working, and the first call into the runtime
(``mpiray.init()``, ``mpiray.put()``, ...) raises :class:`MissingLibraryError` naming the
library, what provides it and how to make it visible. The ``mpiray`` command prints the same
message (``_cli.py``). Any other failure to load the extension is raised at import, with a
hint where one helps.
"""

import importlib
import os
import re
import sys
import types

# A library the dynamic loader reports, by the start of its file name: what it is, the Debian
# package and the Spack package that provide it. The Debian names are Debian 12's.
_PROVIDERS = (
    ("libuc", "UCX", "libucx0", "ucx"),  # libucp, libucs, libuct, libucm
    ("libmpi.", "MPI (the MPI mpiray was built with; Open MPI here)", "libopenmpi3", "mpi"),
    ("libopen-", "Open MPI", "libopenmpi3", "openmpi"),  # libopen-rte, libopen-pal
    ("libsodium", "libsodium", "libsodium23", "libsodium"),
    ("libspdlog", "spdlog", "libspdlog1.10", "spdlog"),
    ("libfmt", "fmt", "libfmt9", "fmt"),
    ("libcpp-httplib", "cpp-httplib", "libcpp-httplib0.11", "cpp-httplib"),
    ("libboost_program_options", "Boost.Program_options", "libboost-program-options1.74.0",
     "boost+program_options"),
    ("libhwloc", "hwloc (needed by MPI)", "libhwloc15", "hwloc"),
    ("libevent", "libevent (needed by Open MPI)", "libevent-core-2.1-7", "libevent"),
)

# "libucp.so.0: cannot open shared object file: No such file or directory"
_LOADER_MESSAGE = re.compile(r"(?P<lib>[^\s:/]+\.so[.0-9]*): (?P<why>cannot open shared object file[^\n]*)")


class MissingLibraryError(ImportError):
    """A shared library that mpiray's runtime needs cannot be loaded (the message names it)."""


#: Why the runtime could not be loaded (the full message), or None when it was.
load_error = None


def missing_library(message):
    """The file name of the library that a loader error message says is missing, or None."""
    m = _LOADER_MESSAGE.search(str(message))
    return m.group("lib") if m else None


def explain(library, loader_message=""):
    """A message for users: which library is missing, what provides it, how to fix it."""
    if library.startswith("libmpiray_"):
        text = (f"mpiray cannot load its native runtime: its own library {library} is missing "
                f"from the installation next to the extension (a broken install: reinstall mpiray, "
                f"e.g. pip install --force-reinstall mpiray).")
    else:
        what, hint = "a system library", ""
        for prefix, name, debian, spack in _PROVIDERS:
            if library.startswith(prefix):
                what = name
                hint = (f" Install it (Debian/Ubuntu: apt-get install {debian}; Spack: "
                        f"spack load {spack}; on a cluster: the module that provides {name}, "
                        f"e.g. module load {spack.split('+')[0]})")
                break
        text = (f"mpiray cannot load its native runtime: the system library {library} ({what}) "
                f"was not found.{hint or ' Install it'} or add the directory that holds it to "
                f"LD_LIBRARY_PATH.")
    if loader_message:
        text += f" [the loader said: {loader_message}]"
    return text


class _MissingCore(types.ModuleType):
    """Stands in for mpiray._core when a library is missing: every use raises the error."""

    def __init__(self, message):
        super().__init__("mpiray._core", "unavailable: " + message)
        self._message = message

        class ObjectRef:  # isinstance() checks still work; nothing can make one
            def __init__(self, *args, **kwargs):
                raise MissingLibraryError(message)

        self.ObjectRef = ObjectRef

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise MissingLibraryError(self._message)


def load_core():
    """Imports mpiray._core; if a library it needs is missing, installs the stand-in instead."""
    global load_error
    try:
        return importlib.import_module("mpiray._core")
    except ModuleNotFoundError as e:
        if e.name != "mpiray._core":
            raise
        raise ImportError(
            "mpiray's native extension (mpiray._core) is not built: run `make build` and use "
            "PYTHONPATH=<repo>/python (it is found in <repo>/build or $MPIRAY_BUILD_DIR), or "
            "install the package with `pip install .`") from None
    except ImportError as e:
        library = missing_library(e)
        if library is None:
            raise
        load_error = explain(library, str(e))
    stand_in = _MissingCore(load_error)
    sys.modules["mpiray._core"] = stand_in
    setattr(sys.modules["mpiray"], "_core", stand_in)
    return stand_in


def cli_path():
    """The C++ `mpiray` program that belongs to the loaded extension, or None.

    Installed by pip: mpiray/bin/mpiray next to the extension (also for an editable install,
    whose extension stays in site-packages). Build tree: <build>/apps/mpiray. cmake --install
    (Spack): <prefix>/bin/mpiray beside <prefix>/lib/pythonX.Y/site-packages/mpiray.
    """
    core = sys.modules.get("mpiray._core")
    where = getattr(core, "__file__", None)
    if not where:
        return None
    here = os.path.dirname(os.path.abspath(where))
    for candidate in (os.path.join(here, "bin", "mpiray"),
                      os.path.join(here, "..", "..", "apps", "mpiray"),
                      os.path.join(here, "..", "..", "..", "..", "bin", "mpiray")):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.normpath(candidate)
    return None
