"""Creating datasets (Ray's ``ray.data.read_api``): synthetic (``range``), in-memory
(``from_*``, blocks put into the object store by the driver) and file sources (``read_*``,
read lazily by tasks). Paths may be files, directories (walked recursively) or globs."""

import builtins

import numpy as np

import mpiray as ray

from . import block as B
from ._internal.metadata import BlockMetadata, RefBundle
from ._internal.plan import InputData, Read
from .datasource import file_formats as FF
from .datasource.partitioning import Partitioning


def _ensure_init():
    """Ray Data starts Ray when needed; so does mpiray.data (embedded mode)."""
    if not ray.is_initialized():
        ray.init()


def _ds(plan):
    from .dataset import Dataset, MaterializedDataset
    if isinstance(plan, InputData):
        return MaterializedDataset(plan)
    return Dataset(plan)


def _read(datasource, override_num_blocks=None, parallelism=-1, concurrency=None, num_cpus=None, num_gpus=None,
          memory=None, ray_remote_args=None):
    _ensure_init()
    from .dataset import _remote_args
    n = override_num_blocks if override_num_blocks is not None else (None if parallelism in (None, -1) else parallelism)
    args = _remote_args(num_cpus, num_gpus, memory, ray_remote_args=ray_remote_args)
    return _ds(Read(datasource, n, args, concurrency))


def _put_blocks(blocks, name, files=None):
    _ensure_init()
    bundles = []
    for i, b in enumerate(blocks):
        meta = BlockMetadata(B.num_rows(b), B.size_bytes(b), B.schema_of(b), files, None, f"{name} block {i}")
        bundles.append(RefBundle(ray.put(b), meta))
    return _ds(InputData(bundles, name))


def _default_blocks(n_items, override):
    if override is not None:
        if override < 1:
            raise ValueError(f"override_num_blocks must be >= 1, got {override}")
        return max(1, min(override, max(1, n_items)))
    from ._internal.executor import cluster_cpus
    _ensure_init()
    return max(1, min(n_items, 200, int(2 * cluster_cpus())))


# ----------------------------------------------------------------------------- synthetic


def range(n, *, parallelism=-1, concurrency=None, override_num_blocks=None):  # noqa: A001 - Ray's name
    """Rows ``{"id": 0}`` ... ``{"id": n - 1}`` (int64)."""
    return _read(FF.RangeDatasource(n), override_num_blocks, parallelism, concurrency)


def range_tensor(n, *, shape=(1,), parallelism=-1, concurrency=None, override_num_blocks=None):
    """Rows ``{"data": np.full(shape, i)}`` for i in [0, n)."""
    return _read(FF.RangeDatasource(n, tuple(shape)), override_num_blocks, parallelism, concurrency)


# ----------------------------------------------------------------------------- in memory


def from_items(items, *, parallelism=-1, override_num_blocks=None):
    """A dataset of ``items``: dicts become rows; anything else becomes ``{"item": x}``."""
    if not isinstance(items, (list, tuple)):
        if hasattr(items, "__iter__"):
            items = list(items)
        else:
            raise TypeError(f"from_items: expected a list of items, got {type(items).__name__}")
    override = override_num_blocks if override_num_blocks is not None else (None if parallelism in (None, -1)
                                                                             else parallelism)
    k = _default_blocks(len(items), override)
    rows = [x if isinstance(x, dict) else {"item": x} for x in items]
    blocks = []
    for i in builtin_range(k):
        lo, hi = len(rows) * i // k, len(rows) * (i + 1) // k
        blocks.append(B.rows_to_block(rows[lo:hi]) if hi > lo else B.rows_to_block(rows[:0]))
    return _put_blocks(blocks, "FromItems")


builtin_range = builtins.range


def from_numpy(ndarrays):
    """One block per array, column ``"data"`` (rows are the first axis)."""
    if isinstance(ndarrays, np.ndarray):
        ndarrays = [ndarrays]
    for a in ndarrays:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"from_numpy: expected numpy arrays, got {type(a).__name__}")
        if a.ndim == 0:
            raise ValueError("from_numpy: a 0-d array has no rows")
    return _put_blocks([B.NumpyBlock({"data": a}) for a in ndarrays], "FromNumpy")


def from_numpy_refs(refs):
    return from_numpy(ray.get(list(refs)))


