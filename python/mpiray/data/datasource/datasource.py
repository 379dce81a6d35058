"""The datasource interface and its helpers: read tasks, default parallelism, path lists."""

import glob
import math
import os

from .. import block as B


class ReadTask:
    """One unit of reading: ``task()`` yields blocks. Runs in a worker (must pickle)."""

    def __init__(self, fn, num_rows=None, size_bytes=None, input_files=(), location=""):
        self.fn = fn
        self.num_rows = num_rows
        self.size_bytes = size_bytes
        self.input_files = list(input_files)
        self.location = location

    def __call__(self):
        out = self.fn()
        if B.is_block(out):
            return iter([out])
        return iter(out)

    def __repr__(self):
        return f"ReadTask({self.location or self.input_files})"


class Datasource:
    """Base of the datasources. ``get_read_tasks(parallelism, ctx)`` plans the reading."""

    name = "Read"

    def get_read_tasks(self, parallelism, ctx):
        raise NotImplementedError

    def num_rows(self):
        return None

    def schema(self):
        return None

    def input_files(self):
        return []

    def with_columns(self, columns):
        """A copy that reads only ``columns``, or None when it cannot push them down."""
        return None

    def with_filter(self, expr):
        """A copy that applies ``expr`` while reading, or None."""
        return None


def target_num_blocks(parallelism, est_bytes, max_units, ctx):
    """How many blocks a read is split into: ``parallelism`` (override_num_blocks) when given,
    else enough for two tasks per CPU and blocks of at most half ``target_max_block_size``,
    but no blocks smaller than ``target_min_block_size`` and at most
    ``read_op_min_num_blocks``."""
    max_units = max(1, int(max_units))
    if parallelism is not None and parallelism != -1:
        if parallelism < 1:
            raise ValueError(f"override_num_blocks must be >= 1, got {parallelism}")
        return min(int(parallelism), max_units)
    from .._internal.executor import cluster_cpus
    cpus = int(cluster_cpus())
    est_bytes = max(0, int(est_bytes or 0))
    n = max(2 * cpus, math.ceil(est_bytes / max(1, ctx.target_max_block_size // 2)))
    n = min(n, max(1, est_bytes // max(1, ctx.target_min_block_size)), max(ctx.read_op_min_num_blocks, 1))
    return max(1, min(n, max_units))


_GLOB_CHARS = set("*?[")


def expand_paths(paths, file_extensions=None, ignore_missing_paths=False, what="read"):
    """Files named by ``paths`` (files, directories walked recursively, or glob patterns), in
    sorted order, each with the directory it was found under (for partitioning). Missing paths
    raise FileNotFoundError listing what was tried."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError(f"{what}: no paths given")
    exts = None
    if file_extensions:
        exts = tuple("." + e.lower().lstrip(".") for e in file_extensions)
    found, missing = [], []
    for p in paths:
        if "://" in p:
            if p.startswith("file://"):
                p = p[len("file://"):]
            else:
                raise ValueError(f"{what}: only local file system paths are supported, got {p!r} (mount the "
                                 f"storage, or copy the data to a local or parallel file system)")
        p = os.path.expanduser(p)
        if any(c in _GLOB_CHARS for c in p):
            matches = sorted(glob.glob(p, recursive=True))
            if not matches:
                missing.append(p)
            base = _glob_base(p)
            for m in matches:
                if os.path.isdir(m):
                    found.extend((f, m) for f in _walk(m, exts))
                elif _wanted(m, exts):
                    found.append((m, base))
        elif os.path.isdir(p):
            found.extend((f, p) for f in _walk(p, exts))
        elif os.path.isfile(p):
            found.append((p, os.path.dirname(p)))
        else:
            missing.append(p)
    if missing and not ignore_missing_paths:
        tried = ", ".join(repr(p) for p in paths)
        raise FileNotFoundError(f"{what}: no such file or directory: {missing[0]!r}"
                                + (f" (tried: {tried})" if len(paths) > 1 or missing[0] != paths[0] else ""))
    if not found and not ignore_missing_paths:
        hint = f" with extensions {list(file_extensions)}" if file_extensions else ""
        raise FileNotFoundError(f"{what}: no files{hint} found in {paths}")
    seen, out = set(), []
    for f, base in found:
        if f not in seen:
            seen.add(f)
            out.append((f, base))
    return out


def _glob_base(pattern):
    parts = pattern.split(os.sep)
    keep = []
    for part in parts:
        if any(c in _GLOB_CHARS for c in part):
            break
        keep.append(part)
    return os.sep.join(keep) or "."


def _wanted(path, exts):
    name = os.path.basename(path)
    if name.startswith(".") or name.startswith("_"):
        return False
    return exts is None or path.lower().endswith(exts)


def _walk(d, exts):
    out = []
    for root, dirs, files in os.walk(d):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        for f in sorted(files):
            full = os.path.join(root, f)
            if _wanted(full, exts):
                out.append(full)
    return out


def pack_units(units, num_blocks):
    """Group consecutive (size, item) units into at most ``num_blocks`` groups of about equal
    size."""
    if not units:
        return []
    total = sum(max(1, u[0]) for u in units)
    per = total / max(1, num_blocks)
    groups, cur, cur_size = [], [], 0
    for size, item in units:
        size = max(1, size)
        if cur and cur_size + size / 2 > per and len(groups) < num_blocks - 1:
            groups.append(cur)
            cur, cur_size = [], 0
        cur.append(item)
        cur_size += size
    if cur:
        groups.append(cur)
    return groups
