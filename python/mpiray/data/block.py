"""Blocks: the unit of data that mpiray.data keeps in the object store.

A block is one of two things (``BlockAccessor`` hides which):

* a ``pyarrow.Table`` — what tabular sources produce (Parquet, CSV, JSON, ``range``,
  ``from_items``, ``from_pandas``): columnar, strings and nested values included;
* a :class:`NumpyBlock` — an ordered dict of equal-length numpy arrays, what tensor sources
  produce (``read_hdf5``, ``read_numpy``, ``read_images``, ``range_tensor``, ``from_numpy``)
  and what a ``map_batches`` function returning a dict of arrays gives back. Columns may have
  any number of dimensions (the first is the row).

Both pickle with protocol 5 out-of-band buffers, so the runtime writes their arrays once into
shared memory and readers on the node map them without a copy: a numpy batch of a block that
another task produced is a read-only view of the store. Conversions happen only when an
operation needs the other form (a ``pyarrow`` batch of a numpy block, a sort key, ...).
"""

import collections

import numpy as np

from .._extras import require


def _pa():
    return require("data", "pyarrow")


def _pd():
    return require("data", "pandas")


class NumpyBlock:
    """A block of named numpy columns of equal length (see the module docstring)."""

    __slots__ = ("columns",)

    def __init__(self, columns=None):
        self.columns = dict(columns or {})

    def __reduce__(self):
        cols = {}
        for k, v in self.columns.items():
            # Non-contiguous arrays would be pickled in-band (copied into the pickle bytes);
            # contiguous ones travel as out-of-band buffers.
            if isinstance(v, np.ndarray) and v.dtype != object and not (
                    v.flags.c_contiguous or v.flags.f_contiguous):
                v = np.ascontiguousarray(v)
            cols[k] = v
        return (NumpyBlock, (cols,))

    def __repr__(self):
        return f"NumpyBlock({', '.join(f'{k}: {_numpy_type_str(v)}' for k, v in self.columns.items())}; " \
               f"{self.num_rows()} rows)"

    def num_rows(self):
        for v in self.columns.values():
            return len(v)
        return 0


def is_block(x):
    pa = _pa()
    return isinstance(x, (NumpyBlock, pa.Table))


# ----------------------------------------------------------------------------- schema


def _numpy_type_str(arr):
    if arr.dtype == object:
        return "object"
    if arr.ndim > 1:
        return f"numpy.ndarray(shape={tuple(arr.shape[1:])}, dtype={arr.dtype})"
    try:
        return str(_pa().from_numpy_dtype(arr.dtype))
    except Exception:  # structured, void, datetime with odd units ...
        return str(arr.dtype)


class Schema:
    """A dataset's columns and their types, printed as Ray Data prints them::

        Column  Type
        ------  ----
        id      int64
    """

    def __init__(self, names, types, base_schema=None):
        self.names = list(names)
        self.types = list(types)
        self.base_schema = base_schema

    def __eq__(self, other):
        return isinstance(other, Schema) and self.names == other.names and \
            [str(t) for t in self.types] == [str(t) for t in other.types]

    def __hash__(self):
        return hash((tuple(self.names), tuple(str(t) for t in self.types)))

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        rows = [("Column", "Type"), ("------", "----")] + [(n, str(t)) for n, t in zip(self.names, self.types)]
        w = max(len(r[0]) for r in rows)
        return "\n".join(f"{a:<{w}}  {b}".rstrip() for a, b in rows)

    __str__ = __repr__


def schema_of(block):
    pa = _pa()
    if isinstance(block, pa.Table):
        return Schema(block.schema.names, [_arrow_type_str(t) for t in block.schema.types], block.schema)
    return Schema(list(block.columns), [_numpy_type_str(v) for v in block.columns.values()])


def _arrow_type_str(t):
    pa = _pa()
    if isinstance(t, pa.FixedShapeTensorType):
        return f"numpy.ndarray(shape={tuple(t.shape)}, dtype={t.value_type.to_pandas_dtype().__name__})"
    return str(t)


# ----------------------------------------------------------------------------- accessors


