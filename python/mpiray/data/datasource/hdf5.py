"""HDF5 for mpiray.data, on the native reader/writer (libs/hdf5, ``mpiray._hdf5``).

Reading: the driver describes the datasets (shape, chunking, type) and splits each file along
its first axis at multiples of the chunk rows; each read task opens the file itself and reads
its rows with one hyperslab read per dataset. A read with nothing fused after it returns its
block with the numeric columns unread and has the runtime call back (``read_deferred``,
``mpiray._api._filled``) to read the rows straight into the block's object in shared memory;
otherwise (a fused map, strings, compound members: one column per member) the rows go into
numpy arrays reused from a small per-thread pool once nothing refers to them anymore (warm
pages), which the runtime copies into the object store. Readers map blocks without a copy.

Writing: each block writes its rows into a file of its own, in parallel; the driver then
writes ``path`` with one virtual dataset per column that maps the blocks' files in order, so
that ``h5py.File(path)["x"]`` is one array.
"""

import os
import shutil
import sys
import threading

import numpy as np

from .. import block as B
from .datasource import Datasource, ReadTask, expand_paths, target_num_blocks

_native = None


def native():
    global _native
    if _native is None:
        try:
            from .. import _hdf5_loader
            _native = _hdf5_loader.load()
        except ImportError as e:
            raise ImportError(f"mpiray.data's HDF5 support is not available: {e}. mpiray must be built with "
                              f"MPIRAY_WITH_HDF5=ON (Debian: apt-get install libhdf5-dev libhdf5-openmpi-dev)") from None
    return _native


class HDF5Error(OSError):
    """An HDF5 file or dataset could not be read or written; the message names both."""


class HDF5DatasetNotFoundError(HDF5Error, LookupError):
    """The file has no dataset (or object) of that name."""


class HDF5ValueError(HDF5Error, ValueError):
    """The dataset cannot be read or written as asked (type, rows, filters, ...)."""


def _wrap(e):
    h = native()
    msg = str(e)
    if isinstance(e, h.NotFoundError):
        if "does not exist" in msg and msg.startswith("HDF5 file"):
            return FileNotFoundError(msg)
        return HDF5DatasetNotFoundError(msg)
    if isinstance(e, h.InvalidError):
        return HDF5ValueError(msg)
    return HDF5Error(msg)


def call(fn, *args, **kwargs):
    """Calls into the native module, turning its errors into the exceptions above."""
    h = native()
    try:
        return fn(*args, **kwargs)
    except h.Error as e:
        raise _wrap(e) from None


def open_file(path):
    return call(native().File, os.fspath(path))


# ----------------------------------------------------------------------------- types


def dtype_of(t):
    """The numpy dtype of a native type description."""
    c = t["class"]
    s = t["size"]
    if c == "int":
        return np.dtype(f"<i{s}")
    if c == "uint":
        return np.dtype(f"<u{s}")
    if c == "float":
        return np.dtype(f"<f{s}")
    if c == "bool":
        return np.dtype(bool)
    if c == "string":
        return np.dtype(f"S{s}")
    if c == "vstring":
        return np.dtype(object)
    if c == "opaque":
        return np.dtype(f"V{s}")
    if c == "array":
        return np.dtype((dtype_of(t["base"]), tuple(t["dims"])))
    if c == "compound":
        return np.dtype({"names": [m[0] for m in t["members"]],
                         "formats": [dtype_of(m[2]) for m in t["members"]],
                         "offsets": [m[1] for m in t["members"]], "itemsize": s})
    raise HDF5ValueError(f"unsupported HDF5 type {t}")


