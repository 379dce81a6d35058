"""mpiray.data: Ray Data on mpiray (``import mpiray.data as rd`` or ``from mpiray import data``).

Lazy datasets of blocks in the object store, executed by a streaming executor over tasks and
actor pools with back-pressure against a memory budget; Ray Data's API and results, plus
native, chunk-aware HDF5 reading and parallel writing. See docs/data.md.

Needs the ``data`` extra (pandas, pyarrow): ``pip install "mpiray[data]"``.

The names below are loaded on first use (PEP 562): importing the package imports no
submodule, so that worker threads unpickling blocks and datasets at the same time never meet
a half-initialised package.
"""

import importlib

_NAMES = {
    "Dataset": ".dataset", "MaterializedDataset": ".dataset", "DataIterator": ".iterator",
    "DataContext": ".context", "ExecutionOptions": ".context", "ExecutionResources": ".context",
    "ActorPoolStrategy": "._internal.executor", "TaskPoolStrategy": "._internal.executor",
    "Schema": ".block", "NumpyBlock": ".block", "GroupedData": ".grouped_data",
    "Datasource": ".datasource", "ReadTask": ".datasource", "Partitioning": ".datasource",
    "PartitionStyle": ".datasource",
    "HDF5Error": ".datasource.hdf5", "HDF5DatasetNotFoundError": ".datasource.hdf5",
    "HDF5ValueError": ".datasource.hdf5",
}
for _n in ("range", "range_tensor", "from_items", "from_numpy", "from_numpy_refs", "from_pandas",
           "from_pandas_refs", "from_arrow", "from_arrow_refs", "from_torch", "read_parquet", "read_csv",
           "read_json", "read_numpy", "read_text", "read_binary_files", "read_images", "read_hdf5",
           "read_datasource"):
    _NAMES[_n] = ".read_api"
_MODULES = ("aggregate", "expressions", "hdf5", "block", "context", "dataset", "iterator", "grouped_data",
            "read_api", "datasource")

__all__ = sorted(_NAMES) + ["aggregate", "expressions", "hdf5"]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name], __name__), name)
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'mpiray.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