def num_rows(block):
    if isinstance(block, NumpyBlock):
        return block.num_rows()
    return block.num_rows


def column_names(block):
    if isinstance(block, NumpyBlock):
        return list(block.columns)
    return block.schema.names


def size_bytes(block):
    if isinstance(block, NumpyBlock):
        total = 0
        for v in block.columns.values():
            if v.dtype == object:
                # Python objects: their pickled size is not known without pickling; estimate.
                total += v.size * 64
            else:
                total += v.nbytes
        return total
    return block.nbytes


def empty_block():
    return NumpyBlock({})


def slice_block(block, start, end):
    """Rows [start, end), without a copy."""
    if isinstance(block, NumpyBlock):
        return NumpyBlock({k: v[start:end] for k, v in block.columns.items()})
    return block.slice(start, end - start)


def take(block, indices):
    """The rows at ``indices`` (a numpy integer array), copied."""
    if isinstance(block, NumpyBlock):
        return NumpyBlock({k: v[indices] for k, v in block.columns.items()})
    pa = _pa()
    return block.take(pa.array(indices, type=pa.int64()))


def select(block, cols):
    if isinstance(block, NumpyBlock):
        missing = [c for c in cols if c not in block.columns]
        if missing:
            raise ValueError(f"column(s) {missing} not found; the block has {list(block.columns)}")
        return NumpyBlock({c: block.columns[c] for c in cols})
    missing = [c for c in cols if c not in block.schema.names]
    if missing:
        raise ValueError(f"column(s) {missing} not found; the block has {block.schema.names}")
    return block.select(cols)


def column(block, name, as_numpy=True):
    if isinstance(block, NumpyBlock):
        return block.columns[name]
    col = block.column(name)
    return arrow_column_to_numpy(col) if as_numpy else col


# ----------------------------------------------------------------------------- conversions


def arrow_column_to_numpy(col):
    """A ChunkedArray (or Array) as a numpy array: zero-copy for one chunk of a primitive type
    without nulls; fixed-shape tensors become n-d arrays; strings become object arrays."""
    pa = _pa()
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            col = col.chunk(0)
        elif col.num_chunks == 0:
            col = pa.array([], type=col.type)
        else:
            col = col.combine_chunks()
    t = col.type
    if isinstance(t, pa.FixedShapeTensorType):
        return col.to_numpy_ndarray()
    if isinstance(t, pa.ExtensionType):
        col = col.storage
        t = col.type
    if pa.types.is_fixed_size_list(t) and col.null_count == 0:
        flat = arrow_column_to_numpy(col.flatten())
        return flat.reshape(len(col), -1)
    try:
        return col.to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, NotImplementedError):
        return np.array(col.to_pylist(), dtype=object)


def numpy_column_to_arrow(arr):
    """A numpy column as an Arrow array (fixed-shape tensor extension for n-d columns).
    Raises TypeError when Arrow cannot hold it (ragged objects)."""
    pa = _pa()
    if arr.ndim > 1:
        if arr.dtype == object:
            raise TypeError("an n-d object column has no Arrow type")
        return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(arr))
    if arr.dtype == object:
        vals = arr.tolist()
        if any(isinstance(v, np.ndarray) for v in vals):
            raise TypeError("a column of arrays of different shapes has no Arrow type")
        return pa.array(vals)
    return pa.array(arr)


def to_arrow(block):
    """The block as a ``pyarrow.Table`` (numpy columns converted; tensors as fixed-shape tensor
    columns)."""
    pa = _pa()
    if isinstance(block, pa.Table):
        return block
    if not block.columns:
        return pa.table({})
    try:
        return pa.table({k: numpy_column_to_arrow(v) for k, v in block.columns.items()})
    except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise TypeError(f"this block cannot be converted to a pyarrow.Table ({e}); use batch_format="
                        f"'numpy' for columns of arrays of different shapes") from None


def to_numpy_block(block):
    if isinstance(block, NumpyBlock):
        return block
    return NumpyBlock({name: arrow_column_to_numpy(block.column(i)) for i, name in enumerate(block.schema.names)})


