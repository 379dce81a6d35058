"""``@serve.batch``: concurrent calls of a method are gathered into one call with lists.

The decorated function takes lists (one list per argument) and returns a list with one result
per call. Async functions are batched on the calling event loop (one batching task per
instance and loop); sync functions by a batching thread per instance, while the callers (the
replica's request threads) wait for their element."""

import asyncio
import concurrent.futures
import functools
import inspect
import queue as _queue
import threading
import time


def _check_results(results, n, name):
    try:
        length = len(results)
    except TypeError:
        raise TypeError(f"@serve.batch function {name!r} must return a list (one result per "
                        f"call), got {type(results).__name__}") from None
    if length != n:
        raise ValueError(f"@serve.batch function {name!r} returned {length} results for a batch "
                         f"of {n} calls; it must return one result per call")
    return list(results)


def _columns(items):
    """[(args, kwargs), ...] -> (list per positional argument, list per keyword)."""
    nargs = len(items[0][0])
    keys = tuple(items[0][1])
    for args, kwargs in items:
        if len(args) != nargs or tuple(kwargs) != keys:
            raise TypeError("all calls of a @serve.batch function must pass the same arguments "
                            "(same number of positional arguments and the same keywords)")
    return ([[a[i] for a, _ in items] for i in range(nargs)],
            {k: [kw[k] for _, kw in items] for k in keys})


class _AsyncBatchQueue:
    def __init__(self, func, owner, max_batch_size, timeout_s, max_concurrent):
        self.func, self.owner = func, owner
        self.max_batch_size, self.timeout_s = max_batch_size, timeout_s
        self.loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue()
        self.sem = asyncio.Semaphore(max_concurrent)
        self.task = self.loop.create_task(self._run())

    async def submit(self, args, kwargs):
        fut = self.loop.create_future()
        self.queue.put_nowait((args, kwargs, fut))
        return await fut

    async def _collect(self):
        batch = [await self.queue.get()]
        deadline = self.loop.time() + self.timeout_s
        while len(batch) < self.max_batch_size:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return [b for b in batch if not b[2].done()]

    async def _run(self):
        while True:
            batch = await self._collect()
            if not batch:
                continue
            await self.sem.acquire()
            self.loop.create_task(self._call(batch))

    async def _call(self, batch):
        try:
            args, kwargs = _columns([(a, k) for a, k, _ in batch])
            call_args = ((self.owner,) if self.owner is not None else ()) + tuple(args)
            results = _check_results(await self.func(*call_args, **kwargs), len(batch),
                                     self.func.__name__)
            for (_, _, fut), r in zip(batch, results):
                if not fut.done():
                    fut.set_result(r)
        except BaseException as e:  # noqa: BLE001 - every caller of the batch gets the error
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        finally:
            self.sem.release()


class _SyncBatchQueue:
    def __init__(self, func, owner, max_batch_size, timeout_s, max_concurrent):
        self.func, self.owner = func, owner
        self.max_batch_size, self.timeout_s = max_batch_size, timeout_s
        self.queue = _queue.Queue()
        self.pool = (concurrent.futures.ThreadPoolExecutor(max_concurrent, "serve-batch")
                     if max_concurrent > 1 else None)
        threading.Thread(target=self._run, name="serve-batch", daemon=True).start()

    def submit(self, args, kwargs):
        fut = concurrent.futures.Future()
        self.queue.put((args, kwargs, fut))
        return fut.result()

    def _run(self):
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.timeout_s
            while len(batch) < self.max_batch_size:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self.queue.get(timeout=max(remaining, 0)) if remaining > 0
                                 else self.queue.get_nowait())
                except _queue.Empty:
                    break
            if self.pool is not None:
                self.pool.submit(self._call, batch)
            else:
                self._call(batch)

    def _call(self, batch):
        try:
            args, kwargs = _columns([(a, k) for a, k, _ in batch])
            call_args = ((self.owner,) if self.owner is not None else ()) + tuple(args)
            results = _check_results(self.func(*call_args, **kwargs), len(batch),
                                     self.func.__name__)
            for (_, _, fut), r in zip(batch, results):
                fut.set_result(r)
        except BaseException as e:  # noqa: BLE001
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)


# The decorated function is pickled by value with the user's class: it reaches the lock
# through a module function (pickled by reference), never the lock itself.
_queues_lock = threading.Lock()


def _queues_lock_of():
    return _queues_lock


def _is_method(func):
    params = list(inspect.signature(func).parameters)
    return bool(params) and params[0] == "self"


def batch(_func=None, /, max_batch_size=10, batch_wait_timeout_s=0.01, max_concurrent_batches=1,
          batch_size_fn=None):
    """Batches concurrent calls: ``@serve.batch`` or ``@serve.batch(max_batch_size=8,
    batch_wait_timeout_s=0.05)`` on a function or method taking lists and returning one result
    per element. Works on ``async def`` and plain functions."""
    if _func is not None and not callable(_func):
        raise TypeError("@serve.batch takes its options as keywords: "
                        "@serve.batch(max_batch_size=..., batch_wait_timeout_s=...)")
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
    if isinstance(batch_wait_timeout_s, bool) or not isinstance(batch_wait_timeout_s, (int, float)) \
            or batch_wait_timeout_s < 0:
        raise ValueError(f"batch_wait_timeout_s must be a number >= 0, got {batch_wait_timeout_s!r}")
    if isinstance(max_concurrent_batches, bool) or not isinstance(max_concurrent_batches, int) \
            or max_concurrent_batches < 1:
        raise ValueError(f"max_concurrent_batches must be an integer >= 1, got "
                         f"{max_concurrent_batches!r}")
    if batch_size_fn is not None:
        raise NotImplementedError("batch_size_fn is not supported by mpiray.serve yet")

    def decorate(func):
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError(f"@serve.batch on the generator {func.__name__!r}: streaming "
                            "batches are not supported by mpiray.serve yet")
        is_async = inspect.iscoroutinefunction(func)
        method = _is_method(func)
        attr = f"__serve_batch_queue_{func.__name__}"
        plain = {}  # queues of a plain function, per event loop (async) or one (sync)

        def get_queue(args):
            owner = args[0] if method else None
            rest = args[1:] if method else args
            key = id(asyncio.get_running_loop()) if is_async else 0
            with _queues_lock_of():
                store = plain
                if owner is not None:
                    store = owner.__dict__.setdefault(attr, {})
                q = store.get(key)
                if q is None:
                    cls = _AsyncBatchQueue if is_async else _SyncBatchQueue
                    q = store[key] = cls(func, owner, max_batch_size, batch_wait_timeout_s,
                                         max_concurrent_batches)
            return q, rest

        if is_async:
            @functools.wraps(func)
            async def wrapper(*args, **kwargs):
                q, rest = get_queue(args)
                return await q.submit(rest, kwargs)
        else:
            @functools.wraps(func)
            def wrapper(*args, **kwargs):
                q, rest = get_queue(args)
                return q.submit(rest, kwargs)
        wrapper._serve_batch = {"max_batch_size": max_batch_size,
                                "batch_wait_timeout_s": batch_wait_timeout_s}
        return wrapper

    return decorate(_func) if _func is not None else decorate
