"""The built-in datasources: range, Parquet, CSV, JSON, numpy, text, binary files, images.
Each read task opens its own files on the worker it runs on."""

import json
import os

import numpy as np

from .. import block as B
from ..._extras import require
from .datasource import Datasource, ReadTask, expand_paths, pack_units, target_num_blocks
from .partitioning import Partitioning


def _decorate(block, path, part_values, include_paths):
    """Adds partition columns and the ``path`` column to a block read from ``path``."""
    n = B.num_rows(block)
    for k, v in (part_values or {}).items():
        if k not in B.column_names(block):
            block = B.add_column(block, k, _const(v, n))
    if include_paths:
        block = B.add_column(block, "path", _const(path, n))
    return block


def _const(v, n):
    if isinstance(v, str):
        out = np.empty(n, dtype=object)
        out[:] = v
        return out
    return np.full(n, v)


# ----------------------------------------------------------------------------- range


class _RangeRead:
    def __init__(self, start, count, tensor_shape=None):
        self.start = start
        self.count = count
        self.tensor_shape = tensor_shape

    def __call__(self):
        ids = np.arange(self.start, self.start + self.count, dtype=np.int64)
        if self.tensor_shape is None:
            pa = require("data", "pyarrow")
            return pa.table({"id": ids})
        data = np.ones((self.count,) + tuple(self.tensor_shape), dtype=np.int64)
        data *= ids.reshape((-1,) + (1,) * len(self.tensor_shape))
        return B.NumpyBlock({"data": data})