def to_numpy_dict(block):
    return dict(to_numpy_block(block).columns)


def to_pandas(block):
    pd = _pd()
    pa = _pa()
    if isinstance(block, pa.Table):
        if any(isinstance(t, pa.ExtensionType) for t in block.schema.types):
            block = to_numpy_block(block)
        else:
            return block.to_pandas()
    data = {}
    n = block.num_rows()
    for k, v in block.columns.items():
        if v.ndim > 1:
            # A column of arrays: each cell holds one row's array (Ray's TensorArray role).
            col = np.empty(n, dtype=object)
            for i in range(n):
                col[i] = v[i]
            data[k] = col
        else:
            data[k] = v
    return pd.DataFrame(data) if data else pd.DataFrame(index=range(n))


def to_batch(block, batch_format):
    """The block as a batch: "numpy"/"default" (dict of arrays), "pandas", "pyarrow"."""
    if batch_format in ("numpy", "default", None):
        return to_numpy_dict(block)
    if batch_format == "pandas":
        return to_pandas(block)
    if batch_format in ("pyarrow", "arrow"):
        return to_arrow(block)
    raise ValueError(f"batch_format must be one of 'default', 'numpy', 'pandas', 'pyarrow'; got {batch_format!r}")


def _as_column(name, v, n=None):
    if isinstance(v, np.ndarray):
        return v
    pa = _pa()
    if isinstance(v, (pa.Array, pa.ChunkedArray)):
        return arrow_column_to_numpy(v)
    try:
        pd = _pd()
        if isinstance(v, (pd.Series, pd.Index)):
            return _series_to_numpy(v)
    except Exception:  # pandas missing: not a Series then
        pass
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, np.ndarray) for x in v):
            shapes = {x.shape for x in v}
            if len(shapes) == 1:
                return np.stack(v)
            out = np.empty(len(v), dtype=object)
            for i, x in enumerate(v):
                out[i] = x
            return out
        try:
            arr = np.asarray(v)
            if arr.dtype.kind in "US":  # keep Python strings as Arrow/pandas do
                arr = np.array(v, dtype=object)
            return arr
        except ValueError:
            out = np.empty(len(v), dtype=object)
            out[:] = list(v)
            return out
    if np.isscalar(v) or v is None:
        raise ValueError(f"column {name!r} is a scalar ({v!r}); a batch's columns must be arrays or lists")
    return np.asarray(v)


def _series_to_numpy(s):
    arr = s.to_numpy()
    if arr.dtype == object and len(arr) and isinstance(arr[0], np.ndarray):
        shapes = {x.shape for x in arr if isinstance(x, np.ndarray)}
        if len(shapes) == 1 and all(isinstance(x, np.ndarray) for x in arr):
            return np.stack(list(arr))
    return arr


def batch_to_block(batch, what="fn"):
    """What a map_batches function returned, as a block. Raises ValueError naming the type
    for anything else (Ray's wording)."""
    pa = _pa()
    if isinstance(batch, (NumpyBlock, pa.Table)):
        return batch
    if isinstance(batch, dict):
        cols = {}
        n = None
        for k, v in batch.items():
            if not isinstance(k, str):
                raise ValueError(f"The `{what}` you passed returned a dict with a non-string key {k!r}; "
                                 f"column names must be strings")
            arr = _as_column(k, v)
            if arr.ndim == 0:
                raise ValueError(f"column {k!r} returned by `{what}` is a 0-d array; columns must have "
                                 f"one entry per row")
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                lens = {kk: len(_as_column(kk, vv)) for kk, vv in batch.items()}
                raise ValueError(f"The `{what}` you passed returned columns of different lengths: {lens}")
            cols[k] = arr
        return NumpyBlock(cols)
    if isinstance(batch, np.ndarray):
        return NumpyBlock({"data": batch})
    if isinstance(batch, pa.RecordBatch):
        return pa.Table.from_batches([batch])
    try:
        pd = _pd()
        if isinstance(batch, pd.DataFrame):
            return pandas_to_block(batch)
    except ImportError:
        pass
    if isinstance(batch, list):
        return rows_to_block(batch)
    raise ValueError(
        f"The `{what}` you passed to `map_batches` returned a value of type {type(batch)}. This isn't "
        f"allowed -- `map_batches` expects `{what}` to return a `pandas.DataFrame`, `pyarrow.Table`, "
        f"`numpy.ndarray`, `list`, or `dict[str, numpy.ndarray]`.")


