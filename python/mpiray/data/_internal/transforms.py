"""Block transforms: what a fused map stage runs on a worker, one after the other, each
turning an iterator of blocks into an iterator of blocks (Ray's MapTransformer).

A ``TransformChain`` is put into the object store once per operator and cached per worker
process; callable classes (``map_batches(MyClass, ...)``) are constructed once per actor.
"""

import collections
import inspect
import time

import numpy as np

from .. import block as B


class TaskContext:
    """What a running task knows about itself (passed from the driver)."""

    __slots__ = ("task_index", "op_name", "location", "target_max_block_size", "extra")

    def __init__(self, task_index=0, op_name="", location="", target_max_block_size=128 << 20, extra=None):
        self.task_index = task_index
        self.op_name = op_name
        self.location = location
        self.target_max_block_size = target_max_block_size
        self.extra = extra or {}


class Transform:
    """One step of a chain. ``name`` is what progress bars and stats show."""

    name = "Transform"
    #: True when the transform keeps every row (counts are known without executing).
    preserves_rows = False

    def init(self):
        """Called once per worker process or actor before the first block."""

    def __call__(self, blocks, tctx):
        raise NotImplementedError


def _call_name(fn):
    if inspect.isclass(fn):
        return fn.__name__
    name = getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    return name


class _Batcher:
    """Cuts a stream of blocks into batches of exactly ``batch_size`` rows (the last may be
    smaller); slices within a block are views, batches across blocks are concatenated."""

    def __init__(self, batch_size):
        self.batch_size = batch_size
        self.buf = collections.deque()
        self.rows = 0

    def add(self, block):
        n = B.num_rows(block)
        if n:
            self.buf.append(block)
            self.rows += n

    def has_batch(self):
        return self.rows >= self.batch_size

    def next_batch(self, final=False):
        want = self.batch_size if not final else min(self.batch_size, self.rows)
        parts = []
        got = 0
        while got < want:
            b = self.buf[0]
            n = B.num_rows(b)
            take = min(n, want - got)
            if take == n:
                parts.append(self.buf.popleft())
            else:
                parts.append(B.slice_block(b, 0, take))
                self.buf[0] = B.slice_block(b, take, n)
            got += take
        self.rows -= got
        return parts[0] if len(parts) == 1 else B.concat(parts)


def iter_batches_of(blocks, batch_size):
    """Blocks regrouped into batches of ``batch_size`` rows (None: each block as it is)."""
    if batch_size is None:
        for b in blocks:
            yield b
        return
    batcher = _Batcher(batch_size)
    for b in blocks:
        batcher.add(b)
        while batcher.has_batch():
            yield batcher.next_batch()
    if batcher.rows:
        yield batcher.next_batch(final=True)


class _UserFn(Transform):
    """A user's function or callable class (constructed once per process, on first use; the
    instance is never pickled) with its extra arguments."""

    def __init__(self, fn, fn_args=(), fn_kwargs=None, fn_constructor_args=(), fn_constructor_kwargs=None,
                 label=None):
        self.fn = fn
        self.fn_args = tuple(fn_args or ())
        self.fn_kwargs = dict(fn_kwargs or {})
        self.ctor_args = tuple(fn_constructor_args or ())
        self.ctor_kwargs = dict(fn_constructor_kwargs or {})
        self.is_class = inspect.isclass(fn)
        self.name = f"{label or self.label}({_call_name(fn)})"
        self._callable = None

    def init(self):
        if self._callable is None:
            self._callable = self.fn(*self.ctor_args, **self.ctor_kwargs) if self.is_class else self.fn

    def __getstate__(self):
        st = dict(self.__dict__)
        st["_callable"] = None
        return st


class MapBatches(_UserFn):
    def __init__(self, fn, batch_size=None, batch_format="default", fn_args=(), fn_kwargs=None,
                 fn_constructor_args=(), fn_constructor_kwargs=None, label="MapBatches"):
        super().__init__(fn, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs, label)
        self.batch_size = batch_size
        self.batch_format = batch_format or "default"

    def __call__(self, blocks, tctx):
        self.init()
        fn = self._callable
        for batch_block in iter_batches_of(blocks, self.batch_size):
            batch = B.to_batch(batch_block, self.batch_format)
            out = fn(batch, *self.fn_args, **self.fn_kwargs)
            if inspect.isgenerator(out) or (isinstance(out, collections.abc.Iterator) and not isinstance(out, dict)):
                for o in out:
                    yield B.batch_to_block(o, "fn")
            else:
                yield B.batch_to_block(out, "fn")


_ROW_ERROR = ("Error validating {out!r}: Standalone Python objects are not allowed in Ray >= 2.5. To return "
              "Python objects from map(), wrap them in a dict, e.g., return `{{'item': item}}` instead of just "
              "`item`.")


class _RowFn(_UserFn):
    """A per-row function (Map, FlatMap, Filter)."""


class MapRows(_RowFn):
    label = "Map"
    preserves_rows = True

    def __call__(self, blocks, tctx):
        self.init()
        fn = self._callable
        for b in blocks:
            rows = []
            for row in B.iter_rows(b):
                out = fn(row, *self.fn_args, **self.fn_kwargs)
                if not isinstance(out, collections.abc.Mapping):
                    raise ValueError(_ROW_ERROR.format(out=out))
                rows.append(out)
            if rows:
                yield B.rows_to_block(rows)