class RangeDatasource(Datasource):
    def __init__(self, n, tensor_shape=None):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"range: n must be a non-negative integer, got {n!r}")
        self.n = int(n)
        self.tensor_shape = tuple(tensor_shape) if tensor_shape is not None else None
        self.name = "ReadRange" if tensor_shape is None else "ReadRangeTensor"

    def num_rows(self):
        return self.n

    def schema(self):
        if self.tensor_shape is None:
            return B.Schema(["id"], ["int64"])
        return B.Schema(["data"], [f"numpy.ndarray(shape={self.tensor_shape}, dtype=int64)"])

    def get_read_tasks(self, parallelism, ctx):
        row_bytes = 8 * int(np.prod(self.tensor_shape)) if self.tensor_shape else 8
        if parallelism is None or parallelism == -1:
            # Ids are tiny but what follows a range usually is not (map_batches making rows):
            # blocks of at most 50k rows, at least two per CPU, at most 200, and not smaller
            # than the size rules allow for big rows.
            from .._internal.executor import cluster_cpus
            by_size = target_num_blocks(None, self.n * row_bytes, max(1, self.n), ctx)
            k = max(by_size, min(ctx.read_op_min_num_blocks, -(-self.n // 50_000)), int(2 * cluster_cpus()))
            k = max(1, min(k, self.n))
        else:
            k = target_num_blocks(parallelism, self.n * row_bytes, max(1, self.n), ctx)
        tasks = []
        per, extra = divmod(self.n, k)
        start = 0
        for i in range(k):
            c = per + (1 if i < extra else 0)
            if c == 0 and self.n:
                continue
            tasks.append(ReadTask(_RangeRead(start, c, self.tensor_shape), c, c * row_bytes,
                                  location=f"rows {start}..{start + c} of range({self.n})"))
            start += c
        return tasks or [ReadTask(_RangeRead(0, 0, self.tensor_shape), 0, 0, location="range(0)")]


# ----------------------------------------------------------------------------- file-based


class FileDatasource(Datasource):
    """A datasource over a list of files; one or more files per read task."""

    file_extensions = None
    reader_name = "read"

    def __init__(self, paths, *, include_paths=False, ignore_missing_paths=False, partitioning=None,
                 file_extensions=None, shuffle=None):
        exts = self.file_extensions if file_extensions is None else file_extensions
        self.files = expand_paths(paths, exts, ignore_missing_paths, self.reader_name)
        if shuffle == "files":
            import random
            random.shuffle(self.files)
        self.include_paths = include_paths
        self.partitioning = partitioning
        self._parts = [partitioning.parse(f, base) if partitioning else {} for f, base in self.files]

    def input_files(self):
        return [f for f, _ in self.files]

    def _file_sizes(self):
        sizes = []
        for f, _ in self.files:
            try:
                sizes.append(os.path.getsize(f))
            except OSError:
                sizes.append(0)
        return sizes

    def read_file(self, path):
        """Blocks of one file."""
        raise NotImplementedError

    def get_read_tasks(self, parallelism, ctx):
        sizes = self._file_sizes()
        k = target_num_blocks(parallelism, sum(sizes), len(self.files), ctx)
        units = [(s, i) for i, s in enumerate(sizes)]
        tasks = []
        for group in pack_units(units, k):
            files = [self.files[i][0] for i in group]
            fn = _FilesRead(self, group)
            tasks.append(ReadTask(fn, None, sum(sizes[i] for i in group), files,
                                  location=files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"))
        return tasks


class _FilesRead:
    def __init__(self, ds, indices):
        self.ds = ds
        self.indices = indices

    def __call__(self):
        first = None
        for i in self.indices:
            path = self.ds.files[i][0]
            for b in self.ds.read_file(path):
                b = _decorate(b, path, self.ds._parts[i], self.ds.include_paths)
                if B.num_rows(b):
                    s = B.schema_of(b)
                    if first is None:
                        first = (s, path)
                    elif s != first[0]:
                        raise ValueError(f"{self.ds.name}: files have different schemas.\n{first[1]}:\n{first[0]}\n"
                                         f"{path}:\n{s}\nRead them separately, or make the files agree.")
                yield b


class CSVDatasource(FileDatasource):
    name = "ReadCSV"
    reader_name = "read_csv"
    file_extensions = None

    def __init__(self, paths, arrow_csv_args=None, **kw):
        super().__init__(paths, **kw)
        self.args = dict(arrow_csv_args or {})

    def read_file(self, path):
        csv = require("data", "pyarrow.csv")
        try:
            yield csv.read_csv(path, **self.args)
        except Exception as e:
            raise type(e)(f"read_csv: cannot read {path!r}: {e}") from e


class JSONDatasource(FileDatasource):
    name = "ReadJSON"
    reader_name = "read_json"
    file_extensions = ["json", "jsonl", "json.gz", "jsonl.gz"]

    def __init__(self, paths, lines=False, arrow_json_args=None, **kw):
        super().__init__(paths, **kw)
        self.lines = lines
        self.args = dict(arrow_json_args or {})

    def read_file(self, path):
        pj = require("data", "pyarrow.json")
        pa = require("data", "pyarrow")
        try:
            yield pj.read_json(path, **self.args)
            return
        except pa.ArrowInvalid as first:
            if self.lines:
                raise ValueError(f"read_json: {path!r} is not JSON lines: {first}") from None
        # A JSON document: a list of records, or a dict of columns.
        import gzip
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt") as f:
            try:
                doc = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"read_json: {path!r} is not valid JSON: {e}") from None
        if isinstance(doc, list):
            yield B.rows_to_block(doc)
        elif isinstance(doc, dict):
            yield pa.table(doc)
        else:
            raise ValueError(f"read_json: {path!r} holds a JSON {type(doc).__name__}, not records")


class NumpyDatasource(FileDatasource):
    name = "ReadNumpy"
    reader_name = "read_numpy"
    file_extensions = ["npy"]

    def __init__(self, paths, allow_pickle=False, numpy_load_args=None, **kw):
        super().__init__(paths, **kw)
        self.allow_pickle = allow_pickle
        self.args = dict(numpy_load_args or {})

    def read_file(self, path):
        arr = np.load(path, allow_pickle=self.allow_pickle, **self.args)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        yield B.NumpyBlock({"data": arr})


class TextDatasource(FileDatasource):
    name = "ReadText"
    reader_name = "read_text"

    def __init__(self, paths, encoding="utf-8", drop_empty_lines=True, **kw):
        super().__init__(paths, **kw)
        self.encoding = encoding
        self.drop_empty_lines = drop_empty_lines

    def read_file(self, path):
        pa = require("data", "pyarrow")
        with open(path, "rb") as f:
            text = f.read().decode(self.encoding)
        lines = text.splitlines()
        if self.drop_empty_lines:
            lines = [ln for ln in lines if ln.strip()]
        yield pa.table({"text": pa.array(lines, type=pa.string())})


class BinaryDatasource(FileDatasource):
    name = "ReadBinary"
    reader_name = "read_binary_files"

    def read_file(self, path):
        pa = require("data", "pyarrow")
        with open(path, "rb") as f:
            data = f.read()
        yield pa.table({"bytes": pa.array([data], type=pa.binary())})


class ImageDatasource(FileDatasource):
    name = "ReadImage"
    reader_name = "read_images"
    file_extensions = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"]

    def __init__(self, paths, size=None, mode=None, **kw):
        import importlib.util
        if importlib.util.find_spec("PIL") is None:
            raise ImportError("read_images needs Pillow: pip install pillow")
        super().__init__(paths, **kw)
        self.size = size
        self.mode = mode

    def read_file(self, path):
        from PIL import Image
        with Image.open(path) as img:
            if self.mode is not None:
                img = img.convert(self.mode)
            if self.size is not None:
                h, w = self.size
                img = img.resize((w, h))
            arr = np.asarray(img)
        yield B.NumpyBlock({"image": arr[np.newaxis, ...]})


class ParquetDatasource(Datasource):
    """Parquet files (a file, directory or glob), split into blocks by row groups. Columns
    and expression filters are pushed into the read."""

    name = "ReadParquet"

    def __init__(self, paths, columns=None, filter_expr=None, include_paths=False, ignore_missing_paths=False,
                 partitioning=Partitioning("hive"), file_extensions=("parquet",), shuffle=None, arrow_args=None,
                 _planned=None):
        self.columns = list(columns) if columns is not None else None
        self.filter = filter_expr
        self.include_paths = include_paths
        self.arrow_args = dict(arrow_args or {})
        if _planned is not None:
            self.files, self._parts, self.units, self._schema = _planned
            return
        pq = require("data", "pyarrow.parquet")
        self.files = expand_paths(paths, file_extensions, ignore_missing_paths, "read_parquet")
        if shuffle == "files":
            import random
            random.shuffle(self.files)
        self._parts = [partitioning.parse(f, base) if partitioning else {} for f, base in self.files]
        self.units = []       # (uncompressed bytes, rows, file index, row group)
        first = None
        for i, (f, _) in enumerate(self.files):
            try:
                pf = pq.ParquetFile(f)
            except Exception as e:
                raise ValueError(f"read_parquet: {f!r} is not a Parquet file: {e}") from None
            md = pf.metadata
            schema = pf.schema_arrow
            if first is None:
                first = (schema, f)
            elif not schema.equals(first[0]):
                raise ValueError(_schema_mismatch(first[1], first[0], f, schema))
            for rg in range(md.num_row_groups):
                r = md.row_group(rg)
                self.units.append((r.total_byte_size, r.num_rows, i, rg))
        names = list(first[0].names) if first else []
        types = [str(t) for t in first[0].types] if first else []
        for k in (self._parts[0] if self._parts else {}):
            if k not in names:
                names.append(k)
                types.append("string")
        if include_paths:
            names.append("path")
            types.append("string")
        self._schema = B.Schema(names, types)

    def _copy(self, **kw):
        args = dict(columns=self.columns, filter_expr=self.filter, include_paths=self.include_paths,
                    arrow_args=self.arrow_args, _planned=(self.files, self._parts, self.units, self._schema))
        args.update(kw)
        return ParquetDatasource(None, **args)

    def with_columns(self, columns):
        if self.filter is not None:
            return None
        missing = [c for c in columns if c not in self._schema.names]
        if missing:
            return None  # the projection raises its own error
        return self._copy(columns=list(columns))

    def with_filter(self, expr):
        if self.filter is not None:
            return None
        return self._copy(filter_expr=expr)

    def num_rows(self):
        if self.filter is not None:
            return None
        return sum(u[1] for u in self.units)

    def schema(self):
        if self.columns is None:
            return self._schema
        return B.Schema(self.columns, [self._schema.types[self._schema.names.index(c)] for c in self.columns])

    def input_files(self):
        return [f for f, _ in self.files]

    def get_read_tasks(self, parallelism, ctx):
        if not self.units:
            return [ReadTask(_ParquetRead(self, []), 0, 0, [], "no row groups")]
        total = sum(u[0] for u in self.units)
        k = target_num_blocks(parallelism, total, len(self.units), ctx)
        groups = pack_units([(u[0], u) for u in self.units], k)
        tasks = []
        for g in groups:
            files = sorted({self.files[u[2]][0] for u in g})
            rows = sum(u[1] for u in g) if self.filter is None else None
            loc = f"{files[0]} row groups {g[0][3]}..{g[-1][3]}" if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"
            tasks.append(ReadTask(_ParquetRead(self, g), rows, sum(u[0] for u in g), files, loc))
        return tasks


def _schema_mismatch(f1, s1, f2, s2):
    a = {n: str(t) for n, t in zip(s1.names, s1.types)}
    b = {n: str(t) for n, t in zip(s2.names, s2.types)}
    diffs = []
    for n in list(a) + [x for x in b if x not in a]:
        if a.get(n) != b.get(n):
            diffs.append(f"{n}: {a.get(n, '(missing)')} vs {b.get(n, '(missing)')}")
    return (f"read_parquet: schemas differ between {f1!r} and {f2!r}: " + "; ".join(diffs)
            + ". Read them separately or make them agree.")


class _ParquetRead:
    def __init__(self, ds, units):
        self.ds = ds
        self.units = units

    def __call__(self):
        pq = require("data", "pyarrow.parquet")
        ds = self.ds
        by_file = {}
        for u in self.units:
            by_file.setdefault(u[2], []).append(u[3])
        for i, rgs in by_file.items():
            path = ds.files[i][0]
            parts = ds._parts[i]
            cols = ds.columns
            read_cols = None
            if cols is not None:
                read_cols = [c for c in cols if c not in parts and c != "path"]
                if ds.filter is not None:
                    read_cols = None
            pf = pq.ParquetFile(path, memory_map=True)
            t = pf.read_row_groups(rgs, columns=read_cols, use_threads=False)
            t = _decorate(t, path, parts, ds.include_paths)
            if ds.filter is not None:
                t = t.filter(ds.filter)
            if cols is not None:
                t = t.select(cols)
            yield t


def write_name(uuid, index, ext):
    return f"{uuid}_{index:06d}_000000.{ext}"


def _ensure_dir(path):
    os.makedirs(path, exist_ok=True)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


def write_block(block, fmt, path, name, options):
    """Writes one block as one file; returns the file's path."""
    full = os.path.join(path, name)
    if fmt == "parquet":
        pq = require("data", "pyarrow.parquet")
        pq.write_table(B.to_arrow(block), full, **options)
    elif fmt == "csv":
        csv = require("data", "pyarrow.csv")
        csv.write_csv(B.to_arrow(block), full, **options)
    elif fmt == "json":
        with open(full, "w") as f:
            for row in B.iter_rows(block):
                f.write(json.dumps(row, default=_json_default))
                f.write("\n")
    elif fmt == "numpy":
        col = options["column"]
        np.save(full, B.column(block, col))
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return full