def type_of(dt, what="column"):
    """The native type description of a numpy dtype (for writing)."""
    dt = np.dtype(dt)
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        bt = type_of(base, what)
        n = int(np.prod(shape))
        return {"class": "array", "size": bt["size"] * n, "dims": list(shape), "base": bt, "utf8": False}
    if dt.names is not None:
        members, off = [], 0
        for name in dt.names:
            sub = dt.fields[name][0]
            mt = type_of(sub, f"{what} member {name!r}")
            members.append((name, off, mt))
            off += mt["size"]
        return {"class": "compound", "size": off, "members": members, "utf8": False}
    k = dt.kind
    if k == "b":
        return {"class": "bool", "size": 1, "utf8": False}
    if k == "i":
        return {"class": "int", "size": dt.itemsize, "utf8": False}
    if k == "u":
        return {"class": "uint", "size": dt.itemsize, "utf8": False}
    if k == "f" and dt.itemsize in (2, 4, 8):
        return {"class": "float", "size": dt.itemsize, "utf8": False}
    if k == "S":
        return {"class": "string", "size": max(1, dt.itemsize), "utf8": False}
    if k in ("U", "O"):
        return {"class": "vstring", "size": 8, "utf8": True}
    raise HDF5ValueError(f"{what} has dtype {dt}, which write_hdf5 cannot store in HDF5")


def _pack_compound(arr):
    """A structured array in the packed layout that type_of() describes."""
    dt = arr.dtype
    packed = np.dtype({"names": list(dt.names), "formats": [dt.fields[n][0] for n in dt.names]})
    if packed == dt:
        return np.ascontiguousarray(arr)
    out = np.empty(arr.shape, dtype=packed)
    for n in dt.names:
        out[n] = arr[n]
    return out


# ----------------------------------------------------------------------------- staging buffers

_pool = threading.local()
_MIN_POOLED = 1 << 20


