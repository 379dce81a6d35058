"""Completion of many ObjectRefs without a thread per ref.

Serve's request paths (the HTTP router in the driver, ``await`` on a ``DeploymentResponse``
in a replica or the driver) wait for thousands of actor calls a second. ``await ref`` in
mpiray starts a thread that blocks in ``ray.get`` for each ref; here a few long-lived threads
wait for whole batches instead: a thread takes every ref queued so far, blocks in
``ray.wait(num_returns=1)``, then collects everything that is ready with one more
``ray.wait`` and one ``ray.get``, runs the callbacks, adds the refs queued meanwhile to its
batch and waits again. A ref that arrives while every thread is blocked wakes an idle one (or
starts one, up to ``_MAX_THREADS``). So a burst of N completions costs three runtime calls,
not N threads.

Callbacks run on a waiter thread and must be quick (no blocking calls): answer the HTTP
client, set a future, hand the rest to another thread."""

import threading
import time

import mpiray as ray
from mpiray.exceptions import GetTimeoutError

_MAX_THREADS = 32
_IDLE_EXIT_S = 30.0      # an idle waiter thread ends after this
_SATURATED_WAIT_S = 0.01  # with every thread busy and refs queued, re-check this often


class RefWaiter:
    def __init__(self):
        self._cv = threading.Condition(threading.Lock())
        self._queue = []       # (ref, callback, deadline or None)
        self._threads = 0
        self._idle = 0
        self._waking = 0       # idle threads notified that have not taken their batch yet

    def add(self, ref, callback, timeout_s=None):
        """``callback(value, error)`` once ``ref`` is ready: ``error`` is None, or the exception
        ``ray.get`` raised, or ``GetTimeoutError`` when ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cv:
            self._queue.append((ref, callback, deadline))
            if self._idle > self._waking:
                self._waking += 1
                self._cv.notify()
            elif self._idle == 0 and self._threads < _MAX_THREADS:
                self._threads += 1
                threading.Thread(target=self._run, name="serve-waiter", daemon=True).start()

    def _take(self, batch, block):
        """Moves the queue into ``batch``; with ``block`` waits for something first. Returns
        False when the thread should end (idle too long). Called with the lock held."""
        if block:
            self._idle += 1
            try:
                while not self._queue:
                    if not self._cv.wait(_IDLE_EXIT_S) and not self._queue:
                        self._threads -= 1
                        return False
            finally:
                self._idle -= 1
                if self._waking:
                    self._waking -= 1
        for ref, cb, deadline in self._queue:
            batch.setdefault(ref, []).append((cb, deadline))  # one ref may be awaited twice
        self._queue.clear()
        return True

    def _run(self):
        batch = {}
        while True:
            with self._cv:
                if not self._take(batch, block=not batch):
                    return
                saturated = self._threads >= _MAX_THREADS and self._idle == 0
            wait_step(batch, _SATURATED_WAIT_S if saturated else None)


def add_to_batch(batch, ref, callback, timeout_s=None):
    """Adds a ref to a batch of ``wait_step`` (a dict ref -> [(callback, deadline)])."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    batch.setdefault(ref, []).append((callback, deadline))


def wait_step(batch, timeout=None):
    """One round over ``batch``: blocks until one of its refs is ready (or ``timeout`` seconds,
    or the earliest deadline), then runs the callbacks of every ref that is ready (and of those
    past their deadline) and removes them. Three runtime calls however many are ready:
    ``wait(num_returns=1)``, ``wait(timeout=0)`` over the rest, one ``get``. Callbacks may add
    to ``batch``."""
    refs = list(batch)
    if not refs:
        return
    now = time.monotonic()
    deadlines = [d for entries in batch.values() for _, d in entries if d is not None]
    if deadlines:
        left = max(0.0, min(deadlines) - now)
        timeout = left if timeout is None else min(timeout, left)
    try:
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    except Exception as e:  # noqa: BLE001 - runtime shut down: fail them all
        for ref in refs:
            for cb, _ in batch.pop(ref, ()):
                _call(cb, None, e)
        return
    if ready:
        _deliver(ready, batch)
    if deadlines:
        now = time.monotonic()
        for ref in list(batch):
            entries = batch[ref]
            late = [e for e in entries if e[1] is not None and e[1] <= now]
            if not late:
                continue
            entries[:] = [e for e in entries if e not in late]
            if not entries:
                del batch[ref]
            for cb, _ in late:
                _call(cb, None, GetTimeoutError(f"ObjectRef {ref.hex()} was not ready in time"))


def _deliver(ready, batch):
    try:
        values = ray.get(ready)
    except Exception:  # noqa: BLE001 - one failed: take them one by one
        for ref in ready:
            entries = batch.pop(ref)
            try:
                value, error = ray.get(ref), None
            except Exception as e:  # noqa: BLE001 - the task's error, to its caller
                value, error = None, e
            for cb, _ in entries:
                _call(cb, value, error)
        return
    for ref, value in zip(ready, values):
        for cb, _ in batch.pop(ref):
            _call(cb, value, None)


def _call(cb, value, error):
    try:
        cb(value, error)
    except Exception:  # noqa: BLE001 - a callback's bug must not stop the waiter
        import traceback
        traceback.print_exc()


class LoopResolver:
    """Resolves asyncio futures of one event loop from waiter threads, many per loop wake-up
    (one ``call_soon_threadsafe`` per burst, not per future)."""

    def __init__(self, loop):
        self.loop = loop
        self._lock = threading.Lock()
        self._items = []
        self._scheduled = False

    def push(self, fut, value, error):
        with self._lock:
            self._items.append((fut, value, error))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    def _flush(self):
        with self._lock:
            items, self._items = self._items, []
            self._scheduled = False
        for fut, value, error in items:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)


_waiter = None
_waiter_lock = threading.Lock()
_resolvers = {}


def get_waiter():
    global _waiter
    if _waiter is None:
        with _waiter_lock:
            if _waiter is None:
                _waiter = RefWaiter()
    return _waiter


def _resolver(loop):
    r = _resolvers.get(loop)
    if r is None:
        with _waiter_lock:
            for old in [lp for lp in _resolvers if lp.is_closed()]:
                del _resolvers[old]
            r = _resolvers.setdefault(loop, LoopResolver(loop))
    return r


def wait_async(ref):
    """An asyncio future of the running loop with ``ray.get(ref)``'s value (or exception)."""
    import asyncio
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    res = _resolver(loop)
    get_waiter().add(ref, lambda value, error: res.push(fut, value, error))
    return fut
