"""Dataset: a lazy, distributed table of rows (Ray's ``ray.data.Dataset``).

Transformations build a logical plan; consuming a dataset (iterating, ``take``, ``count``,
``materialize``, writing) runs it with the streaming executor (``_internal/executor.py``).
Blocks live in the object store; see ``block.py`` for their formats.
"""

import itertools
import math
import os
import uuid

import numpy as np

import mpiray as ray

from . import block as B
from ._internal import plan as P
from ._internal import shuffle as S
from ._internal.executor import ActorPoolStrategy, StreamingExecutor, TaskPoolStrategy
from ._internal.metadata import RefBundle
from ._internal.transforms import (AddColumn, FilterExpr, FilterRows, FlatMap, MapBatches, MapRows, Project,
                                   RandomSample)
from .context import DataContext
from .iterator import StreamSplitDataIterator, _DatasetIterator

_ids = itertools.count()

_REMOTE_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "scheduling_strategy", "runtime_env",
                "max_retries", "retry_exceptions", "accelerator_type", "label_selector", "max_calls",
                "max_concurrency")


def _remote_args(num_cpus=None, num_gpus=None, memory=None, resources=None, ray_remote_args=None, **extra):
    out = {}
    if num_cpus is not None:
        if num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0, got {num_cpus}")
        out["num_cpus"] = num_cpus
    if num_gpus is not None:
        if num_gpus < 0:
            raise ValueError(f"num_gpus must be >= 0, got {num_gpus}")
        out["num_gpus"] = num_gpus
    if memory is not None:
        out["memory"] = memory
    if resources:
        out["resources"] = resources
    for k, v in (ray_remote_args or {}).items():
        out[k] = v
    for k, v in extra.items():
        if v is None:
            continue
        if k in ("label_selector", "fallback_strategy", "max_calls", "accelerator_type", "ray_remote_args_fn",
                 "udf_modifying_row_count"):
            continue  # accepted for compatibility, no effect here
        if k not in _REMOTE_KEYS:
            raise TypeError(f"unexpected keyword argument {k!r}")
        out[k] = v
    return out


def _compute(fn, compute, concurrency, fn_constructor_args, fn_constructor_kwargs, what):
    """(compute strategy, task concurrency) for a map stage."""
    import inspect
    is_class = inspect.isclass(fn)
    if not callable(fn):
        raise TypeError(f"{what}: fn must be a function or a callable class, got {type(fn).__name__}")
    if not is_class and (fn_constructor_args or fn_constructor_kwargs):
        raise ValueError(f"{what}: fn_constructor_args and fn_constructor_kwargs can only be given with a "
                         f"callable class")
    if isinstance(compute, str):
        if compute == "tasks":
            compute = None
        elif compute == "actors":
            compute = ActorPoolStrategy()
        else:
            raise ValueError(f"{what}: compute must be 'tasks', 'actors' or a strategy, got {compute!r}")
    if isinstance(compute, TaskPoolStrategy):
        concurrency = concurrency or compute.size
        compute = None
    if is_class:
        if compute is None:
            if concurrency is None:
                compute = ActorPoolStrategy(min_size=1, max_size=None)
            elif isinstance(concurrency, int):
                compute = ActorPoolStrategy(size=concurrency)
            elif isinstance(concurrency, tuple) and len(concurrency) in (2, 3):
                compute = ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[-1])
            else:
                raise ValueError(f"{what}: concurrency must be an int or a (min, max) tuple, got {concurrency!r}")
        return compute, None
    if isinstance(compute, ActorPoolStrategy):
        raise ValueError(f"{what}: ``compute`` is an ActorPoolStrategy but fn is a function; use a callable "
                         f"class for actors, or leave compute unset")
    if concurrency is not None and not (isinstance(concurrency, int) and concurrency > 0):
        raise ValueError(f"{what}: for a function, concurrency must be a positive int (tasks at once), "
                         f"got {concurrency!r}")
    return None, concurrency