def pandas_to_block(df):
    pa = _pa()
    df = df.reset_index(drop=True) if not isinstance(df.index, _pd().RangeIndex) else df
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return NumpyBlock({str(k): _series_to_numpy(df[k]) for k in df.columns})


def rows_to_block(rows):
    """A list of dict rows as a block: Arrow when the values allow, numpy columns when they
    are arrays."""
    if not rows:
        return empty_block()
    pa = _pa()
    first = rows[0]
    if not isinstance(first, collections.abc.Mapping):
        raise ValueError(f"rows must be dicts, got {type(first).__name__}")
    names = list(first.keys())
    for r in rows:
        if not isinstance(r, collections.abc.Mapping):
            raise ValueError(f"rows must be dicts, got {type(r).__name__}")
        if len(r) != len(names) or any(k not in r for k in names):
            # Different keys in different rows: the union, missing values as None.
            seen = dict.fromkeys(names)
            for rr in rows:
                seen.update(dict.fromkeys(rr.keys()))
            names = list(seen)
            break
    has_arrays = any(isinstance(first.get(k), np.ndarray) for k in names)
    if not has_arrays:
        try:
            return pa.Table.from_pylist(rows if all(len(r) == len(names) for r in rows)
                                        else [{k: r.get(k) for k in names} for r in rows])
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError):
            pass
    return NumpyBlock({k: _as_column(k, [r.get(k) for r in rows]) for k in names})


def _scalar(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def iter_rows(block):
    """Rows as dicts: Python scalars for scalar columns, numpy arrays for tensor columns."""
    pa = _pa()
    if isinstance(block, pa.Table):
        if not any(isinstance(t, pa.ExtensionType) for t in block.schema.types):
            names = block.schema.names
            cols = [block.column(i).to_pylist() for i in range(len(names))]
            for vals in zip(*cols):
                yield dict(zip(names, vals))
            return
        block = to_numpy_block(block)
    names = list(block.columns)
    cols = []
    for k in names:
        v = block.columns[k]
        cols.append(v.tolist() if (v.ndim == 1 and v.dtype != object) else v)
    for vals in zip(*cols):
        yield {k: _scalar(x) for k, x in zip(names, vals)}


def concat(blocks):
    """One block of the rows of ``blocks`` in order. Numpy blocks stay numpy; Arrow tables are
    concatenated (schemas unified); a mix becomes Arrow when every column converts, numpy
    otherwise."""
    blocks = [b for b in blocks if num_rows(b) > 0] or list(blocks[:1])
    if not blocks:
        return empty_block()
    if len(blocks) == 1:
        return blocks[0]
    pa = _pa()
    if all(isinstance(b, NumpyBlock) for b in blocks):
        names = list(blocks[0].columns)
        for b in blocks[1:]:
            if list(b.columns) != names:
                if set(b.columns) == set(names):
                    continue
                raise ValueError(f"cannot concatenate blocks with different columns: {names} and {list(b.columns)}")
        return NumpyBlock({k: _concat_arrays([b.columns[k] for b in blocks]) for k in names})
    if all(isinstance(b, pa.Table) for b in blocks):
        try:
            return pa.concat_tables(blocks, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
        try:
            return pa.concat_tables(blocks, promote_options="permissive")
        except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"cannot concatenate blocks with different schemas: {e}") from None
    try:
        return pa.concat_tables([to_arrow(b) for b in blocks], promote_options="default")
    except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError):
        return concat([to_numpy_block(b) for b in blocks])


def _concat_arrays(arrs):
    if any(a.dtype == object for a in arrs) or len({a.shape[1:] for a in arrs}) > 1:
        n = sum(len(a) for a in arrs)
        out = np.empty(n, dtype=object)
        i = 0
        for a in arrs:
            for x in a:
                out[i] = x
                i += 1
        return out
    return np.concatenate(arrs)