def from_pandas(dfs, override_num_blocks=None):
    pd = B._pd()
    if isinstance(dfs, pd.DataFrame):
        dfs = [dfs]
    blocks = []
    for df in dfs:
        if not isinstance(df, pd.DataFrame):
            raise TypeError(f"from_pandas: expected pandas DataFrames, got {type(df).__name__}")
        blocks.append(B.pandas_to_block(df))
    if override_num_blocks is not None:
        whole = B.concat(blocks)
        n = B.num_rows(whole)
        k = max(1, override_num_blocks)
        blocks = [B.slice_block(whole, n * i // k, n * (i + 1) // k) for i in builtin_range(k)]
        from ._internal.transforms import compact
        blocks = [compact(b) for b in blocks]
    return _put_blocks(blocks, "FromPandas")


def from_pandas_refs(refs):
    return from_pandas(ray.get(list(refs)))


def from_arrow(tables, *, override_num_blocks=None):
    pa = B._pa()
    if isinstance(tables, (pa.Table, bytes)):
        tables = [tables]
    blocks = []
    for t in tables:
        if isinstance(t, bytes):
            t = pa.ipc.open_stream(t).read_all()
        if not isinstance(t, pa.Table):
            raise TypeError(f"from_arrow: expected pyarrow Tables, got {type(t).__name__}")
        blocks.append(t)
    if override_num_blocks is not None:
        whole = pa.concat_tables(blocks)
        n = whole.num_rows
        k = max(1, override_num_blocks)
        from ._internal.transforms import compact
        blocks = [compact(whole.slice(n * i // k, n * (i + 1) // k - n * i // k)) for i in builtin_range(k)]
    return _put_blocks(blocks, "FromArrow")


def from_arrow_refs(refs):
    return from_arrow(ray.get(list(refs)))


def from_torch(dataset, local_read=False):
    """A torch ``Dataset`` (map-style or iterable) as rows ``{"item": sample}``."""
    items = [dataset[i] for i in builtin_range(len(dataset))] if hasattr(dataset, "__getitem__") and \
        hasattr(dataset, "__len__") else list(dataset)
    return from_items([{"item": x} for x in items])


# ----------------------------------------------------------------------------- files


def _partitioning(p, default):
    if p is None:
        return None
    if p == "default":
        return default
    if not isinstance(p, Partitioning):
        raise TypeError(f"partitioning must be a Partitioning, got {type(p).__name__}")
    return p


_HIVE = Partitioning("hive")


def read_parquet(paths, *, filesystem=None, columns=None, parallelism=-1, num_cpus=None, num_gpus=None,
                 memory=None, ray_remote_args=None, tensor_column_schema=None, partition_filter=None,
                 partitioning=_HIVE, shuffle=None, include_paths=False, file_extensions=("parquet",),
                 ignore_missing_paths=False, concurrency=None, override_num_blocks=None, filter=None,  # noqa: A002
                 **arrow_parquet_args):
    """Parquet files, split into blocks by row groups. Columns (``columns=`` or a following
    ``select_columns``) and filters (a following ``filter(expr=...)``) are pushed into the
    read; ``partitioning`` (hive by default) adds directory keys as columns."""
    if filter is not None:
        raise ValueError("`filter=` on `read_parquet` is not supported. Use `read_parquet(path).filter(expr=expr)` "
                         "instead (it is pushed into the read).")
    ds = FF.ParquetDatasource(paths, columns=columns, include_paths=include_paths,
                              ignore_missing_paths=ignore_missing_paths, partitioning=partitioning,
                              file_extensions=file_extensions, shuffle=shuffle, arrow_args=arrow_parquet_args)
    return _read(ds, override_num_blocks, parallelism, concurrency, num_cpus, num_gpus, memory, ray_remote_args)


def _file_kw(include_paths, ignore_missing_paths, partitioning, file_extensions, shuffle):
    kw = dict(include_paths=include_paths, ignore_missing_paths=ignore_missing_paths, partitioning=partitioning,
              shuffle=shuffle)
    if file_extensions is not None:
        kw["file_extensions"] = file_extensions
    return kw


def read_csv(paths, *, filesystem=None, parallelism=-1, num_cpus=None, num_gpus=None, memory=None,
             ray_remote_args=None, arrow_open_stream_args=None, partition_filter=None, partitioning=_HIVE,
             include_paths=False, ignore_missing_paths=False, shuffle=None, file_extensions=None, concurrency=None,
             override_num_blocks=None, **arrow_csv_args):
    ds = FF.CSVDatasource(paths, arrow_csv_args,
                          **_file_kw(include_paths, ignore_missing_paths, partitioning, file_extensions, shuffle))
    return _read(ds, override_num_blocks, parallelism, concurrency, num_cpus, num_gpus, memory, ray_remote_args)


def read_json(paths, *, lines=False, filesystem=None, parallelism=-1, num_cpus=None, num_gpus=None, memory=None,
              ray_remote_args=None, arrow_open_stream_args=None, partition_filter=None, partitioning=_HIVE,
              include_paths=False, ignore_missing_paths=False, shuffle=None,
              file_extensions=("json", "jsonl", "json.gz", "jsonl.gz"), concurrency=None, override_num_blocks=None,
              **arrow_json_args):
    ds = FF.JSONDatasource(paths, lines, arrow_json_args,
                           **_file_kw(include_paths, ignore_missing_paths, partitioning, file_extensions, shuffle))
    return _read(ds, override_num_blocks, parallelism, concurrency, num_cpus, num_gpus, memory, ray_remote_args)


def read_numpy(paths, *, filesystem=None, parallelism=-1, arrow_open_stream_args=None, partition_filter=None,
               partitioning=None, include_paths=False, ignore_missing_paths=False, shuffle=None,
               file_extensions=("npy",), concurrency=None, override_num_blocks=None, allow_pickle=False,
               **numpy_load_args):
    ds = FF.NumpyDatasource(paths, allow_pickle, numpy_load_args,
                            **_file_kw(include_paths, ignore_missing_paths, partitioning, file_extensions, shuffle))
    return _read(ds, override_num_blocks, parallelism, concurrency)


def read_text(paths, *, encoding="utf-8", drop_empty_lines=True, filesystem=None, parallelism=-1, num_cpus=None,
              num_gpus=None, memory=None, ray_remote_args=None, arrow_open_stream_args=None, partition_filter=None,
              partitioning=None, include_paths=False, ignore_missing_paths=False, shuffle=None,
              file_extensions=None, concurrency=None, override_num_blocks=None):
    ds = FF.TextDatasource(paths, encoding, drop_empty_lines,
                           **_file_kw(include_paths, ignore_missing_paths, partitioning, file_extensions, shuffle))
    return _read(ds, override_num_blocks, parallelism, concurrency, num_cpus, num_gpus, memory, ray_remote_args)


def read_binary_files(paths, *, include_paths=False, filesystem=None, parallelism=-1, num_cpus=None, num_gpus=None,
                      memory=None, ray_remote_args=None, arrow_open_stream_args=None, partition_filter=None,
                      partitioning=None, ignore_missing_paths=False, shuffle=None, file_extensions=None,
                      concurrency=None, override_num_blocks=None):
    ds = FF.BinaryDatasource(paths, **_file_kw(include_paths, ignore_missing_paths, partitioning, file_extensions,
                                               shuffle))
    return _read(ds, override_num_blocks, parallelism, concurrency, num_cpus, num_gpus, memory, ray_remote_args)


def read_images(paths, *, filesystem=None, parallelism=-1, num_cpus=None, num_gpus=None, memory=None,
                ray_remote_args=None, arrow_open_file_args=None, partition_filter=None, partitioning=None,
                size=None, mode=None, include_paths=False, ignore_missing_paths=False, shuffle=None,
                file_extensions=("png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"), concurrency=None,
                override_num_blocks=None):
    """Images (Pillow) as ``{"image": array}`` rows (HxWxC uint8); ``size=(h, w)`` resizes,
    ``mode`` converts ("RGB", "L", ...). Images of one block with different shapes give a
    column of arrays."""
    ds = FF.ImageDatasource(paths, size, mode, **_file_kw(include_paths, ignore_missing_paths, partitioning,
                                                         file_extensions, shuffle))
    return _read(ds, override_num_blocks, parallelism, concurrency, num_cpus, num_gpus, memory, ray_remote_args)


def read_hdf5(paths, datasets=None, *, include_paths=False, ignore_missing_paths=False,
              file_extensions=("h5", "hdf5", "he5", "hdf", "nc"), partitioning=None, parallelism=-1,
              num_cpus=None, num_gpus=None, memory=None, ray_remote_args=None, concurrency=None,
              override_num_blocks=None):
    """HDF5 datasets as columns: ``read_hdf5("run.h5", datasets=["x", "y"])`` (default: every
    dataset of the file; all must have the same number of rows). Files are split along the
    first axis on chunk boundaries; each read task reads its hyperslab natively into numpy
    arrays (compound types become one column per member; variable-length strings become str
    columns). Virtual datasets and external links are followed. See docs/data.md."""
    from .datasource.hdf5 import HDF5Datasource
    ds = HDF5Datasource(paths, datasets, include_paths, ignore_missing_paths, file_extensions, partitioning)
    return _read(ds, override_num_blocks, parallelism, concurrency, num_cpus, num_gpus, memory, ray_remote_args)


def read_datasource(datasource, *, parallelism=-1, override_num_blocks=None, concurrency=None, **kw):
    """Reads a custom ``Datasource`` (``get_read_tasks(parallelism, ctx)`` returning
    ``ReadTask`` objects)."""
    return _read(datasource, override_num_blocks, parallelism, concurrency)
