"""Aggregations for ``Dataset.aggregate`` and ``groupby(...).aggregate`` (Ray's
``ray.data.aggregate``): ``Count``, ``Sum``, ``Min``, ``Max``, ``Mean``, ``Std``, ``AbsMax``,
``Quantile``, ``Unique`` and the generic ``AggregateFn``.

Built-in aggregations run vectorised in two steps: each block is reduced to partial states per
group (pyarrow's hash aggregation), the partials of a group are combined (sums of sums, mins of
mins, Chan's formula for variances) and finalised. Output columns are named as in Ray:
``count()``, ``sum(v)``, ``mean(v)``, ... or ``alias_name``.
"""

import math

import numpy as np

from . import block as B
from .._extras import require


class AggregateFn:
    """A custom aggregation (Ray's ``AggregateFn``):

    ``init(key) -> acc``; ``accumulate_row(acc, row) -> acc`` or ``accumulate_block(acc, batch)
    -> acc`` (batch: dict of numpy arrays); ``merge(acc1, acc2) -> acc``; ``finalize(acc) ->
    value`` (default: the accumulator); ``name``: the output column."""

    def __init__(self, init, merge, accumulate_row=None, accumulate_block=None, finalize=None, name=None):
        if (accumulate_row is None) == (accumulate_block is None):
            raise ValueError("AggregateFn needs exactly one of accumulate_row and accumulate_block")
        self.init = init
        self.merge = merge
        self.accumulate_row = accumulate_row
        self.accumulate_block = accumulate_block
        self._finalize = finalize or (lambda a: a)
        self.name = name or "custom()"

    # The generic path: Python accumulators per group.
    vectorized = False

    def _accumulate(self, key, batch):
        acc = self.init(key)
        if self.accumulate_block is not None:
            return self.accumulate_block(acc, batch)
        n = len(next(iter(batch.values()))) if batch else 0
        names = list(batch)
        for i in range(n):
            acc = self.accumulate_row(acc, {k: _py(batch[k][i]) for k in names})
        return acc

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


class _Builtin(AggregateFn):
    vectorized = True
    label = "?"

    def __init__(self, on=None, ignore_nulls=True, alias_name=None):
        self.on = on
        self.ignore_nulls = ignore_nulls
        self.name = alias_name or f"{self.label}({on if on is not None else ''})"

    def map_specs(self):
        """(source column, pyarrow aggregate, options) triples of the partial states."""
        raise NotImplementedError

    def combine(self, df, by, states):
        """The final column (a pandas Series per group) from the partial states' columns."""
        raise NotImplementedError


class Count(_Builtin):
    label = "count"

    def __init__(self, on=None, ignore_nulls=False, alias_name=None):
        super().__init__(on, ignore_nulls, alias_name)
        self.name = alias_name or (f"count({on})" if on is not None else "count()")

    def map_specs(self):
        pc = require("data", "pyarrow.compute")
        if self.on is None:
            return [([], "count_all", None)]
        return [(self.on, "count", pc.CountOptions(mode="only_valid" if self.ignore_nulls else "all"))]

    def combine(self, df, by, states):
        return by(df[states[0]]).sum()


class Sum(_Builtin):
    label = "sum"

    def map_specs(self):
        pc = require("data", "pyarrow.compute")
        return [(self.on, "sum", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls, min_count=1))]

    def combine(self, df, by, states):
        return by(df[states[0]]).sum(min_count=1)


class Min(_Builtin):
    label = "min"

    def map_specs(self):
        pc = require("data", "pyarrow.compute")
        return [(self.on, "min", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls))]

    def combine(self, df, by, states):
        return by(df[states[0]]).min()


class Max(_Builtin):
    label = "max"

    def map_specs(self):
        pc = require("data", "pyarrow.compute")
        return [(self.on, "max", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls))]

    def combine(self, df, by, states):
        return by(df[states[0]]).max()


class AbsMax(_Builtin):
    label = "abs_max"

    def map_specs(self):
        pc = require("data", "pyarrow.compute")
        return [(self.on, "min", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls)),
                (self.on, "max", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls))]

    def combine(self, df, by, states):
        lo = by(df[states[0]]).min()
        hi = by(df[states[1]]).max()
        return np.maximum(lo.abs(), hi.abs())