class Dataset:
    """A lazy dataset. See the module docstring and docs/data.md."""

    def __init__(self, plan, context=None, name=None):
        self._plan = plan
        self._context = (context or DataContext.get_current()).copy() if context is None else context
        self._id = next(_ids)
        self._name = name or f"dataset_{self._id}"
        self._executions = 0
        self._last_stats = None

    # ------------------------------------------------------------------ plumbing
    def _with(self, op):
        return Dataset(op, self._context)

    def _execute(self, progress=True):
        self._executions += 1
        root = P.to_physical(P.optimize(self._plan), self._context)
        ex = StreamingExecutor(root, self._context, f"{self._name}_{self._executions}", progress=progress)
        return ex.start()

    def _iter_bundles(self, progress=True):
        ex = self._execute(progress)
        try:
            for b in ex:
                yield b
        finally:
            ex.stop()
            self._last_stats = self._format_stats(ex)
            self._last_executor = ex

    def _bundles(self):
        """Every output bundle (executing the plan unless it is already materialized)."""
        if isinstance(self._plan, P.InputData):
            return list(self._plan.bundles)
        return list(self._iter_bundles())

    def _iter_blocks(self):
        for b in self._iter_bundles():
            yield ray.get(b.ref)

    @property
    def context(self):
        return self._context

    def get_dataset_id(self):
        return self._name

    def _set_name(self, name):
        self._name = name

    # ------------------------------------------------------------------ transforms
    def map_batches(self, fn, *, batch_size=None, compute=None, batch_format="default", zero_copy_batch=True,
                    fn_args=None, fn_kwargs=None, fn_constructor_args=None, fn_constructor_kwargs=None,
                    num_cpus=None, num_gpus=None, memory=None, concurrency=None, **ray_remote_args):
        """Applies ``fn`` to batches (dicts of numpy arrays, pandas DataFrames or pyarrow
        Tables per ``batch_format``); ``fn`` returns a batch (or yields several). A callable
        class runs on an actor pool (``concurrency=n`` or ``(min, max)``) and is constructed
        once per actor. ``batch_size=None`` (the default) gives whole blocks."""
        if batch_size == "default":
            batch_size = 1024
        if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
            raise ValueError(f"map_batches: batch_size must be a positive integer or None, got {batch_size!r}")
        if batch_format not in ("default", "numpy", "pandas", "pyarrow", None):
            raise ValueError(f"map_batches: batch_format must be one of 'default', 'numpy', 'pandas', 'pyarrow', "
                             f"got {batch_format!r}")
        comp, conc = _compute(fn, compute, concurrency, fn_constructor_args, fn_constructor_kwargs, "map_batches")
        t = MapBatches(fn, batch_size, batch_format, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs)
        args = _remote_args(num_cpus, num_gpus, memory, **ray_remote_args)
        return self._with(P.MapOp(self._plan, t, comp, args, batch_size, conc))

    def _row_op(self, cls, fn, compute, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs,
                num_cpus, num_gpus, memory, concurrency, ray_remote_args, what):
        comp, conc = _compute(fn, compute, concurrency, fn_constructor_args, fn_constructor_kwargs, what)
        t = cls(fn, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs)
        args = _remote_args(num_cpus, num_gpus, memory, **ray_remote_args)
        return self._with(P.MapOp(self._plan, t, comp, args, None, conc))

    def map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
            fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None, concurrency=None,
            **ray_remote_args):
        """Applies ``fn`` to each row (a dict); ``fn`` returns a dict."""
        return self._row_op(MapRows, fn, compute, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs,
                            num_cpus, num_gpus, memory, concurrency, ray_remote_args, "map")

    def flat_map(self, fn, *, compute=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                 fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None, concurrency=None,
                 **ray_remote_args):
        """Applies ``fn`` to each row; ``fn`` returns a list of rows."""
        return self._row_op(FlatMap, fn, compute, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs,
                            num_cpus, num_gpus, memory, concurrency, ray_remote_args, "flat_map")

    def filter(self, fn=None, expr=None, *, compute=None, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
               fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None, concurrency=None,
               **ray_remote_args):
        """Keeps the rows for which ``fn(row)`` is true, or that match ``expr`` (a string such
        as ``"a > 1 and b == 'x'"`` or an ``mpiray.data.expressions`` expression; run
        vectorised and pushed into Parquet reads)."""
        if (fn is None) == (expr is None):
            raise ValueError("filter: pass exactly one of fn and expr")
        if expr is not None:
            from .expressions import to_expr
            e = to_expr(expr)
            t = FilterExpr(e.to_pyarrow(), e.text)
            args = _remote_args(num_cpus, num_gpus, memory, **ray_remote_args)
            return self._with(P.MapOp(self._plan, t, None, args, None, concurrency))
        return self._row_op(FilterRows, fn, compute, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs,
                            num_cpus, num_gpus, memory, concurrency, ray_remote_args, "filter")

    def add_column(self, col, fn, *, batch_format="pandas", compute=None, concurrency=None, num_cpus=None,
                   num_gpus=None, memory=None, **ray_remote_args):
        """Adds column ``col`` computed by ``fn(batch)`` (a pandas DataFrame by default)."""
        if not callable(fn):
            raise TypeError("add_column: fn must be callable")
        args = _remote_args(num_cpus, num_gpus, memory, **ray_remote_args)
        return self._with(P.MapOp(self._plan, AddColumn(col, fn, batch_format), None, args, None, concurrency))

    def drop_columns(self, cols, *, compute=None, concurrency=None, **ray_remote_args):
        if isinstance(cols, str):
            cols = [cols]
        if len(set(cols)) != len(cols):
            raise ValueError(f"drop_columns: duplicate columns in {cols}")
        return self._with(P.MapOp(self._plan, Project(drop=cols), None, _remote_args(**ray_remote_args)))

    def select_columns(self, cols, *, compute=None, concurrency=None, **ray_remote_args):
        if isinstance(cols, str):
            cols = [cols]
        if len(set(cols)) != len(cols):
            raise ValueError(f"select_columns: duplicate columns in {cols}")
        return self._with(P.MapOp(self._plan, Project(select=cols), None, _remote_args(**ray_remote_args)))

    def rename_columns(self, names, *, concurrency=None, **ray_remote_args):
        """``{"old": "new"}`` or a list of new names for all columns."""
        if isinstance(names, dict):
            if len(set(names.values())) != len(names):
                raise ValueError(f"rename_columns: new names must be unique, got {list(names.values())}")
        elif isinstance(names, (list, tuple)):
            names = list(names)
            if len(set(names)) != len(names):
                raise ValueError(f"rename_columns: new names must be unique, got {names}")
        else:
            raise TypeError("rename_columns: names must be a dict or a list")
        return self._with(P.MapOp(self._plan, Project(rename=names), None, _remote_args(**ray_remote_args)))

    def random_sample(self, fraction, *, seed=None):
        if not 0 <= fraction <= 1:
            raise ValueError(f"random_sample: fraction must be in [0, 1], got {fraction}")
        return self._with(P.MapOp(self._plan, RandomSample(fraction, seed)))

    def limit(self, limit):
        if not isinstance(limit, (int, np.integer)) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        return self._with(P.Limit(self._plan, int(limit)))

    # ------------------------------------------------------------------ all-to-all
    def random_shuffle(self, *, seed=None, num_blocks=None, **ray_remote_args):
        return self._with(P.AllToAll("RandomShuffle", [self._plan], S.random_shuffle(seed, num_blocks)))

    def randomize_block_order(self, *, seed=None):
        return self._with(P.AllToAll("RandomizeBlockOrder", [self._plan], S.randomize_block_order(seed)))

    def repartition(self, num_blocks=None, target_num_rows_per_block=None, *, strict=False, shuffle=False,
                    keys=None, sort=False):
        if (num_blocks is None) == (target_num_rows_per_block is None):
            raise ValueError("repartition: pass exactly one of num_blocks and target_num_rows_per_block")
        if num_blocks is not None and num_blocks < 1:
            raise ValueError(f"repartition: num_blocks must be >= 1, got {num_blocks}")
        if shuffle:
            return self._with(P.AllToAll("Repartition", [self._plan], S.random_shuffle(None, num_blocks)))
        return self._with(P.AllToAll("Repartition", [self._plan], S.repartition(num_blocks, target_num_rows_per_block)))

    def sort(self, key, descending=False, boundaries=None):
        keys = [key] if isinstance(key, str) else list(key)
        if not keys:
            raise ValueError("sort: key must name at least one column")
        desc = [descending] * len(keys) if isinstance(descending, bool) else list(descending)
        if len(desc) != len(keys):
            raise ValueError(f"sort: descending has {len(desc)} values for {len(keys)} keys")
        self._check_columns(keys, "sort")
        return self._with(P.AllToAll("Sort", [self._plan], S.sort(keys, desc)))

    def _check_columns(self, cols, what):
        s = self._plan.schema()
        if s is not None:
            missing = [c for c in cols if c not in s.names]
            if missing:
                raise ValueError(f"{what}: column(s) {missing} not found; the dataset has {s.names}")

    def groupby(self, key, num_partitions=None):
        from .grouped_data import GroupedData
        keys = [] if key is None else ([key] if isinstance(key, str) else list(key))
        self._check_columns(keys, "groupby")
        return GroupedData(self, keys, num_partitions)

    def union(self, *other):
        for o in other:
            if not isinstance(o, Dataset):
                raise TypeError(f"union: expected Datasets, got {type(o).__name__}")
        return self._with(P.Union([self._plan] + [o._plan for o in other]))

    def zip(self, *other):
        for o in other:
            if not isinstance(o, Dataset):
                raise TypeError(f"zip: expected Datasets, got {type(o).__name__}")
        return self._with(P.AllToAll("Zip", [self._plan] + [o._plan for o in other], S.zip_datasets(),
                                     preserves_rows=True, keeps_schema=False))

    # ------------------------------------------------------------------ aggregations
    def aggregate(self, *aggs):
        from .grouped_data import GroupedData
        rows = GroupedData(self, [], None).aggregate(*aggs).take_all()
        if not rows:
            return None
        return rows[0]

    def _simple_agg(self, cls, on, ignore_nulls, **kw):
        from . import aggregate as A
        if on is None:
            s = self.schema()
            on = s.names if s is not None else []
        many = not isinstance(on, str)
        cols = list(on) if many else [on]
        aggs = [cls(c, ignore_nulls=ignore_nulls, **kw) for c in cols]
        res = self.aggregate(*aggs)
        if res is None:
            return None
        if many:
            return {a.name: A.to_list(res[a.name]) for a in aggs}
        return A.to_list(res[aggs[0].name])

    def sum(self, on=None, ignore_nulls=True):
        from .aggregate import Sum
        return self._simple_agg(Sum, on, ignore_nulls)

    def min(self, on=None, ignore_nulls=True):
        from .aggregate import Min
        return self._simple_agg(Min, on, ignore_nulls)

    def max(self, on=None, ignore_nulls=True):
        from .aggregate import Max
        return self._simple_agg(Max, on, ignore_nulls)

    def mean(self, on=None, ignore_nulls=True):
        from .aggregate import Mean
        return self._simple_agg(Mean, on, ignore_nulls)

    def std(self, on=None, ddof=1, ignore_nulls=True):
        from .aggregate import Std
        return self._simple_agg(Std, on, ignore_nulls, ddof=ddof)

    def unique(self, column, ignore_nulls=False):
        self._check_columns([column], "unique")
        rows = self.select_columns([column]).groupby(column).count().take_all()
        vals = [r[column] for r in rows]
        if ignore_nulls:
            vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
        try:
            return sorted(vals, key=lambda v: (v is None, v))
        except TypeError:
            return vals

    # ------------------------------------------------------------------ splitting
    def materialize(self):
        """Executes the plan and keeps the blocks in the object store."""
        if isinstance(self._plan, P.InputData):
            return self if isinstance(self, MaterializedDataset) else MaterializedDataset(self._plan, self._context)
        bundles = list(self._iter_bundles())
        out = MaterializedDataset(P.InputData(bundles), self._context, name=self._name)
        out._last_stats = self._last_stats
        return out

    def _split_rows(self, sizes):
        """Materialized datasets of consecutive ``sizes`` rows."""
        from ._internal.remote import concat_slices_task
        bundles = self._bundles()
        starts = np.cumsum([0] + [b.num_rows for b in bundles])
        out, pos = [], 0
        for size in sizes:
            lo, hi = pos, pos + size
            pieces = []
            for i, b in enumerate(bundles):
                a, z = max(lo, starts[i]), min(hi, starts[i + 1])
                if a >= z:
                    continue
                if a == starts[i] and z == starts[i + 1]:
                    pieces.append(b)
                else:
                    p, m = concat_slices_task.remote([(0, int(a - starts[i]), int(z - starts[i]))], b.ref)
                    pieces.append((p, m))
            metas = ray.get([x[1] for x in pieces if isinstance(x, tuple)])
            it = iter(metas)
            bs = [x if isinstance(x, RefBundle) else RefBundle(x[0], next(it)) for x in pieces]
            out.append(MaterializedDataset(P.InputData(bs), self._context))
            pos = hi
        return out

    def split(self, n, *, equal=False, locality_hints=None):
        """``n`` materialized datasets of about equal rows (exactly equal with ``equal=True``,
        dropping the remainder)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"split: n must be a positive integer, got {n!r}")
        total = self.count()
        if equal:
            sizes = [total // n] * n
        else:
            sizes = [total // n + (1 if i < total % n else 0) for i in range(n)]
        return self._split_rows(sizes)

    def split_at_indices(self, indices):
        indices = list(indices)
        if any(i < 0 for i in indices):
            raise ValueError(f"split_at_indices: indices must be non-negative, got {indices}")
        if sorted(indices) != indices:
            raise ValueError(f"split_at_indices: indices must be sorted, got {indices}")
        total = self.count()
        bounds = [0] + [min(i, total) for i in indices] + [total]
        return self._split_rows([bounds[i + 1] - bounds[i] for i in range(len(bounds) - 1)])

    def split_proportionately(self, proportions):
        total = self.count()
        if sum(proportions) >= 1 or any(p <= 0 for p in proportions):
            raise ValueError("split_proportionately: proportions must be positive and sum to less than 1")
        idx, acc = [], 0
        for p in proportions:
            acc += int(total * p)
            idx.append(acc)
        return self.split_at_indices(idx)

    def train_test_split(self, test_size, *, shuffle=False, seed=None, stratify=None):
        ds = self.random_shuffle(seed=seed) if shuffle else self
        total = ds.count()
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"train_test_split: a float test_size must be in (0, 1), got {test_size}")
            cut = int(total * (1 - test_size))
        elif isinstance(test_size, int):
            if not 0 < test_size < total:
                raise ValueError(f"train_test_split: test_size must be in (0, {total}), got {test_size}")
            cut = total - test_size
        else:
            raise TypeError(f"train_test_split: test_size must be an int or a float, got {test_size!r}")
        mat = ds.materialize()
        a, b = mat._split_rows([cut, total - cut])
        return a, b

    def streaming_split(self, n, *, equal=False, locality_hints=None):
        """``n`` DataIterators over disjoint shards of one streaming execution (no
        materialization), for n consumers such as Train workers; picklable. With
        ``equal=True`` every shard gets the same number of rows."""
        from ._internal.split import SplitCoordinator
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"streaming_split: n must be a positive integer, got {n!r}")
        if locality_hints is not None and len(locality_hints) != n:
            raise ValueError(f"streaming_split: locality_hints must have {n} entries")
        coord = SplitCoordinator.options(max_concurrency=n + 4, num_cpus=0).remote(self, n, equal)
        schema = self._plan.schema()
        return [StreamSplitDataIterator(coord, i, n, schema) for i in range(n)]

    # ------------------------------------------------------------------ consuming
    def iterator(self):
        return _DatasetIterator(self)

    def iter_rows(self):
        return self.iterator().iter_rows()

    def iter_batches(self, *, prefetch_batches=1, batch_size=256, batch_format="default", drop_last=False,
                     local_shuffle_buffer_size=None, local_shuffle_seed=None, _collate_fn=None):
        return self.iterator().iter_batches(prefetch_batches=prefetch_batches, batch_size=batch_size,
                                            batch_format=batch_format, drop_last=drop_last,
                                            local_shuffle_buffer_size=local_shuffle_buffer_size,
                                            local_shuffle_seed=local_shuffle_seed, _collate_fn=_collate_fn)

    def iter_torch_batches(self, *, prefetch_batches=1, batch_size=256, dtypes=None, device="auto",
                           collate_fn=None, drop_last=False, local_shuffle_buffer_size=None,
                           local_shuffle_seed=None, pin_memory=False):
        return self.iterator().iter_torch_batches(
            prefetch_batches=prefetch_batches, batch_size=batch_size, dtypes=dtypes, device=device,
            collate_fn=collate_fn, drop_last=drop_last, local_shuffle_buffer_size=local_shuffle_buffer_size,
            local_shuffle_seed=local_shuffle_seed, pin_memory=pin_memory)

    def take(self, limit=20):
        rows = []
        for block in self.limit(limit)._iter_blocks():
            for r in B.iter_rows(block):
                rows.append(r)
                if len(rows) >= limit:
                    return rows
        return rows

    def take_all(self, limit=None):
        rows = []
        for block in self._iter_blocks():
            rows.extend(B.iter_rows(block))
            if limit is not None and len(rows) > limit:
                raise ValueError(f"The dataset has more than the given limit of {limit} records.")
        return rows

    def take_batch(self, batch_size=20, *, batch_format="default"):
        for batch in self.limit(batch_size).iter_batches(batch_size=batch_size, batch_format=batch_format,
                                                        prefetch_batches=0):
            return batch
        raise ValueError("The dataset is empty.")

    def show(self, limit=20):
        for row in self.take(limit):
            print(row)

    def count(self):
        n = self._plan.num_rows()
        if n is not None:
            return n
        return sum(b.num_rows for b in self._iter_bundles())

    def schema(self, fetch_if_missing=True):
        s = self._plan.schema()
        if s is not None or not fetch_if_missing:
            return s
        first = None
        for b in self._iter_bundles(progress=False):
            if first is None:
                first = b.meta.schema
            if b.num_rows and b.meta.schema is not None:
                return b.meta.schema
        return first if first is not None and len(first) else None

    def columns(self, fetch_if_missing=True):
        s = self.schema(fetch_if_missing)
        return None if s is None else list(s.names)

    def num_blocks(self):
        return len(self._bundles())

    def size_bytes(self):
        return sum(b.size_bytes for b in self._bundles())

    def input_files(self):
        return self._plan.input_files()

    def to_pandas(self, limit=None):
        blocks = list(self._iter_blocks())
        n = sum(B.num_rows(b) for b in blocks)
        if limit is not None and n > limit:
            raise ValueError(f"the dataset has more than the given limit of {limit} rows: {n}. Raise limit= "
                             f"or use iter_batches(batch_format='pandas')")
        if not blocks:
            return B._pd().DataFrame()
        return B.to_pandas(B.concat(blocks))

    def to_numpy_refs(self, *, column=None):
        from ._internal.remote import to_format_task
        return [to_format_task.remote(b.ref, "numpy", column) for b in self._bundles()]

    def to_arrow_refs(self):
        from ._internal.remote import to_format_task
        return [to_format_task.remote(b.ref, "pyarrow") for b in self._bundles()]

    def to_pandas_refs(self):
        from ._internal.remote import to_format_task
        return [to_format_task.remote(b.ref, "pandas") for b in self._bundles()]

    def get_internal_block_refs(self):
        return [b.ref for b in self._bundles()]

    # ------------------------------------------------------------------ writing
    def _write(self, fmt, path, options, min_rows_per_file=None, ray_remote_args=None, concurrency=None,
               mode="append"):
        from .datasource.file_formats import write_block, write_name
        path = os.fspath(path)
        mode = str(getattr(mode, "value", mode)).lower()
        if os.path.exists(path) and os.listdir(path):
            if mode in ("error", "errorifexists"):
                raise FileExistsError(f"write_{fmt}: {path!r} is not empty (mode={mode!r})")
            if mode == "ignore":
                return
            if mode == "overwrite":
                import shutil
                shutil.rmtree(path)
        os.makedirs(path, exist_ok=True)
        wid = uuid.uuid4().hex[:16]

        class _Write:
            name = "Write"
            preserves_rows = False

            def init(self):
                pass

            def __call__(self, blocks, tctx):
                blocks = [b for b in blocks if B.num_rows(b)]
                if not blocks:
                    return
                block = B.concat(blocks) if len(blocks) > 1 else blocks[0]
                f = write_block(block, fmt, path, write_name(wid, tctx.task_index, _EXT[fmt]), options)
                pa = B._pa()
                yield pa.table({"path": [f], "num_rows": [B.num_rows(block)]})

        args = _remote_args(ray_remote_args=ray_remote_args)
        op = P.MapOp(self._plan, _Write(), None, args, min_rows_per_file, concurrency)
        for _ in Dataset(op, self._context, self._name)._iter_bundles():
            pass

    def write_parquet(self, path, *, partition_cols=None, filesystem=None, try_create_dir=True,
                      arrow_open_stream_args=None, filename_provider=None, arrow_parquet_args_fn=None,
                      min_rows_per_file=None, max_rows_per_file=None, ray_remote_args=None, concurrency=None,
                      num_rows_per_file=None, mode="append", **arrow_parquet_args):
        if partition_cols:
            raise NotImplementedError("write_parquet(partition_cols=...) is not supported yet")
        opts = dict(arrow_parquet_args)
        if arrow_parquet_args_fn is not None:
            opts.update(arrow_parquet_args_fn())
        self._write("parquet", path, opts, min_rows_per_file or num_rows_per_file, ray_remote_args, concurrency, mode)

    def write_csv(self, path, *, filesystem=None, try_create_dir=True, arrow_open_stream_args=None,
                  filename_provider=None, arrow_csv_args_fn=None, min_rows_per_file=None, ray_remote_args=None,
                  concurrency=None, num_rows_per_file=None, mode="append", **arrow_csv_args):
        opts = dict(arrow_csv_args)
        if arrow_csv_args_fn is not None:
            opts.update(arrow_csv_args_fn())
        self._write("csv", path, opts, min_rows_per_file or num_rows_per_file, ray_remote_args, concurrency, mode)

    def write_json(self, path, *, filesystem=None, try_create_dir=True, arrow_open_stream_args=None,
                   filename_provider=None, pandas_json_args_fn=None, min_rows_per_file=None, ray_remote_args=None,
                   concurrency=None, num_rows_per_file=None, mode="append", **pandas_json_args):
        self._write("json", path, {}, min_rows_per_file or num_rows_per_file, ray_remote_args, concurrency, mode)

    def write_numpy(self, path, *, column, filesystem=None, try_create_dir=True, arrow_open_stream_args=None,
                    filename_provider=None, min_rows_per_file=None, ray_remote_args=None, concurrency=None,
                    num_rows_per_file=None, mode="append"):
        self._write("numpy", path, {"column": column}, min_rows_per_file or num_rows_per_file, ray_remote_args,
                    concurrency, mode)

    def write_hdf5(self, path, *, datasets=None, chunks=None, compression=None, compression_opts=None,
                   shuffle=False, min_rows_per_file=None, mode="overwrite", ray_remote_args=None, concurrency=None):
        """Writes the dataset as one HDF5 file with one dataset per column (``datasets``: a
        list of columns, or a dict column -> dataset name). Each block writes its rows into
        its own file under ``<path>.parts/`` in parallel; ``path`` holds virtual datasets that
        join them, readable by any HDF5 reader (h5py: one array per column). ``chunks``: rows
        per chunk (int), a chunk shape (tuple; for columns of another rank its first entry is
        the rows), or a dict column -> either; ``compression="gzip"`` with
        ``compression_opts`` 0-9 and ``shuffle``. ``mode``: "overwrite" (default), "error",
        "ignore"."""
        from .datasource import hdf5 as H
        if compression not in (None, "gzip"):
            raise ValueError(f"write_hdf5: compression must be None or 'gzip', got {compression!r}")
        deflate = None
        if compression == "gzip":
            deflate = 4 if compression_opts is None else int(compression_opts)
        if isinstance(datasets, (list, tuple)):
            names = {c: c for c in datasets}
        elif isinstance(datasets, dict):
            names = dict(datasets)
        elif datasets is None:
            names = None
        else:
            raise TypeError("write_hdf5: datasets must be a list of columns or a dict column -> dataset name")
        path = os.fspath(path)
        parts = H.prepare_write(path, mode)
        if parts is None:
            return
        t = H.WriteHDF5(path, names, chunks, deflate, shuffle, parts)
        args = _remote_args(ray_remote_args=ray_remote_args)
        op = P.MapOp(self._plan, t, None, args, min_rows_per_file, concurrency)
        results = []
        try:
            for block in Dataset(op, self._context, self._name)._iter_blocks():
                results.extend(B.iter_rows(block))
            H.finish_write(path, parts, results)
        except BaseException:
            import shutil
            shutil.rmtree(parts, ignore_errors=True)
            if os.path.exists(path):
                os.remove(path)
            raise

    # ------------------------------------------------------------------ stats and repr
    def stats(self):
        """Per-operator execution statistics of the last execution, as Ray prints them."""
        if self._last_stats is None:
            return ""
        return self._last_stats

    def _format_stats(self, ex):
        from ._internal.stats import format_stats
        return format_stats(ex)

    def __repr__(self):
        return _repr(self)

    def __str__(self):
        return self.__repr__()

    def __iter__(self):
        raise TypeError("`Dataset` objects aren't iterable. To iterate records, call `ds.iter_rows()` or "
                        "`ds.iter_batches()`.")

    def __len__(self):
        raise AttributeError("Use `ds.count()` to compute the length of a distributed Dataset. This may be an "
                             "expensive operation.")

    def __getstate__(self):
        return {"_plan": self._plan, "_context": self._context, "_id": self._id, "_name": self._name,
                "_executions": self._executions, "_last_stats": None}

    def __setstate__(self, st):
        self.__dict__.update(st)


_EXT = {"parquet": "parquet", "csv": "csv", "json": "json", "numpy": "npy"}


class MaterializedDataset(Dataset):
    """A dataset whose blocks are in the object store (``materialize()``, ``from_*``)."""

    def __init__(self, plan, context=None, name=None):
        super().__init__(plan, context, name)

    def num_blocks(self):
        return len(self._plan.bundles)


def _repr(ds):
    """Ray's compact form: the table for materialized data, the plan otherwise."""
    plan = ds._plan
    if isinstance(plan, P.InputData):
        schema = plan.schema()
        n = plan.num_rows()
        names = schema.names if schema is not None else []
        types = [str(t) for t in schema.types] if schema is not None else []
        rows = ds.take(10) if n else []
        return _table_repr(names, types, rows, n)
    chain = []
    op = plan
    while not isinstance(op, (P.Read, P.InputData)) and len(op.inputs) == 1:
        chain.append(op.name)
        op = op.inputs[0]
    n = op.num_rows() if isinstance(op, (P.Read, P.InputData)) else None
    schema = op.schema() if isinstance(op, (P.Read, P.InputData)) else None
    sch = "Unknown schema" if schema is None else \
        "{" + ", ".join(f"{a}: {b}" for a, b in zip(schema.names, schema.types)) + "}"
    base = f"Dataset(num_rows={n if n is not None else '?'}, schema={sch})"
    if not chain:
        return base
    return "\n".join([chain[0]] + [f"+- {c}" for c in chain[1:]] + [f"+- {base}"])


