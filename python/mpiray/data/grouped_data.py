"""GroupedData: ``ds.groupby(key)`` (Ray's ``ray.data.grouped_data.GroupedData``).

Aggregations hash-partition partial aggregates by key; each output block holds the groups of
one partition, sorted by key (the order of partitions is not the order of keys, as in Ray
2.x: ``sort()`` the result if you need it)."""

from . import aggregate as A
from ._internal import plan as P
from ._internal import shuffle as S
from ._internal.transforms import MapBatches, TransformChain


class GroupedData:
    def __init__(self, ds, keys, num_partitions=None):
        self._ds = ds
        self._keys = list(keys)
        self._num_partitions = num_partitions

    def __repr__(self):
        return f"GroupedData(dataset={self._ds!r}, key={self._keys!r})"

    def aggregate(self, *aggs):
        if not aggs:
            raise ValueError("aggregate: pass at least one aggregation")
        for a in aggs:
            if not isinstance(a, A.AggregateFn):
                raise TypeError(f"aggregate: expected AggregateFn objects (Count(), Sum('x'), ...), got {a!r}")
        names = [a.name for a in aggs]
        if len(set(names)) != len(names):
            raise ValueError(f"aggregate: output columns must be unique, got {names}; use alias_name=")
        cols = [a.on for a in aggs if getattr(a, "on", None) is not None]
        self._ds._check_columns(cols, "aggregate")
        op = P.AllToAll("Aggregate", [self._ds._plan], S.aggregate(self._keys, list(aggs), self._num_partitions),
                        preserves_rows=False, keeps_schema=False)
        return self._ds._with(op)

    def _agg(self, cls, on, ignore_nulls, **kw):
        if on is None:
            s = self._ds.schema()
            on = [c for c in (s.names if s is not None else []) if c not in self._keys]
        cols = [on] if isinstance(on, str) else list(on)
        return self.aggregate(*[cls(c, ignore_nulls=ignore_nulls, **kw) for c in cols])

    def count(self):
        return self.aggregate(A.Count())

    def sum(self, on=None, ignore_nulls=True):
        return self._agg(A.Sum, on, ignore_nulls)

    def min(self, on=None, ignore_nulls=True):
        return self._agg(A.Min, on, ignore_nulls)

    def max(self, on=None, ignore_nulls=True):
        return self._agg(A.Max, on, ignore_nulls)

    def mean(self, on=None, ignore_nulls=True):
        return self._agg(A.Mean, on, ignore_nulls)

    def std(self, on=None, ddof=1, ignore_nulls=True):
        return self._agg(A.Std, on, ignore_nulls, ddof=ddof)

    def map_groups(self, fn, *, zero_copy_batch=True, compute=None, batch_format="default", fn_args=None,
                   fn_kwargs=None, fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None,
                   num_gpus=None, memory=None, concurrency=None, **ray_remote_args):
        """Applies ``fn`` to each group (a batch of all its rows, in ``batch_format``)."""
        if not self._keys:
            raise ValueError("map_groups needs a groupby key")
        if not callable(fn):
            raise TypeError("map_groups: fn must be callable")
        t = MapBatches(fn, None, batch_format, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs,
                       label="MapGroups")
        op = P.AllToAll("MapGroups", [self._ds._plan], S.map_groups(self._keys, TransformChain([t]),
                                                                    self._num_partitions),
                        preserves_rows=False, keeps_schema=False)
        return self._ds._with(op)
