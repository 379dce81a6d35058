"""DataIterator: batches of a dataset or of one shard of ``streaming_split`` (Ray's
``ray.data.DataIterator``), with prefetching and a local shuffle buffer.

A batch is a zero-copy view of a block in the object store when it lies inside one block
(read-only numpy arrays); batches across block boundaries are concatenated copies.
"""

import queue
import threading

import numpy as np

import mpiray as ray

from . import block as B
from ._internal.transforms import _Batcher


class _Prefetcher:
    """Fetches the blocks of upcoming bundles on a thread while the consumer works.

    A fetched block is mapped, so it stays in the object store's memory: at most ``depth``
    blocks are fetched ahead of the consumer, and a block larger than a quarter of the memory
    budget is fetched only when the consumer asks for it (in a small store, the consumer's
    previous block, the one it gets and one fetched ahead might not fit together)."""

    def __init__(self, bundles, depth):
        self.bundles = bundles
        self.depth = max(0, int(depth))
        self.q = queue.Queue()
        self.slots = threading.Semaphore(max(1, self.depth))
        self.cond = threading.Condition()
        self.asking = False
        self.thread = None
        self.closed = False
        try:
            from ._internal.executor import memory_budget
            from .context import DataContext
            self.max_ahead = memory_budget(DataContext.get_current()) // 4
        except Exception:
            self.max_ahead = 64 << 20

    def _wait(self, bundle):
        if bundle.size_bytes > self.max_ahead:
            with self.cond:
                while not (self.asking and self.q.empty()):
                    if self.closed:
                        return False
                    self.cond.wait(0.2)
            return True
        while not self.slots.acquire(timeout=0.2):
            if self.closed:
                return False
        return True

    def _fill(self):
        try:
            for bundle in self.bundles:
                if self.closed or not self._wait(bundle):
                    return
                block = ray.get(bundle.ref)
                self.q.put((bundle, block, bundle.size_bytes <= self.max_ahead, None))
                del block
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self.q.put((None, None, False, e))
            return
        self.q.put((None, None, False, None))

    def __iter__(self):
        if self.depth == 0:
            for bundle in self.bundles:
                yield bundle, ray.get(bundle.ref)
            return
        self.thread = threading.Thread(target=self._fill, daemon=True, name="mpiray-data-prefetch")
        self.thread.start()
        try:
            while True:
                with self.cond:
                    self.asking = True
                    self.cond.notify_all()
                bundle, block, small, err = self.q.get()
                with self.cond:
                    self.asking = False
                if err is not None:
                    raise err
                if bundle is None:
                    return
                if small:
                    self.slots.release()
                yield bundle, block
                del block
        finally:
            self.closed = True
            with self.cond:
                self.cond.notify_all()
            try:
                while True:
                    self.q.get_nowait()
            except queue.Empty:
                pass
            close = getattr(self.bundles, "close", None)
            if close is not None and self.thread is not None:
                self.thread.join(timeout=60)


class _ShuffleBuffer:
    """Rows kept in a buffer of at least ``min_rows``; batches are drawn at random from it."""

    def __init__(self, batch_size, min_rows, seed):
        self.batch_size = batch_size or 256
        self.min_rows = min_rows
        self.rng = np.random.default_rng(seed)
        self.blocks = []
        self.rows = 0
        self.buf = None

    def add(self, block):
        if B.num_rows(block):
            self.blocks.append(block)
            self.rows += B.num_rows(block)

    def _materialize(self):
        parts = ([self.buf] if self.buf is not None and B.num_rows(self.buf) else []) + self.blocks
        self.buf = B.concat(parts) if parts else None
        self.blocks = []

    def ready(self):
        return self.rows >= self.min_rows + self.batch_size

    def next_batch(self, final=False):
        self._materialize()
        n = B.num_rows(self.buf)
        k = min(self.batch_size, n)
        idx = self.rng.choice(n, size=k, replace=False)
        batch = B.take(self.buf, idx)
        keep = np.ones(n, dtype=bool)
        keep[idx] = False
        self.buf = B.take(self.buf, np.flatnonzero(keep))
        self.rows -= k
        return batch


def iter_batch_blocks(fetched, batch_size, drop_last, local_shuffle_buffer_size, local_shuffle_seed):
    """Blocks of exactly ``batch_size`` rows (None: whole blocks) from ``(bundle, block)``
    pairs."""
    if local_shuffle_buffer_size:
        sb = _ShuffleBuffer(batch_size, local_shuffle_buffer_size, local_shuffle_seed)
        for _, block in fetched:
            sb.add(block)
            while sb.ready():
                yield sb.next_batch()
        while sb.rows > 0:
            b = sb.next_batch(final=True)
            if drop_last and batch_size and B.num_rows(b) < batch_size:
                return
            yield b
        return
    if batch_size is None:
        for _, block in fetched:
            if B.num_rows(block):
                yield block
        return
    batcher = _Batcher(batch_size)
    for _, block in fetched:
        batcher.add(block)
        while batcher.has_batch():
            yield batcher.next_batch()
    if batcher.rows and not drop_last:
        yield batcher.next_batch(final=True)


def _check_batch_args(batch_size, batch_format):
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if batch_format not in ("default", "numpy", "pandas", "pyarrow", None):
        raise ValueError(f"batch_format must be one of 'default', 'numpy', 'pandas', 'pyarrow'; got {batch_format!r}")


