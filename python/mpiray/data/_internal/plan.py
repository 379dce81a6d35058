"""Logical plans (what the user asked for, lazily) and their translation into physical
operators: fusion of consecutive map stages, and column and filter push-down into reads."""

from . import executor as X
from .transforms import MapBatches, Project, TransformChain


class LogicalOp:
    def __init__(self, name, inputs=()):
        self.name = name
        self.inputs = list(inputs)

    def num_rows(self):
        """Rows, when known without executing."""
        return None

    def schema(self):
        return None

    def input_files(self):
        files = []
        for i in self.inputs:
            files.extend(i.input_files())
        return files


class Read(LogicalOp):
    def __init__(self, datasource, parallelism=None, remote_args=None, concurrency=None):
        super().__init__(datasource.name)
        self.datasource = datasource
        self.parallelism = parallelism
        self.remote_args = dict(remote_args or {})
        self.concurrency = concurrency

    def num_rows(self):
        return self.datasource.num_rows()

    def schema(self):
        return self.datasource.schema()

    def input_files(self):
        return list(self.datasource.input_files())


class InputData(LogicalOp):
    def __init__(self, bundles, name="Input"):
        super().__init__(name)
        self.bundles = list(bundles)

    def num_rows(self):
        return sum(b.num_rows for b in self.bundles)

    def schema(self):
        for b in self.bundles:
            if b.meta.schema is not None and b.num_rows:
                return b.meta.schema
        for b in self.bundles:
            if b.meta.schema is not None:
                return b.meta.schema
        return None

    def input_files(self):
        files = []
        for b in self.bundles:
            for f in b.meta.input_files:
                if f not in files:
                    files.append(f)
        return files


class MapOp(LogicalOp):
    def __init__(self, inp, transform, compute=None, remote_args=None, min_rows_per_bundle=None,
                 concurrency=None):
        super().__init__(transform.name, [inp])
        self.transform = transform
        self.compute = compute
        self.remote_args = dict(remote_args or {})
        self.min_rows = min_rows_per_bundle
        self.concurrency = concurrency

    def num_rows(self):
        return self.inputs[0].num_rows() if self.transform.preserves_rows else None

    def schema(self):
        if isinstance(self.transform, Project) and self.transform.select is not None:
            s = self.inputs[0].schema()
            if s is not None and all(c in s.names for c in self.transform.select):
                from ..block import Schema
                return Schema(self.transform.select, [s.types[s.names.index(c)] for c in self.transform.select])
        return None


class Limit(LogicalOp):
    def __init__(self, inp, n):
        super().__init__(f"limit={n}", [inp])
        self.n = n

    def num_rows(self):
        r = self.inputs[0].num_rows()
        return None if r is None else min(r, self.n)

    def schema(self):
        return self.inputs[0].schema()


class AllToAll(LogicalOp):
    """A barrier operator; ``fn(inputs, op) -> bundles`` (see executor.AllToAllOp)."""

    def __init__(self, name, inputs, fn, preserves_rows=True, keeps_schema=True):
        super().__init__(name, inputs)
        self.fn = fn
        self.preserves_rows = preserves_rows
        self.keeps_schema = keeps_schema

    def num_rows(self):
        if not self.preserves_rows:
            return None
        rows = [i.num_rows() for i in self.inputs]
        return None if any(r is None for r in rows) else rows[0]

    def schema(self):
        return self.inputs[0].schema() if self.keeps_schema else None


class Union(LogicalOp):
    def __init__(self, inputs):
        super().__init__("Union", inputs)

    def num_rows(self):
        rows = [i.num_rows() for i in self.inputs]
        return None if any(r is None for r in rows) else sum(rows)

    def schema(self):
        return self.inputs[0].schema()


# ----------------------------------------------------------------------------- optimizer


def _push_down(op):
    """Column selection and expression filters directly after a read go into the read."""
    if isinstance(op, MapOp) and isinstance(op.inputs[0], Read) and op.compute is None:
        rd = op.inputs[0]
        t = op.transform
        new_ds = None
        if isinstance(t, Project) and t.select is not None and t.drop is None and t.rename is None:
            new_ds = rd.datasource.with_columns(t.select)
        from .transforms import FilterExpr
        if isinstance(t, FilterExpr):
            new_ds = rd.datasource.with_filter(t.expr)
        if new_ds is not None:
            return Read(new_ds, rd.parallelism, rd.remote_args, rd.concurrency)
    return op


def optimize(op, memo=None):
    memo = {} if memo is None else memo
    if id(op) in memo:
        return memo[id(op)]
    new_inputs = [optimize(i, memo) for i in op.inputs]
    if new_inputs != op.inputs:
        import copy
        op2 = copy.copy(op)
        op2.inputs = new_inputs
        op = op2
    out = _push_down(op)
    memo[id(op)] = out
    return out