def _table_repr(names, types, rows, n):
    def fmt(v):
        if isinstance(v, np.ndarray):
            s = np.array2string(v, threshold=4, edgeitems=1).replace("\n", "")
        else:
            s = str(v)
        return s if len(s) <= 30 else s[:27] + "..."

    cells = [[fmt(r.get(c)) for c in names] for r in rows]
    widths = [max([len(nm), len(tp), 3] + [len(row[i]) for row in cells]) for i, (nm, tp) in enumerate(zip(names, types))]
    out = [f"shape: ({n}, {len(names)})"]
    if not names:
        return out[0]
    out.append("╭" + "┬".join("─" * (w + 2) for w in widths) + "╮")
    out.append("│" + "┆".join(f" {nm:<{w}} " for nm, w in zip(names, widths)) + "│")
    out.append("│" + "┆".join(f" {'---':<{w}} " for w in widths) + "│")
    out.append("│" + "┆".join(f" {tp:<{w}} " for tp, w in zip(types, widths)) + "│")
    if cells:
        out.append("╞" + "╪".join("═" * (w + 2) for w in widths) + "╡")
        for row in cells:
            out.append("│" + "┆".join(f" {v:<{w}} " for v, w in zip(row, widths)) + "│")
    out.append("╰" + "┴".join("─" * (w + 2) for w in widths) + "╯")
    out.append(f"(Showing {len(rows)} of {n} rows)")
    return "\n".join(out)
