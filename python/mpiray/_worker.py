"""Entry point of a local Python worker started by a driver: ``python -m mpiray._worker``.
It joins the driver's session (MPIRAY_JOIN) and serves tasks until the driver shuts down."""

from . import _core

if __name__ == "__main__":
    _core.init({})  # never returns
