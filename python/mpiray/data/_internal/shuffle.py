"""The all-to-all operators: random_shuffle, randomize_block_order, repartition, sort,
groupby aggregations, map_groups, zip. Each is a function ``fn(inputs, op) -> bundles`` that
an AllToAllOp runs once its inputs are complete: map tasks split every input block into
partitions (``num_returns=P``), reduce tasks combine one partition each."""

import numpy as np

import mpiray as ray
from mpiray import _api

from .. import block as B
from .metadata import RefBundle
from .remote import block_meta
from .transforms import compact


def _collect(pairs, op, label):
    """Bundles of (payload, meta_ref) pairs of reduce tasks, in order."""
    metas = ray.get([m for _, m in pairs])
    op.stats.extra.append(f"{label}: {len(pairs)} tasks")
    return [RefBundle(p, m) for (p, _), m in zip(pairs, metas)]


def _parts(refs, P):
    return [refs] if P == 1 else list(refs)


def _num_partitions(bundles):
    """Output blocks of a sort or shuffle: as many as input blocks (Ray), but no more than
    needed for two per CPU and blocks of about 32 MiB (every map task makes one piece per
    output block, so pieces grow quadratically in number)."""
    from .executor import cluster_cpus
    total = sum(b.size_bytes for b in bundles)
    want = max(int(2 * cluster_cpus()), -(-total // (32 << 20)))
    return max(1, min(len(bundles), want))


def _seed(seed, *rest):
    return None if seed is None else [int(seed), *rest]


# ----------------------------------------------------------------------------- random shuffle


@ray.remote
def _shuffle_map(block, P, seed, i):
    # Each partition gets a uniformly random set of the block's rows, taken in the block's
    # order (the copy streams through memory); the reduce permutes the union of its pieces.
    n = B.num_rows(block)
    rng = np.random.default_rng(_seed(seed, 0, i))
    perm = rng.permutation(n)
    bounds = np.linspace(0, n, P + 1).astype(np.int64)
    rows = [np.sort(perm[bounds[j]:bounds[j + 1]]) for j in range(P)]
    cols = _scatter_columns([block])
    if cols is None:
        out = tuple(B.take(block, r) for r in rows)
    else:
        # Large numpy blocks: each piece is taken straight into its object's shared memory.
        out = tuple(_filled_rows(block, r, cols) for r in rows)
    return out if P > 1 else out[0]


def _filled_rows(block, rows, cols):
    """The rows of ``block`` as a return value written straight into the object store."""
    m = len(rows)
    piece = B.NumpyBlock({k: np.empty((m,) + shape, dt) for k, (dt, shape) in cols.items()})
    names = {v.ctypes.data: k for k, v in piece.columns.items()}

    def fill(_i, dst, src):
        k = names.get(src)
        if k is None:
            return False
        dt, shape = cols[k]
        np.take(block.columns[k], rows, axis=0, mode="clip",  # valid rows; "raise" would buffer
                out=np.frombuffer(dst, dtype=dt).reshape((m,) + shape))
        return True

    return _api._filled(piece, fill)


_SCATTER_MIN_BYTES = 1 << 20


def _scatter_columns(parts):
    """The columns (name -> (dtype, row shape)) of numpy pieces that the reduce can scatter
    straight into the object store, or None (arrow pieces, object columns, small outputs)."""
    nonempty = [p for p in parts if B.num_rows(p)]
    if not nonempty or not all(isinstance(p, B.NumpyBlock) for p in nonempty):
        return None
    first = nonempty[0].columns
    cols = {k: (v.dtype, v.shape[1:]) for k, v in first.items()}
    if not cols or any(dt.hasobject for dt, _ in cols.values()):
        return None
    for p in nonempty[1:]:
        if list(p.columns) != list(cols) or any((v.dtype, v.shape[1:]) != cols[k] for k, v in p.columns.items()):
            return None
    n = sum(B.num_rows(p) for p in nonempty)
    row = sum(dt.itemsize * int(np.prod(shape, dtype=np.int64)) for dt, shape in cols.values())
    return cols if n * row >= _SCATTER_MIN_BYTES else None


@ray.remote(num_returns=2)
def _shuffle_reduce(seed, j, *parts):
    rng = np.random.default_rng(_seed(seed, 1, j))
    cols = _scatter_columns(parts)
    if cols is None:
        b = B.concat(list(parts))
        n = B.num_rows(b)
        b = compact(B.take(b, rng.permutation(n))) if n else b
        return b, block_meta(b)
    # Every piece's rows go to random places of the output, written straight into the
    # object's shared memory (one copy: no concatenation, no copy into the store).
    nonempty = [p for p in parts if B.num_rows(p)]
    n = sum(B.num_rows(p) for p in nonempty)
    perm = rng.permutation(n)
    out = B.NumpyBlock({k: np.empty((n,) + shape, dt) for k, (dt, shape) in cols.items()})
    fills = {v.ctypes.data: k for k, v in out.columns.items()}

    def fill(_i, dst, src):
        k = fills.get(src)
        if k is None:
            return False
        dt, shape = cols[k]
        arr = np.frombuffer(dst, dtype=dt).reshape((n,) + shape)
        at = 0
        for p in nonempty:
            m = B.num_rows(p)
            arr[perm[at:at + m]] = p.columns[k]
            at += m
        del arr
        return True

    return _api._filled(out, fill), block_meta(out)


def random_shuffle(seed, num_blocks):
    def fn(inputs, op):
        bundles = [b for b in inputs[0]]
        inputs[0].clear()
        if not bundles:
            return []
        P = num_blocks or _num_partitions(bundles)
        maps = [_parts(_shuffle_map.options(num_returns=P).remote(b.ref, P, seed, i), P)
                for i, b in enumerate(bundles)]
        op.stats.extra.append(f"Shuffle Map: {len(maps)} tasks")
        del bundles
        pairs = [tuple(_shuffle_reduce.remote(seed, j, *[m[j] for m in maps])) for j in range(P)]
        del maps
        return _collect(pairs, op, "Shuffle Reduce")
    return fn


def randomize_block_order(seed):
    def fn(inputs, op):
        bundles = list(inputs[0])
        rng = np.random.default_rng(seed)
        return [bundles[i] for i in rng.permutation(len(bundles))]
    return fn


# ----------------------------------------------------------------------------- repartition


def repartition(num_blocks, target_rows=None):
    """Contiguous rows into ``num_blocks`` blocks of about equal rows (order kept)."""
    from .remote import concat_slices_task

    def fn(inputs, op):
        bundles = [b for b in inputs[0]]
        total = sum(b.num_rows for b in bundles)
        if target_rows:
            n = max(1, -(-total // target_rows))
        else:
            n = num_blocks
        if not bundles:
            return []
        bounds = [total * j // n for j in range(n + 1)]
        starts = np.cumsum([0] + [b.num_rows for b in bundles])
        pairs = []
        for j in range(n):
            lo, hi = bounds[j], bounds[j + 1]
            spec, refs = [], []
            for i, b in enumerate(bundles):
                s, e = starts[i], starts[i + 1]
                a, z = max(lo, s), min(hi, e)
                if a < z:
                    spec.append((len(refs), int(a - s), int(max(a, z) - s)))
                    refs.append(b.ref)
            pairs.append(tuple(concat_slices_task.remote(spec, *refs)))
        return _collect(pairs, op, "Repartition")
    return fn


# ----------------------------------------------------------------------------- sort


@ray.remote
def _sort_sample(block, key, k, seed):
    col = B.key_array(block, key)
    n = len(col)
    if n == 0:
        return col[:0]
    idx = np.random.default_rng(seed).choice(n, size=min(n, k), replace=False)
    return col[idx]


@ray.remote
def _sort_map(block, keys, descending, boundaries, P):
    col = B.key_array(block, keys[0])
    part = np.searchsorted(boundaries, col, side="right") if len(boundaries) else np.zeros(len(col), np.int64)
    if descending[0]:
        part = (P - 1) - part
    out = tuple(compact(p) for p in B.partition_by(block, part.astype(np.int64), P))
    return out if P > 1 else out[0]


@ray.remote(num_returns=2)
def _sort_reduce(keys, descending, *parts):
    b = B.concat(list(parts))
    if B.num_rows(b):
        b = compact(B.take(b, B.sort_indices(b, keys, descending)))
    return b, block_meta(b)


def _boundaries(samples, P):
    allk = np.concatenate([s for s in samples if len(s)]) if any(len(s) for s in samples) else np.array([])
    if len(allk) == 0 or P == 1:
        return allk[:0]
    try:
        allk = np.sort(allk, kind="stable")
    except TypeError:
        allk = np.array(sorted(allk, key=lambda x: (x is None, x)), dtype=object)
    qs = [allk[min(len(allk) - 1, int(len(allk) * j / P))] for j in range(1, P)]
    return np.array(qs, dtype=allk.dtype)


def sort(keys, descending):
    def fn(inputs, op):
        bundles = [b for b in inputs[0] if b.num_rows] or list(inputs[0][:1])
        inputs[0].clear()
        if not bundles:
            return []
        names = bundles[0].meta.schema.names if bundles[0].meta.schema is not None else None
        if names is not None:
            missing = [k for k in keys if k not in names]
            if missing:
                raise ValueError(f"sort: key column(s) {missing} not found; the dataset has {names}")
        P = _num_partitions(bundles)
        samples = ray.get([_sort_sample.remote(b.ref, keys[0], 100, i) for i, b in enumerate(bundles)])
        bnd = _boundaries(samples, P)
        maps = [_parts(_sort_map.options(num_returns=P).remote(b.ref, keys, descending, bnd, P), P)
                for b in bundles]
        op.stats.extra.append(f"Sort Sample: {len(bundles)} tasks")
        op.stats.extra.append(f"Sort Map: {len(maps)} tasks")
        del bundles
        pairs = [tuple(_sort_reduce.remote(keys, descending, *[m[j] for m in maps])) for j in range(P)]
        del maps
        return _collect(pairs, op, "Sort Reduce")
    return fn


# ----------------------------------------------------------------------------- aggregate


@ray.remote
def _agg_map(block, keys, aggs, P):
    from ..aggregate import partial_aggregate
    part = partial_aggregate(block, keys, aggs)
    if P == 1:
        return part
    ids = B.hash_partition(part, keys, P)
    return tuple(compact(p) for p in B.partition_by(part, ids, P))


@ray.remote(num_returns=2)
def _agg_reduce(keys, aggs, *parts):
    from ..aggregate import combine_aggregate
    b = combine_aggregate(list(parts), keys, aggs)
    if b is None:
        b = B.empty_block()
    return b, block_meta(b)


def aggregate(keys, aggs, num_partitions=None):
    from .executor import cluster_cpus

    def fn(inputs, op):
        bundles = [b for b in inputs[0] if b.num_rows]
        inputs[0].clear()
        if not bundles:
            return []
        if not keys:
            P = 1
        else:
            P = num_partitions or max(1, min(len(bundles), int(2 * cluster_cpus())))
        maps = [_parts(_agg_map.options(num_returns=P).remote(b.ref, keys, aggs, P), P) for b in bundles]
        op.stats.extra.append(f"Aggregate Map: {len(maps)} tasks")
        del bundles
        pairs = [tuple(_agg_reduce.remote(keys, aggs, *[m[j] for m in maps])) for j in range(P)]
        del maps
        out = _collect(pairs, op, "Aggregate Reduce")
        return [b for b in out if b.num_rows] or out[:1]
    return fn


# ----------------------------------------------------------------------------- map_groups


@ray.remote
def _group_map(block, keys, P):
    ids = B.hash_partition(block, keys, P)
    out = tuple(compact(p) for p in B.partition_by(block, ids, P))
    return out if P > 1 else out[0]


@ray.remote(num_returns=2)
def _group_reduce(keys, holder, *parts):
    from .remote import resolve_chain
    chain = resolve_chain(holder)
    b = B.concat(list(parts))
    outs = []
    if B.num_rows(b):
        b = B.take(b, B.sort_indices(b, keys, [False] * len(keys)))
        key_cols = [B.key_array(b, k) for k in keys]
        n = B.num_rows(b)
        change = np.zeros(n, dtype=bool)
        change[0] = True
        for kc in key_cols:
            ne = kc[1:] != kc[:-1]
            if kc.dtype.kind == "f":
                ne &= ~(np.isnan(kc[1:]) & np.isnan(kc[:-1]))
            change[1:] |= ne
        starts = np.flatnonzero(change).tolist() + [n]
        groups = [B.slice_block(b, starts[i], starts[i + 1]) for i in range(len(starts) - 1)]
        from .transforms import TaskContext
        for out in chain.apply(iter(groups), TaskContext()):
            outs.append(out)
    res = compact(B.concat(outs)) if outs else B.empty_block()
    return res, block_meta(res)


def map_groups(keys, chain, num_partitions=None):
    from .executor import cluster_cpus

    def fn(inputs, op):
        bundles = [b for b in inputs[0] if b.num_rows]
        inputs[0].clear()
        if not bundles:
            return []
        P = num_partitions or max(1, min(len(bundles), int(2 * cluster_cpus())))
        holder = [ray.put(chain)]
        maps = [_parts(_group_map.options(num_returns=P).remote(b.ref, keys, P), P) for b in bundles]
        del bundles
        pairs = [tuple(_group_reduce.remote(keys, holder, *[m[j] for m in maps])) for j in range(P)]
        del maps
        out = _collect(pairs, op, "MapGroups")
        return [b for b in out if b.num_rows] or out[:1]
    return fn


# ----------------------------------------------------------------------------- zip


@ray.remote(num_returns=2)
def _zip_task(left, spec, *rights):
    cols = {}
    lb = B.to_numpy_block(left) if not _all_arrow(left, rights) else None
    if lb is None:
        right = B.concat([B.slice_block(rights[i], s, e) for i, s, e in spec]) if spec else None
        out = left
        names = list(left.schema.names)
        if right is not None:
            for name in right.schema.names:
                new = _unique_name(name, names)
                names.append(new)
                out = out.append_column(new, right.column(name))
        out = compact(out)
        return out, block_meta(out)
    cols.update(lb.columns)
    if spec:
        right = B.to_numpy_block(B.concat([B.slice_block(rights[i], s, e) for i, s, e in spec]))
        for name, v in right.columns.items():
            cols[_unique_name(name, list(cols))] = v
    out = B.NumpyBlock(cols)
    return out, block_meta(out)


def _all_arrow(left, rights):
    pa = B._pa()
    return isinstance(left, pa.Table) and all(isinstance(r, pa.Table) for r in rights)


def _unique_name(name, existing):
    if name not in existing:
        return name
    i = 1
    while f"{name}_{i}" in existing:
        i += 1
    return f"{name}_{i}"


def zip_datasets():
    def fn(inputs, op):
        left = list(inputs[0])
        out_pairs = []
        total_left = sum(b.num_rows for b in left)
        for other in inputs[1:]:
            n = sum(b.num_rows for b in other)
            if n != total_left:
                raise ValueError(f"Cannot zip datasets of different number of rows: {total_left}, {n}")
        current = left
        for other in inputs[1:]:
            starts = np.cumsum([0] + [b.num_rows for b in other])
            pos = 0
            pairs = []
            for lb in current:
                lo, hi = pos, pos + lb.num_rows
                spec, refs = [], []
                for i, rb in enumerate(other):
                    a, z = max(lo, starts[i]), min(hi, starts[i + 1])
                    if a < z:
                        spec.append((len(refs), int(a - starts[i]), int(z - starts[i])))
                        refs.append(rb.ref)
                pairs.append(tuple(_zip_task.remote(lb.ref, spec, *refs)))
                pos = hi
            current = _collect(pairs, op, "Zip")
            out_pairs = current
        return out_pairs if len(inputs) > 1 else left
    return fn