class Mean(_Builtin):
    label = "mean"

    def map_specs(self):
        pc = require("data", "pyarrow.compute")
        return [(self.on, "sum", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls, min_count=1)),
                (self.on, "count", pc.CountOptions(mode="only_valid"))]

    def combine(self, df, by, states):
        s = by(df[states[0]].astype("float64")).sum(min_count=1)
        n = by(df[states[1]]).sum()
        return s / n.where(n > 0)


class Std(_Builtin):
    """Standard deviation with ``ddof`` (default 1, as Ray and pandas)."""

    label = "std"

    def __init__(self, on=None, ddof=1, ignore_nulls=True, alias_name=None):
        super().__init__(on, ignore_nulls, alias_name)
        self.ddof = ddof

    def map_specs(self):
        pc = require("data", "pyarrow.compute")
        return [(self.on, "count", pc.CountOptions(mode="only_valid")),
                (self.on, "mean", pc.ScalarAggregateOptions(skip_nulls=self.ignore_nulls)),
                (self.on, "variance", pc.VarianceOptions(ddof=0, skip_nulls=self.ignore_nulls))]

    def combine(self, df, by, states):
        n_i = df[states[0]].astype("float64")
        mean_i = df[states[1]].astype("float64").where(n_i > 0, 0.0)
        m2_i = (df[states[2]].astype("float64") * n_i).where(n_i > 0, 0.0)
        n = by(n_i).transform("sum")
        mean = by(n_i * mean_i).transform("sum") / n.where(n > 0)
        m2 = by(m2_i + n_i * (mean_i - mean.fillna(0.0)) ** 2).sum()
        ntot = by(n_i).sum()
        denom = ntot - self.ddof
        return np.sqrt(m2 / denom.where(denom > 0))


class Quantile(AggregateFn):
    """The ``q`` quantile (linear interpolation, as numpy)."""

    def __init__(self, on=None, q=0.5, ignore_nulls=True, alias_name=None):
        self.on = on
        self.q = q
        self.ignore_nulls = ignore_nulls
        super().__init__(init=lambda k: [], merge=lambda a, b: a + b,
                         accumulate_block=self._acc, finalize=self._fin,
                         name=alias_name or f"quantile({on})")

    def _acc(self, acc, batch):
        v = np.asarray(batch[self.on], dtype=float)
        if self.ignore_nulls:
            v = v[~np.isnan(v)]
        return acc + v.tolist()

    def _fin(self, acc):
        return float(np.quantile(np.asarray(acc), self.q)) if acc else None


class Unique(AggregateFn):
    """The distinct values of a column (a sorted list)."""

    def __init__(self, on=None, ignore_nulls=True, alias_name=None):
        self.on = on
        self.ignore_nulls = ignore_nulls
        super().__init__(init=lambda k: set(), merge=lambda a, b: a | b,
                         accumulate_block=lambda acc, batch: acc | set(_py(x) for x in batch[on]
                                                                         if not (ignore_nulls and x is None)),
                         finalize=lambda acc: sorted(acc, key=lambda x: (x is None, x)),
                         name=alias_name or f"unique({on})")


# ----------------------------------------------------------------------------- the two steps


def _state_names(aggs):
    """For each aggregation, the names of its partial-state columns; and the pyarrow specs."""
    specs, names, index = [], [], {}
    for agg in aggs:
        mine = []
        if agg.vectorized:
            for col, fn, opts in agg.map_specs():
                key = (repr(col), fn, repr(opts) if opts is None else _opts_key(opts))
                if key not in index:
                    index[key] = f"__s{len(specs)}"
                    specs.append((col, fn, opts))
                mine.append(index[key])
        names.append(mine)
    return specs, names


def _opts_key(opts):
    try:
        return (type(opts).__name__, str(opts))
    except Exception:
        return id(opts)