def split_by_rows(block, max_rows):
    n = num_rows(block)
    if n <= max_rows:
        return [block]
    return [slice_block(block, i, min(n, i + max_rows)) for i in range(0, n, max_rows)]


def add_column(block, name, values):
    n = num_rows(block)
    pa = _pa()
    if isinstance(block, pa.Table):
        try:
            arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else numpy_column_to_arrow(
                _as_column(name, values))
            if len(arr) != n:
                raise ValueError(f"the new column {name!r} has {len(arr)} rows, the block {n}")
            if name in block.schema.names:
                return block.set_column(block.schema.get_field_index(name), name, arr)
            return block.append_column(name, arr)
        except TypeError:
            block = to_numpy_block(block)
    arr = _as_column(name, values)
    if len(arr) != n:
        raise ValueError(f"the new column {name!r} has {len(arr)} rows, the block {n}")
    cols = dict(block.columns)
    cols[name] = arr
    return NumpyBlock(cols)


def rename(block, mapping):
    if isinstance(block, NumpyBlock):
        return NumpyBlock({mapping.get(k, k): v for k, v in block.columns.items()})
    return block.rename_columns([mapping.get(k, k) for k in block.schema.names])


def drop(block, cols):
    missing = [c for c in cols if c not in column_names(block)]
    if missing:
        raise ValueError(f"column(s) {missing} not found; the dataset has {column_names(block)}")
    if isinstance(block, NumpyBlock):
        return NumpyBlock({k: v for k, v in block.columns.items() if k not in cols})
    return block.drop_columns(cols)


def sort_indices(block, keys, descending):
    """Indices that sort ``block`` by ``keys`` (list) with ``descending`` (list of bool)."""
    pa = _pa()
    pc = require("data", "pyarrow.compute")
    if isinstance(block, NumpyBlock):
        if len(keys) == 1 and block.columns[keys[0]].dtype != object and block.columns[keys[0]].ndim == 1:
            k = block.columns[keys[0]]
            idx = np.argsort(k, kind="stable")
            if descending[0]:
                # Stable descending: reverse the ascending order of the reversed array.
                idx = (len(k) - 1 - np.argsort(k[::-1], kind="stable"))[::-1]
            return idx
        t = pa.table({k: numpy_column_to_arrow(block.columns[k]) for k in keys})
    else:
        t = block.select(keys)
    order = [(k, "descending" if d else "ascending", "at_end") for k, d in zip(keys, descending)]
    try:
        return pc.sort_indices(t, sort_keys=order).to_numpy()
    except (TypeError, ValueError):  # pyarrow < 25: one null placement for all keys
        return pc.sort_indices(t, sort_keys=[o[:2] for o in order], null_placement="at_end").to_numpy()


def key_array(block, key):
    """One key column as a 1-d numpy array (strings as object)."""
    v = column(block, key)
    if v.ndim != 1:
        raise ValueError(f"column {key!r} is a tensor column and cannot be a key")
    return v


def hash_partition(block, keys, n):
    """For each row, the partition in [0, n) that its key hashes to."""
    if n == 1:
        return np.zeros(num_rows(block), dtype=np.int64)
    pd = _pd()
    df = pd.DataFrame({k: key_array(block, k) for k in keys})
    h = pd.util.hash_pandas_object(df, index=False).to_numpy()
    return (h % np.uint64(n)).astype(np.int64)


def partition_by(block, part, n):
    """Split ``block`` into n blocks by the partition index of each row."""
    order = np.argsort(part, kind="stable")
    counts = np.bincount(part, minlength=n)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    taken = take(block, order)
    return [slice_block(taken, int(bounds[i]), int(bounds[i + 1])) for i in range(n)]


def nbytes_str(n):
    """Bytes as Ray prints them: "128.0MB", "1.5GB"."""
    n = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.1f}TB"


def ceil_div(a, b):
    return -(-a // b) if b else 0


__all__ = ["NumpyBlock", "Schema", "schema_of", "to_batch", "batch_to_block", "concat"]