# ----------------------------------------------------------------------------- physical plan


def _remote_key(args):
    keys = ("num_cpus", "num_gpus", "resources", "memory", "scheduling_strategy", "runtime_env")
    return tuple((k, repr(args.get(k))) for k in keys)


def _compatible(up, down):
    """Whether the map stage ``down`` can run in the same task as ``up``."""
    if isinstance(up, X.ActorMapOp):
        return False
    if not isinstance(up, X.TaskMapOp) or up.inputs_consumers > 1:
        return False
    up_args = dict(up.remote_args)
    down_args = dict(down.remote_args)
    up_args.setdefault("num_cpus", 1)
    down_args.setdefault("num_cpus", 1)
    if isinstance(down.compute, X.ActorPoolStrategy):
        return up.concurrency is None and _remote_key({k: v for k, v in up_args.items() if k != "num_cpus"}) == \
            _remote_key({k: v for k, v in down_args.items() if k != "num_cpus"})
    if up.concurrency != down.concurrency and down.concurrency is not None and up.concurrency is not None:
        return False
    return _remote_key(up_args) == _remote_key(down_args)


def to_physical(root, ctx):
    """The physical operator DAG of an (optimized) logical plan; returns its last operator."""
    memo = {}
    consumers = {}

    def count(op):
        for i in op.inputs:
            consumers[id(i)] = consumers.get(id(i), 0) + 1
            if consumers[id(i)] == 1:
                count(i)

    count(root)

    def build(op):
        if id(op) in memo:
            return memo[id(op)]
        if isinstance(op, Read):
            tasks = op.datasource.get_read_tasks(op.parallelism, ctx)
            p = X.TaskMapOp(op.name, [], TransformChain([]), source=tasks, remote_args=op.remote_args,
                            concurrency=op.concurrency)
            p.total_rows_hint = op.num_rows()
        elif isinstance(op, InputData):
            p = X.InputDataBuffer(op.bundles, op.name)
        elif isinstance(op, MapOp):
            up = build(op.inputs[0])
            up.inputs_consumers = consumers.get(id(op.inputs[0]), 1)
            if isinstance(up, X.TaskMapOp) and _compatible(up, op):
                chain = TransformChain(up.chain.transforms + [op.transform])
                name = f"{up.name}->{op.name}"
                args = dict(up.remote_args)
                args.update(op.remote_args)
                if isinstance(op.compute, X.ActorPoolStrategy):
                    p = X.ActorMapOp(name, up.inputs, chain, op.compute,
                                     source=[t for _, t in up.source] if up.source is not None else None,
                                     remote_args=args, min_rows_per_bundle=op.min_rows or up.min_rows)
                else:
                    p = X.TaskMapOp(name, up.inputs, chain,
                                    source=[t for _, t in up.source] if up.source is not None else None,
                                    remote_args=args, min_rows_per_bundle=op.min_rows or up.min_rows,
                                    concurrency=op.concurrency or up.concurrency)
                p.total_rows_hint = op.num_rows() if op.num_rows() is not None else up.total_rows_hint
            else:
                chain = TransformChain([op.transform])
                if isinstance(op.compute, X.ActorPoolStrategy):
                    p = X.ActorMapOp(op.name, [up], chain, op.compute, remote_args=op.remote_args,
                                     min_rows_per_bundle=op.min_rows)
                else:
                    p = X.TaskMapOp(op.name, [up], chain, remote_args=op.remote_args,
                                    min_rows_per_bundle=op.min_rows, concurrency=op.concurrency)
                # Expected rows for progress bars: exact when known, else the input's (as Ray).
                p.total_rows_hint = op.num_rows() if op.num_rows() is not None else up.total_rows_hint
        elif isinstance(op, Limit):
            p = X.LimitOp(build(op.inputs[0]), op.n)
            p.total_rows_hint = op.num_rows()
        elif isinstance(op, AllToAll):
            p = X.AllToAllOp(op.name, [build(i) for i in op.inputs], op.fn)
            p.total_rows_hint = op.num_rows()
        elif isinstance(op, Union):
            p = X.UnionOp([build(i) for i in op.inputs])
            p.total_rows_hint = op.num_rows()
        else:
            raise TypeError(f"unknown logical operator {op!r}")
        p.inputs_consumers = consumers.get(id(op), 1)
        memo[id(op)] = p
        return p

    return build(root)


def is_map_batches_class(t):
    return isinstance(t, MapBatches) and t.is_class