def partial_aggregate(block, keys, aggs):
    """Partial states of ``aggs`` per group of ``keys`` in one block, as a pyarrow Table: key
    columns, then one column per state (and one pickled column per generic aggregation)."""
    pa = require("data", "pyarrow")
    specs, names = _state_names(aggs)
    cols = set(keys)
    for col, fn, _ in specs:
        if col != []:
            cols.add(col)
    present = B.column_names(block)
    for agg in aggs:
        if not agg.vectorized:
            on = getattr(agg, "on", None)
            cols.update([on] if on is not None else present)  # a generic one sees whole rows
    missing = [c for c in cols if c not in present]
    if missing:
        raise ValueError(f"aggregation on column(s) {sorted(missing)} that the dataset does not have "
                         f"(it has {present})")
    t = B.to_arrow(B.select(block, [c for c in present if c in cols]))
    out = {}
    if specs:
        flat = [(col if col != [] else [], fn, opts) if opts is not None else (col, fn)
                for col, fn, opts in specs]
        res = t.group_by(keys, use_threads=False).aggregate(flat)
        rnames = res.schema.names
        # Key columns come first in recent pyarrow, last in older ones; states keep spec order.
        key_first = bool(keys) and rnames[0] == keys[0]
        state_idx = list(range(len(keys), len(rnames))) if key_first else list(range(len(specs)))
        key_idx = list(range(len(keys))) if key_first else list(range(len(specs), len(rnames)))
        for k, i in zip(keys, key_idx):
            out[k] = res.column(i)
        for j, i in enumerate(state_idx):
            out[f"__s{j}"] = res.column(i)
    generic = [a for a in aggs if not a.vectorized]
    if generic:
        import pickle
        pd = require("data", "pandas")
        df = B.to_pandas(B.select(block, [c for c in present if c in cols]))
        if keys:
            groups = df.groupby(keys, sort=False, dropna=False)
            items = [(k if isinstance(k, tuple) else (k,), g) for k, g in groups]
        else:
            items = [((), df)]
        gkeys = {k: [] for k in keys}
        gstate = {f"__g{i}": [] for i in range(len(generic))}
        for key, g in items:
            for k, v in zip(keys, key):
                gkeys[k].append(_py(v))
            batch = {c: g[c].to_numpy() for c in g.columns}
            for i, a in enumerate(generic):
                kv = key[0] if len(key) == 1 else (key if key else None)
                gstate[f"__g{i}"].append(pickle.dumps(a._accumulate(kv, batch)))
        gt = pd.DataFrame({**gkeys, **gstate})
        gtab = pa.Table.from_pandas(gt, preserve_index=False)
        if specs and keys:
            merged = pa.table(out).join(gtab, keys, join_type="full outer") if len(out) else gtab
            return merged
        if specs and not keys:
            for c in gstate:
                out[c] = gtab.column(c)
            return pa.table(out)
        return gtab
    if not out and not keys:
        return pa.table({"__empty": pa.array([0])})
    return pa.table(out)


def combine_aggregate(partials, keys, aggs):
    """The final table of one partition from its partial tables (sorted by the keys)."""
    import pickle
    pa = require("data", "pyarrow")
    pd = require("data", "pandas")
    specs, names = _state_names(aggs)
    parts = [p for p in partials if p.num_rows]
    if not parts:
        return None
    try:
        t = pa.concat_tables(parts, promote_options="permissive")  # int64 + double -> double, ...
    except (TypeError, pa.ArrowInvalid, pa.ArrowTypeError):
        t = pa.concat_tables(parts, promote_options="default")
    df = t.to_pandas()
    if keys:
        grouped = df.groupby(keys, sort=True, dropna=False)

        def by(series):
            return series.groupby([df[k] for k in keys], sort=True, dropna=False)
        index = grouped.size().index
    else:
        const = pd.Series(np.zeros(len(df), dtype=np.int8), index=df.index)

        def by(series):
            return series.groupby(const, sort=True)
        index = pd.Index([0])
    result = {}
    gi = 0
    for agg, states in zip(aggs, names):
        if agg.vectorized:
            result[agg.name] = agg.combine(df, by, states)
        else:
            col = df[f"__g{gi}"]
            gi += 1
            merged = by(col).agg(lambda s: pickle.dumps(_merge_all(agg, [pickle.loads(x) for x in s])))
            result[agg.name] = merged.map(lambda x: agg._finalize(pickle.loads(x)))
    out = pd.DataFrame({k: v.reindex(index) if hasattr(v, "reindex") else v for k, v in result.items()},
                       index=index)
    if keys:
        out = out.reset_index()
        cols = list(keys) + [a.name for a in aggs]
        out = out[cols]
    else:
        out = out.reset_index(drop=True)
    return _frame_to_block(out, aggs)


def _merge_all(agg, accs):
    acc = accs[0]
    for a in accs[1:]:
        acc = agg.merge(acc, a)
    return acc


def _frame_to_block(df, aggs):
    pa = require("data", "pyarrow")
    for a in aggs:
        if isinstance(a, Count) and a.name in df:
            df[a.name] = df[a.name].fillna(0).astype("int64")
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return B.NumpyBlock({c: df[c].to_numpy() for c in df.columns})


def to_list(value):
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
