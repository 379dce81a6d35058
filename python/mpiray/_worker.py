"""Entry point of a local Python worker started by a driver: ``python -m mpiray._worker``.
It joins the driver's session (MPIRAY_JOIN) and serves tasks until the driver shuts down."""

from . import _core, _ray_alias

if __name__ == "__main__":
    _ray_alias.install_if_requested()  # a driver run with `import ray` -> mpiray
    _core.init({})  # never returns