class DataIterator:
    """Iterates over a dataset's rows or batches (``ds.iterator()``, the shards of
    ``ds.streaming_split(n)``, ``train.get_dataset_shard(name)``)."""

    def _iter_bundles(self):
        """RefBundles of the data, in order."""
        raise NotImplementedError

    def iter_batches(self, *, prefetch_batches=1, batch_size=256, batch_format="default", drop_last=False,
                     local_shuffle_buffer_size=None, local_shuffle_seed=None, _collate_fn=None):
        _check_batch_args(batch_size, batch_format)
        bundles = self._iter_bundles()
        fetched = _Prefetcher(bundles, prefetch_batches)
        try:
            for blk in iter_batch_blocks(fetched, batch_size, drop_last, local_shuffle_buffer_size,
                                         local_shuffle_seed):
                batch = B.to_batch(blk, batch_format)
                yield _collate_fn(batch) if _collate_fn is not None else batch
        finally:
            close = getattr(bundles, "close", None)
            if close is not None:
                close()

    def iter_rows(self):
        bundles = self._iter_bundles()
        try:
            for _, block in _Prefetcher(bundles, 1):
                yield from B.iter_rows(block)
        finally:
            close = getattr(bundles, "close", None)
            if close is not None:
                close()

    def iter_torch_batches(self, *, prefetch_batches=1, batch_size=256, dtypes=None, device="auto",
                           collate_fn=None, drop_last=False, local_shuffle_buffer_size=None,
                           local_shuffle_seed=None, pin_memory=False):
        """Batches as dicts of torch tensors (``dtypes``: one torch dtype or a dict per column;
        ``device``: "auto" is the Train worker's device or CPU), or what ``collate_fn`` makes of
        each numpy batch. Tensors never share memory with the object store (which is mapped
        read-only), so they can be changed in place."""
        try:
            import torch
        except ImportError:
            raise ImportError("iter_torch_batches needs PyTorch: pip install torch (or mpiray[train])") from None
        if collate_fn is not None and dtypes is not None:
            raise ValueError("iter_torch_batches: pass either collate_fn or dtypes, not both")
        dev = _resolve_device(device, torch)
        for batch in self.iter_batches(prefetch_batches=prefetch_batches, batch_size=batch_size,
                                       batch_format="numpy", drop_last=drop_last,
                                       local_shuffle_buffer_size=local_shuffle_buffer_size,
                                       local_shuffle_seed=local_shuffle_seed):
            if collate_fn is not None:
                yield collate_fn(batch)
                continue
            out = {}
            for k, v in batch.items():
                dt = dtypes.get(k) if isinstance(dtypes, dict) else dtypes
                out[k] = _to_tensor(v, dt, dev, pin_memory, torch)
            yield out

    def to_torch(self, *args, **kwargs):
        raise NotImplementedError("to_torch() was removed in Ray 2.x; use iter_torch_batches()")

    def materialize(self):
        from .dataset import MaterializedDataset
        from ._internal.plan import InputData
        bundles = list(self._iter_bundles())
        return MaterializedDataset(InputData(bundles))

    def stats(self):
        return self._stats() if hasattr(self, "_stats") else ""

    def schema(self):
        raise NotImplementedError


def _resolve_device(device, torch):
    if device == "auto":
        # Inside a Train worker: the device Train gave it (ray.train.torch.get_device()); else CPU.
        try:
            from mpiray.train._session import current_session
            if current_session() is not None:
                from mpiray.train.torch import get_device
                return get_device()
        except Exception:
            pass
        return torch.device("cpu")
    if device is None:
        return None
    return torch.device(device)


def _to_tensor(v, dtype, device, pin_memory, torch):
    if v.dtype == object:
        try:
            v = np.stack(list(v))
        except Exception:
            raise TypeError("iter_torch_batches: a column of variable-shaped arrays cannot become one tensor; "
                            "pass a collate_fn") from None
    if not v.flags.writeable or not v.flags.c_contiguous:
        v = np.array(v)  # a private, writable copy (store memory is read-only)
    t = torch.from_numpy(v)
    if dtype is not None:
        t = t.to(dtype)
    if pin_memory and t.device.type == "cpu":
        t = t.pin_memory()
    if device is not None and t.device != device:
        t = t.to(device)
    return t


class _DatasetIterator(DataIterator):
    def __init__(self, ds):
        self._ds = ds

    def _iter_bundles(self):
        return self._ds._iter_bundles()

    def schema(self):
        return self._ds.schema()

    def _stats(self):
        return self._ds.stats()

    def __repr__(self):
        return f"DataIterator({self._ds!r})"


class StreamSplitDataIterator(DataIterator):
    """One shard of ``Dataset.streaming_split(n)``: picklable, consumed wherever it is sent
    (a Train worker, an actor); blocks come from the split's coordinator actor as the shared
    execution produces them. Every shard must be iterated once per epoch."""

    def __init__(self, coordinator, index, n, schema=None):
        self._coord = coordinator
        self._index = index
        self._n = n
        self._schema = schema
        self._epoch = -1

    def __reduce__(self):
        return (StreamSplitDataIterator, (self._coord, self._index, self._n, self._schema))

    def _iter_bundles(self):
        coord = self._coord
        i = self._index
        epoch = ray.get(coord.start_epoch.remote(i))
        self._epoch = epoch
        while True:
            got = ray.get(coord.get.remote(epoch, i))
            if got is None:
                return
            for b in got:
                yield b

    def schema(self):
        return self._schema

    def world_size(self):
        return self._n

    def _stats(self):
        return ray.get(self._coord.stats.remote())

    def __repr__(self):
        return f"StreamSplitDataIterator(split={self._index}, n={self._n})"
