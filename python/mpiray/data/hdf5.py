"""HDF5 helpers next to ``read_hdf5``/``write_hdf5`` (native, libs/hdf5)::

    from mpiray.data import hdf5
    hdf5.list_datasets("run.h5")            # ["grid/x", "y"]
    hdf5.describe("run.h5", "grid/x")       # shape, chunks, layout, dtype, filters
    hdf5.read_attributes("run.h5", "grid/x")  # {"units": "m", "scale": 0.5}
"""

from .datasource.hdf5 import (HDF5DatasetNotFoundError, HDF5Error, HDF5ValueError, describe,  # noqa: F401
                              list_datasets, read_attributes)

__all__ = ["list_datasets", "describe", "read_attributes", "HDF5Error", "HDF5DatasetNotFoundError",
           "HDF5ValueError"]
