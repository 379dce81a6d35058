"""Loads the native HDF5 module (``mpiray._hdf5``, built from libs/hdf5)."""


def load():
    from .. import _hdf5  # noqa: F401 (the mpiray package finds it in the build tree or installed)
    return _hdf5
