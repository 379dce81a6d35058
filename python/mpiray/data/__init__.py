"""mpiray.data: Ray Data on mpiray (``import mpiray.data as rd`` or ``from mpiray import data``).

Lazy datasets of blocks in the object store, executed by a streaming executor over tasks and
actor pools with back-pressure against a memory budget; Ray Data's API and results, plus
native, chunk-aware HDF5 reading and parallel writing. See docs/data.md.

Needs the ``data`` extra (pandas, pyarrow): ``pip install "mpiray[data]"``.
"""

from . import aggregate, expressions, hdf5  # noqa: F401
from ._internal.executor import ActorPoolStrategy, TaskPoolStrategy
from .block import NumpyBlock, Schema
from .context import DataContext, ExecutionOptions, ExecutionResources
from .dataset import Dataset, MaterializedDataset
from .datasource import Datasource, Partitioning, PartitionStyle, ReadTask
from .datasource.hdf5 import HDF5DatasetNotFoundError, HDF5Error, HDF5ValueError
from .grouped_data import GroupedData
from .iterator import DataIterator
from .read_api import (from_arrow, from_arrow_refs, from_items, from_numpy, from_numpy_refs, from_pandas,
                       from_pandas_refs, from_torch, range, range_tensor, read_binary_files, read_csv,
                       read_datasource, read_hdf5, read_images, read_json, read_numpy, read_parquet, read_text)

__all__ = [
    "Dataset", "MaterializedDataset", "DataIterator", "DataContext", "ExecutionOptions", "ExecutionResources",
    "ActorPoolStrategy", "TaskPoolStrategy", "Schema", "NumpyBlock", "GroupedData", "Datasource", "ReadTask",
    "Partitioning", "PartitionStyle", "aggregate", "expressions", "hdf5", "HDF5Error", "HDF5DatasetNotFoundError",
    "HDF5ValueError",
    "range", "range_tensor", "from_items", "from_numpy", "from_numpy_refs", "from_pandas", "from_pandas_refs",
    "from_arrow", "from_arrow_refs", "from_torch", "read_parquet", "read_csv", "read_json", "read_numpy",
    "read_text", "read_binary_files", "read_images", "read_hdf5", "read_datasource",
]
