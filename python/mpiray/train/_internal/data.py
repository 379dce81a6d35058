"""``get_dataset_shard``: the trainer's ``datasets`` split among the workers.

A dataset object with Ray Data's ``streaming_split``/``split`` (an mpiray.data Dataset, or
anything shaped like it) is split with it. Plain in-memory data (a list, a tuple, a numpy
array, a dict of equally long numpy arrays, or a map-style torch Dataset) is split into
contiguous, nearly equal blocks, one per rank, and each worker gets a :class:`DataShard`
with Ray's ``DataIterator`` methods (``iter_batches``, ``iter_torch_batches``,
``iter_rows``, ``count``).
"""



def shard_datasets(datasets, data_config, n):
    """[{name: shard} for each rank]."""
    out = [dict() for _ in range(n)]
    split_names = None
    if data_config is not None and data_config.datasets_to_split != "all":
        split_names = set(data_config.datasets_to_split)
    for name, ds in (datasets or {}).items():
        if callable(ds) and not hasattr(ds, "__len__") and not _is_ray_like(ds):
            ds = ds()  # Ray accepts a function returning the dataset
        split = split_names is None or name in split_names
        if not split:
            for r in range(n):
                out[r][name] = _as_iterator(ds, 0, 1)
            continue
        if _is_ray_like(ds):
            if hasattr(ds, "streaming_split"):
                parts = ds.streaming_split(n, equal=True)
            else:
                parts = ds.split(n, equal=True)
            for r in range(n):
                out[r][name] = parts[r]
            continue
        for r in range(n):
            out[r][name] = _as_iterator(ds, r, n)
    return out


def _is_ray_like(ds):
    return hasattr(ds, "streaming_split") or (hasattr(ds, "split") and hasattr(ds, "iter_batches"))


def _as_iterator(ds, rank, n):
    if _is_ray_like(ds):
        return ds.iterator() if hasattr(ds, "iterator") else ds
    return DataShard(ds, rank, n)


class DataShard:
    """Rank ``rank``'s contiguous block of ``data`` (of ``n`` nearly equal blocks)."""

    def __init__(self, data, rank, n):
        self._data = data
        length = _length(data)
        base, extra = divmod(length, n)
        self.start = rank * base + min(rank, extra)
        self.stop = self.start + base + (1 if rank < extra else 0)
        self.rank, self.world_size = rank, n

    def count(self):
        return self.stop - self.start

    __len__ = count

    def _rows(self, lo, hi):
        d = self._data
        if isinstance(d, dict):
            return {k: v[lo:hi] for k, v in d.items()}
        if hasattr(d, "__getitem__") and not isinstance(d, (list, tuple)) and _is_sliceable(d):
            return d[lo:hi]
        return [d[i] for i in range(lo, hi)]

    def iter_rows(self):
        d = self._data
        for i in range(self.start, self.stop):
            if isinstance(d, dict):
                yield {k: v[i] for k, v in d.items()}
            else:
                yield d[i]

    __iter__ = iter_rows

    def iter_batches(self, *, batch_size=256, drop_last=False, local_shuffle_buffer_size=None,
                     local_shuffle_seed=None, batch_format="default", prefetch_batches=1, **_):
        """Batches of ``batch_size`` rows: numpy/list slices of the block, in order (a local
        shuffle permutes the block first when ``local_shuffle_buffer_size`` is given)."""
        if batch_size is None:
            batch_size = self.count() or 1
        order = None
        if local_shuffle_buffer_size:
            import numpy as np
            order = np.random.default_rng(local_shuffle_seed).permutation(self.count()) + self.start
        lo = self.start
        while lo < self.stop:
            hi = min(lo + batch_size, self.stop)
            if drop_last and hi - lo < batch_size:
                return
            if order is None:
                yield self._rows(lo, hi)
            else:
                idx = order[lo - self.start:hi - self.start]
                d = self._data
                if isinstance(d, dict):
                    yield {k: v[idx] for k, v in d.items()}
                elif _is_sliceable(d) and hasattr(d, "__array__"):
                    yield d[idx]
                else:
                    yield [d[int(i)] for i in idx]
            lo = hi

    def iter_torch_batches(self, *, batch_size=256, dtypes=None, device="auto", drop_last=False, **kw):
        import numpy as np
        import torch
        if device == "auto":
            try:
                from ..torch.train_loop_utils import get_device
                device = get_device()
            except Exception:
                device = "cpu"
        for b in self.iter_batches(batch_size=batch_size, drop_last=drop_last, **kw):
            yield _to_torch(b, dtypes, device, np, torch)

    def take(self, limit=20):
        return list(r for _, r in zip(range(limit), self.iter_rows()))

    def materialize(self):
        return self

    def __repr__(self):
        return f"DataShard(rank={self.rank}, rows={self.start}:{self.stop})"


def _length(d):
    if isinstance(d, dict):
        lens = {len(v) for v in d.values()}
        if len(lens) > 1:
            raise ValueError(f"a dict dataset needs columns of equal length, got lengths {sorted(lens)}")
        return lens.pop() if lens else 0
    try:
        return len(d)
    except TypeError:
        raise TypeError(f"cannot split a dataset of type {type(d).__name__}: give a sequence, a numpy array, a dict "
                        "of columns, a map-style torch Dataset, or a Dataset with split()/streaming_split()") from None


def _is_sliceable(d):
    return hasattr(d, "shape") or hasattr(d, "__array__")


def _to_torch(b, dtypes, device, np, torch):
    if isinstance(b, dict):
        return {k: _to_torch(v, dtypes.get(k) if isinstance(dtypes, dict) else dtypes, device, np, torch)
                for k, v in b.items()}
    if isinstance(b, torch.Tensor):
        t = b
    else:
        t = torch.as_tensor(np.asarray(b))
    if dtypes is not None and not isinstance(dtypes, dict):
        t = t.to(dtypes)
    return t.to(device)