def staging_empty(shape, dtype):
    """``np.empty(shape, dtype)``, from a per-thread pool of buffers that nothing else refers to
    anymore (warm pages: the copy into the object store does not fault fresh memory)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes < _MIN_POOLED or dtype.hasobject:
        return np.empty(shape, dtype)
    bufs = getattr(_pool, "bufs", None)
    if bufs is None:
        bufs = _pool.bufs = []
    for i in range(len(bufs)):
        # 2: the list's reference and getrefcount's argument; views of the buffer add theirs.
        if bufs[i].nbytes >= nbytes and sys.getrefcount(bufs[i]) <= 2:
            return bufs[i][:nbytes].view(dtype).reshape(shape)
    buf = np.empty(nbytes, dtype=np.uint8)
    bufs.append(buf)
    if len(bufs) > 2:
        # Forget the oldest idle one (a busy one stays alive through its views anyway).
        for i in range(len(bufs) - 1):
            if sys.getrefcount(bufs[i]) <= 2:
                del bufs[i]
                break
        else:
            del bufs[0]
    return buf[:nbytes].view(dtype).reshape(shape)


# ----------------------------------------------------------------------------- reading


class _Column:
    __slots__ = ("name", "dataset", "member", "dtype", "row_shape")

    def __init__(self, name, dataset, member, dtype, row_shape):
        self.name = name
        self.dataset = dataset
        self.member = member
        self.dtype = dtype
        self.row_shape = tuple(row_shape)

    def key(self):
        return (self.name, self.dataset, self.member, str(self.dtype), self.row_shape)

    def type_str(self):
        if self.dtype == object:
            return "string" if not self.row_shape else f"numpy.ndarray(shape={self.row_shape}, dtype=object)"
        if self.row_shape:
            return f"numpy.ndarray(shape={self.row_shape}, dtype={self.dtype})"
        return B._numpy_type_str(np.empty(0, self.dtype))


def _plan_file(path, datasets):
    f = open_file(path)
    names = list(datasets) if datasets is not None else call(f.list_datasets)
    if not names:
        raise HDF5ValueError(f"read_hdf5: HDF5 file {path!r} has no datasets")
    infos = []
    for n in names:
        info = call(f.describe, n)
        if len(info["shape"]) == 0:
            raise HDF5ValueError(f"read_hdf5: dataset {info['name']!r} in {path!r} is a scalar; read it with "
                                 f"mpiray.data.hdf5_attributes() or pass datasets= without it")
        for flt in info["filters"]:
            if not flt["available"]:
                raise HDF5ValueError(f"read_hdf5: dataset {info['name']!r} in {path!r} is compressed with the "
                                     f"HDF5 filter {flt['name']!r} (id {flt['id']}), which this HDF5 library "
                                     f"does not have (install its plugin and set HDF5_PLUGIN_PATH)")
        infos.append(info)
    rows = {i["name"]: i["shape"][0] for i in infos}
    if len(set(rows.values())) > 1:
        raise HDF5ValueError(f"read_hdf5: the datasets of {path!r} have different numbers of rows {rows}; "
                             f"pass datasets= with datasets of equal length (they become columns of one table)")
    cols = []
    for info in infos:
        t = info["type"]
        row_shape = info["shape"][1:]
        if t["class"] == "compound":
            for (mname, _off, mt) in t["members"]:
                mdt = dtype_of(mt)
                if mdt.subdtype is not None:
                    cols.append(_Column(mname, info["name"], mname, mdt.subdtype[0], row_shape + tuple(mdt.subdtype[1])))
                else:
                    cols.append(_Column(mname, info["name"], mname, mdt, row_shape))
        else:
            dt = dtype_of(t)
            if dt.subdtype is not None:
                cols.append(_Column(info["name"], info["name"], None, dt.subdtype[0], row_shape + tuple(dt.subdtype[1])))
            else:
                cols.append(_Column(info["name"], info["name"], None, dt, row_shape))
    seen = {}
    for c in cols:
        if c.name in seen:
            raise HDF5ValueError(f"read_hdf5: column {c.name!r} comes from both {seen[c.name]!r} and "
                                 f"{c.dataset!r} in {path!r}; read them with separate read_hdf5 calls")
        seen[c.name] = c.dataset
    chunk_rows = 1
    for info in infos:
        if info["chunks"]:
            chunk_rows = max(chunk_rows, int(info["chunks"][0]))
    row_bytes = 0
    for info in infos:
        n = int(np.prod(info["shape"][1:])) if len(info["shape"]) > 1 else 1
        row_bytes += n * info["type"]["size"]
    return infos, cols, int(next(iter(rows.values()))), chunk_rows, max(1, row_bytes)


class HDF5Datasource(Datasource):
    name = "ReadHDF5"

    def __init__(self, paths, datasets=None, include_paths=False, ignore_missing_paths=False,
                 file_extensions=("h5", "hdf5", "he5", "hdf", "nc"), partitioning=None):
        native()
        if isinstance(datasets, str):
            datasets = [datasets]
        self.datasets = list(datasets) if datasets is not None else None
        self.include_paths = include_paths
        self.files = expand_paths(paths, file_extensions, ignore_missing_paths, "read_hdf5")
        self.partitioning = partitioning
        self.plans = []
        first = None
        for f, base in self.files:
            infos, cols, rows, chunk_rows, row_bytes = _plan_file(f, self.datasets)
            if first is None:
                first = (f, cols)
            elif [c.key() for c in cols] != [c.key() for c in first[1]]:
                raise HDF5ValueError(_mismatch(first[0], first[1], f, cols))
            parts = partitioning.parse(f, base) if partitioning else {}
            self.plans.append((f, cols, rows, chunk_rows, row_bytes, parts))
        self.columns = first[1] if first else []

    def input_files(self):
        return [p[0] for p in self.plans]

    def num_rows(self):
        return sum(p[2] for p in self.plans)

    def schema(self):
        names = [c.name for c in self.columns]
        types = [c.type_str() for c in self.columns]
        if self.plans and self.plans[0][5]:
            for k in self.plans[0][5]:
                names.append(k)
                types.append("string")
        if self.include_paths:
            names.append("path")
            types.append("string")
        return B.Schema(names, types)

    def get_read_tasks(self, parallelism, ctx):
        total_bytes = sum(p[2] * p[4] for p in self.plans)
        units = sum(max(1, -(-p[2] // p[3])) for p in self.plans)
        k = target_num_blocks(parallelism, total_bytes, units, ctx)
        block_bytes = max(1, total_bytes / k)
        tasks = []
        for (f, cols, rows, chunk_rows, row_bytes, parts) in self.plans:
            if rows == 0:
                continue
            per = max(1, int(block_bytes // row_bytes))
            per = max(chunk_rows, (per // chunk_rows) * chunk_rows)
            if parallelism not in (None, -1):
                # override_num_blocks: spread this file's rows evenly, still on chunk boundaries.
                share = max(1, round(k * rows * row_bytes / max(1, total_bytes)))
                per = max(chunk_rows, -(-(-(-rows // share)) // chunk_rows) * chunk_rows)
            for start in range(0, rows, per):
                count = min(per, rows - start)
                tasks.append(ReadTask(_HDF5Read(f, cols, start, count, parts, self.include_paths), count,
                                      count * row_bytes, [f], f"rows {start}..{start + count} of {f}"))
        return tasks or [ReadTask(_HDF5Read(None, self.columns, 0, 0, {}, self.include_paths), 0, 0, [], "empty")]


def _mismatch(f1, c1, f2, c2):
    a = {c.name: (str(c.dtype), c.row_shape) for c in c1}
    b = {c.name: (str(c.dtype), c.row_shape) for c in c2}
    diffs = []
    for n in list(a) + [x for x in b if x not in a]:
        if a.get(n) != b.get(n):
            fa = f"{a[n][0]}{list(a[n][1]) if a[n][1] else ''}" if n in a else "(missing)"
            fb = f"{b[n][0]}{list(b[n][1]) if b[n][1] else ''}" if n in b else "(missing)"
            diffs.append(f"{n}: {fa} vs {fb}")
    return (f"read_hdf5: files have different schemas: {f1!r} and {f2!r} differ in " + "; ".join(diffs))


class _HDF5Read:
    def __init__(self, path, cols, start, count, parts, include_paths):
        self.path = path
        self.cols = cols
        self.start = start
        self.count = count
        self.parts = parts
        self.include_paths = include_paths

    def read_deferred(self, max_bytes=None):
        """The task's blocks for ``execute_deferred`` (remote.py): ``[(block, fills), ...]``,
        where the block's plain numeric columns are still unread (``np.empty``, untouched) and
        ``fills`` maps each such array's address to a function that reads its rows into a
        buffer; the runtime calls it with the array's place in the object's shared memory, so
        the rows go from the file straight into the store (no staging copy). Other columns
        (strings, compound members) are read as usual. A block of more than 1.5 ``max_bytes``
        is split into blocks of about ``max_bytes`` (as pack_outputs splits other outputs).
        None when nothing is left to defer."""
        from .file_formats import _decorate
        if self.path is None or self.count == 0:
            return None
        if not any(c.member is None and c.dtype != object for c in self.cols):
            return None
        row_bytes = sum(int(np.prod(c.row_shape, dtype=np.int64)) * c.dtype.itemsize for c in self.cols)
        per = self.count
        if max_bytes and row_bytes * self.count > 1.5 * max_bytes:
            per = max(1, int(max_bytes // max(1, row_bytes)))
        f = open_file(self.path)
        out = []
        for start in range(self.start, self.start + self.count, per):
            count = min(per, self.start + self.count - start)
            part = _HDF5Read(self.path, self.cols, start, count, self.parts, self.include_paths)
            cols, fills = part._read_columns(f, defer=True)
            block = _decorate(B.NumpyBlock({c.name: cols[c.name] for c in self.cols}), self.path, self.parts,
                              self.include_paths)
            out.append((block, fills))
        return out

    def _read_columns(self, f, defer=False):
        out, fills = {}, {}
        by_ds = {}
        for c in self.cols:
            by_ds.setdefault(c.dataset, []).append(c)
        for ds, cols in by_ds.items():
            if cols[0].member is None:
                c = cols[0]
                if c.dtype == object:
                    vals = call(f.read_strings, ds, self.start, self.count)
                    arr = np.empty(len(vals), dtype=object)
                    arr[:] = vals
                    out[c.name] = arr.reshape((self.count,) + c.row_shape)
                elif defer and self.count:
                    arr = np.empty((self.count,) + c.row_shape, c.dtype)
                    out[c.name] = arr
                    fills[arr.ctypes.data] = _RowFill(f, ds, self.start, self.count, arr.nbytes)
                else:
                    arr = staging_empty((self.count,) + c.row_shape, c.dtype)
                    call(f.read_rows, ds, self.start, self.count, arr.reshape(-1).view(np.uint8)
                         if arr.size else arr)
                    out[c.name] = arr
            else:
                info = call(f.describe, ds)
                dt = dtype_of(info["type"])
                rec = staging_empty((self.count,) + tuple(info["shape"][1:]), dt)
                call(f.read_rows, ds, self.start, self.count, rec.reshape(-1).view(np.uint8) if rec.size else rec)
                for c in cols:
                    out[c.name] = np.ascontiguousarray(rec[c.member])
                del rec
        return out, fills

    def __call__(self):
        from .file_formats import _decorate
        if self.path is None:
            yield B.NumpyBlock({c.name: np.empty((0,) + c.row_shape, c.dtype) for c in self.cols})
            return
        f = open_file(self.path)
        out, _ = self._read_columns(f)
        yield _decorate(B.NumpyBlock({c.name: out[c.name] for c in self.cols}), self.path, self.parts,
                        self.include_paths)


class _RowFill:
    """Reads rows of one dataset into a buffer the runtime hands over (see read_deferred)."""

    __slots__ = ("f", "ds", "start", "count", "nbytes")

    def __init__(self, f, ds, start, count, nbytes):
        self.f = f
        self.ds = ds
        self.start = start
        self.count = count
        self.nbytes = nbytes

    def __call__(self, dst):
        if len(dst) != self.nbytes:
            raise HDF5Error(f"read_hdf5: internal error: buffer of {len(dst)} bytes for {self.nbytes} bytes of rows")
        call(self.f.read_rows, self.ds, self.start, self.count, dst)


def read_attributes(path, name="/"):
    """The attributes of an object of an HDF5 file ("/" for the file) as a dict of numpy
    values (scalars for scalar attributes, str for strings)."""
    f = open_file(path)
    out = {}
    for a in call(f.read_attributes, name):
        shape = tuple(a["shape"])
        if "strings" in a:
            vals = a["strings"]
            out[a["name"]] = vals[0] if not shape else np.array(vals, dtype=object).reshape(shape)
            continue
        dt = dtype_of(a["type"])
        arr = np.frombuffer(a["data"], dtype=dt).reshape(shape) if a["data"] else np.empty(shape, dt)
        if dt.kind == "S":
            arr = arr.astype(dt)
        out[a["name"]] = arr[()] if not shape else arr.copy()
    return out


def list_datasets(path):
    """The datasets of an HDF5 file (full paths without the leading "/")."""
    return call(open_file(path).list_datasets)


def describe(path, dataset):
    """Shape, chunks, layout ("contiguous", "chunked", "compact", "virtual"), numpy dtype and
    filters of a dataset."""
    info = call(open_file(path).describe, dataset)
    info = dict(info)
    info["dtype"] = dtype_of(info.pop("type"))
    return info


# ----------------------------------------------------------------------------- writing


def _column_spec(name, arr):
    if arr.dtype == object or arr.dtype.kind == "U":
        flat = arr.reshape(-1)
        kinds = {type(x) for x in flat.tolist()}
        if kinds <= {str}:
            return {"class": "vstring", "size": 8, "utf8": True}, list(flat.tolist())
        if kinds <= {bytes}:
            return {"class": "vstring", "size": 8, "utf8": False}, list(flat.tolist())
        if kinds and all(issubclass(k, np.ndarray) for k in kinds):
            raise HDF5ValueError(f"write_hdf5: column {name!r} holds arrays of different shapes, which one HDF5 "
                                 f"dataset cannot store; make them equal (pad or resize) first")
        raise HDF5ValueError(f"write_hdf5: column {name!r} holds Python objects of types "
                             f"{sorted(k.__name__ for k in kinds)}, which HDF5 cannot store")
    t = type_of(arr.dtype, f"column {name!r}")
    if arr.dtype.names is not None:
        arr = _pack_compound(arr)
    return t, np.ascontiguousarray(arr)


class WriteHDF5:
    """The write transform: one file per block under ``<path>.parts/``."""

    preserves_rows = False

    def __init__(self, path, names, chunks, deflate, shuffle, parts_dir):
        self.path = path
        self.names = names
        self.chunks = chunks
        self.deflate = deflate
        self.shuffle = shuffle
        self.parts_dir = parts_dir
        self.name = "Write"

    def init(self):
        pass

    def __call__(self, blocks, tctx):
        import json
        blocks = list(blocks)
        block = B.concat(blocks) if len(blocks) != 1 else blocks[0]
        nb = B.to_numpy_block(block)
        n = nb.num_rows()
        cols = self.names or {k: k for k in nb.columns}
        specs, datasets = [], []
        for col, dsname in cols.items():
            if col not in nb.columns:
                raise ValueError(f"write_hdf5: column {col!r} not found; the dataset has {list(nb.columns)}")
            arr = nb.columns[col]
            t, data = _column_spec(col, arr)
            shape = list(arr.shape)
            d = {"name": dsname, "type": t, "shape": shape}
            if t["class"] == "vstring":
                d["strings"] = data
            else:
                d["data"] = data.reshape(-1).view(np.uint8) if data.size else np.empty(0, np.uint8)
            ch = self.chunks.get(col) if isinstance(self.chunks, dict) else self.chunks
            if ch is not None:
                d["chunks"] = _chunk_shape(ch, shape)
            if self.deflate is not None:
                d["deflate"] = int(self.deflate)
            d["shuffle"] = bool(self.shuffle)
            datasets.append(d)
            specs.append({"name": dsname, "type": t, "row_shape": shape[1:]})
        fname = f"part-{tctx.task_index:06d}.h5"
        full = os.path.join(self.parts_dir, fname)
        call(native().write_file, full, datasets)
        rel = os.path.join(os.path.basename(self.parts_dir), fname)
        pa = B._pa()
        yield pa.table({"file": [rel], "rows": [n], "spec": [json.dumps(specs)]})


def _chunk_shape(ch, shape):
    """``chunks`` of write_hdf5 for one column: rows (int), or a shape; a shape of another rank
    gives its first entry as rows and whole rows otherwise."""
    if isinstance(ch, (int, np.integer)):
        return [int(ch)] + list(shape[1:])
    ch = [int(c) for c in ch]
    if len(ch) == len(shape):
        return ch
    return [ch[0]] + list(shape[1:])


def finish_write(path, parts_dir, results):
    """Writes ``path``: one virtual dataset per column over the blocks' files."""
    import json
    specs = None
    sources = []
    for r in results:
        s = json.loads(r["spec"])
        if specs is None:
            specs = s
            first_file = r["file"]
        elif [(x["name"], x["type"], x["row_shape"]) for x in s] != \
                [(x["name"], x["type"], x["row_shape"]) for x in specs]:
            a = {x["name"]: (x["type"]["class"], x["type"]["size"], x["row_shape"]) for x in specs}
            b = {x["name"]: (x["type"]["class"], x["type"]["size"], x["row_shape"]) for x in s}
            raise HDF5ValueError(f"write_hdf5: blocks have different column types or shapes ({first_file}: {a}; "
                                 f"{r['file']}: {b}); they cannot form one dataset per column")
        sources.append((r["file"], int(r["rows"])))
    if specs is None:
        specs = []
    vds = []
    for sp in specs:
        vds.append({"name": sp["name"], "type": sp["type"], "row_shape": sp["row_shape"],
                    "sources": [(f, sp["name"], rows) for f, rows in sources if rows > 0]})
    call(native().write_virtual_file, path, vds)


def prepare_write(path, mode):
    """Checks ``mode`` against what exists and returns the parts directory to write into."""
    path = os.fspath(path)
    mode = getattr(mode, "value", mode)
    mode = str(mode).lower()
    if mode not in ("overwrite", "error", "errorifexists", "ignore", "append"):
        raise ValueError(f"write_hdf5: mode must be 'overwrite', 'error' or 'ignore', got {mode!r}")
    if mode == "append":
        raise ValueError("write_hdf5: mode='append' is not supported (an HDF5 file is one logical dataset); "
                         "write another file, or read both and write their union")
    parts = path + ".parts"
    if os.path.exists(path):
        if mode in ("error", "errorifexists"):
            raise FileExistsError(f"write_hdf5: {path!r} exists (mode={mode!r})")
        if mode == "ignore":
            return None
        os.remove(path)
    if os.path.isdir(parts):
        shutil.rmtree(parts)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    os.makedirs(parts)
    return parts