class FlatMap(_RowFn):
    label = "FlatMap"

    def __call__(self, blocks, tctx):
        self.init()
        fn = self._callable
        for b in blocks:
            rows = []
            for row in B.iter_rows(b):
                out = fn(row, *self.fn_args, **self.fn_kwargs)
                if isinstance(out, collections.abc.Mapping):
                    out = [out]
                for r in out:
                    if not isinstance(r, collections.abc.Mapping):
                        raise ValueError(_ROW_ERROR.format(out=r))
                    rows.append(r)
            if rows:
                yield B.rows_to_block(rows)


class FilterRows(_RowFn):
    label = "Filter"

    def __call__(self, blocks, tctx):
        self.init()
        fn = self._callable
        for b in blocks:
            keep = [i for i, row in enumerate(B.iter_rows(b)) if fn(row, *self.fn_args, **self.fn_kwargs)]
            if len(keep) == B.num_rows(b):
                yield b
            else:
                yield B.take(b, np.asarray(keep, dtype=np.int64))


class FilterExpr(Transform):
    """``filter(expr=...)``: a pyarrow compute expression evaluated on whole blocks."""

    def __init__(self, expr, text):
        self.expr = expr
        self.name = f"Filter({text})"

    def __call__(self, blocks, tctx):
        from ..expressions import evaluate_mask
        for b in blocks:
            mask = evaluate_mask(b, self.expr)
            yield B.take(b, np.flatnonzero(mask))


class Project(Transform):
    """select_columns / drop_columns / rename_columns."""

    preserves_rows = True

    def __init__(self, select=None, drop=None, rename=None):
        self.select = list(select) if select is not None else None
        self.drop = list(drop) if drop is not None else None
        self.rename = rename
        if select is not None:
            self.name = "Project"
        elif drop is not None:
            self.name = "Project"
        else:
            self.name = "RenameColumns"

    def __call__(self, blocks, tctx):
        for b in blocks:
            if self.select is not None:
                b = B.select(b, self.select)
            if self.drop is not None:
                b = B.drop(b, self.drop)
            if self.rename is not None:
                if isinstance(self.rename, dict):
                    missing = [c for c in self.rename if c not in B.column_names(b)]
                    if missing:
                        raise ValueError(f"rename_columns: column(s) {missing} not found; the dataset has "
                                         f"{B.column_names(b)}")
                    b = B.rename(b, self.rename)
                else:
                    names = B.column_names(b)
                    if len(self.rename) != len(names):
                        raise ValueError(f"rename_columns got {len(self.rename)} names for {len(names)} "
                                         f"columns {names}")
                    b = B.rename(b, dict(zip(names, self.rename)))
            yield b


class AddColumn(Transform):
    preserves_rows = True

    def __init__(self, col, fn, batch_format="pandas"):
        self.col = col
        self.fn = fn
        self.batch_format = batch_format or "pandas"
        self.name = f"AddColumn({col})"

    def __call__(self, blocks, tctx):
        for b in blocks:
            values = self.fn(B.to_batch(b, self.batch_format))
            yield B.add_column(b, self.col, values)


class RandomSample(Transform):
    def __init__(self, fraction, seed):
        self.fraction = fraction
        self.seed = seed
        self.name = "RandomSample"

    def __call__(self, blocks, tctx):
        rng = np.random.default_rng(None if self.seed is None else [self.seed, tctx.task_index])
        for b in blocks:
            mask = rng.random(B.num_rows(b)) < self.fraction
            yield B.take(b, np.flatnonzero(mask))


class TransformChain:
    """Transforms run in order on a task's blocks (fusion puts several operators' transforms
    into one chain)."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    @property
    def name(self):
        return "->".join(t.name for t in self.transforms)

    def init(self):
        for t in self.transforms:
            t.init()

    def apply(self, blocks, tctx):
        it = iter(blocks)
        for t in self.transforms:
            it = t(it, tctx)
        return it


def compact(block):
    """A block that pickles only its own rows: a pyarrow slice would carry its parent's
    buffers into the object store, so it is copied when it is much smaller than them."""
    pa = B._pa()
    if isinstance(block, pa.Table) and block.num_rows:
        try:
            total = block.get_total_buffer_size()
        except Exception:
            return block
        if total > 2 * block.nbytes + 4096:
            return block.take(pa.array(np.arange(block.num_rows, dtype=np.int64)))
    return block


def pack_outputs(blocks, target_max):
    """Output blocks grouped into blocks of at most about ``target_max`` bytes (consecutive
    small outputs concatenated)."""
    blocks = list(blocks)
    nonempty = [b for b in blocks if B.num_rows(b)]
    if not nonempty:
        return [blocks[0]] if blocks else [B.empty_block()]
    groups, cur, cur_bytes = [], [], 0
    for b in nonempty:
        s = B.size_bytes(b)
        if cur and cur_bytes + s > target_max:
            groups.append(cur)
            cur, cur_bytes = [], 0
        cur.append(b)
        cur_bytes += s
    if cur:
        groups.append(cur)
    out = []
    for g in groups:
        blk = g[0] if len(g) == 1 else B.concat(g)
        size = B.size_bytes(blk)
        n = B.num_rows(blk)
        if size > 1.5 * target_max and n > 1:
            per = max(1, int(n * target_max // size))
            out.extend(compact(p) for p in B.split_by_rows(blk, per))
        else:
            out.append(compact(blk))
    return out


def now():
    return time.perf_counter()
