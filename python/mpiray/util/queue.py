"""A first-in first-out queue shared by the driver, tasks and actors (Ray's
``ray.util.queue``).

    from mpiray.util.queue import Queue, Empty

    q = Queue(maxsize=100)

    @ray.remote
    def produce(q):
        for i in range(10):
            q.put(i)

    produce.remote(q)
    print([q.get(timeout=5) for _ in range(10)])

The items live in an actor; a ``Queue`` object is a small handle to it that can be passed to
tasks and actors. Blocking ``put``/``get`` wait inside the actor (one of its threads per
waiting call), in slices of a few seconds so that a queue with more waiters than threads still
makes progress.
"""

import collections
import queue as _std_queue
import threading
import time
from collections.abc import Iterable

from .. import _api

__all__ = ["Queue", "Empty", "Full"]

# How long one blocking call waits inside the actor before the caller asks again.
_WAIT_SLICE_S = 2.0
# Threads of the queue actor: how many blocking calls can wait in it at the same time.
_DEFAULT_CONCURRENCY = 32


class Empty(_std_queue.Empty):
    """``get`` found the queue empty (no item within the timeout). Also a ``queue.Empty``."""


class Full(_std_queue.Full):
    """``put`` found the queue full (no space within the timeout). Also a ``queue.Full``."""


class _QueueActor:
    """Holds the items. Its methods report success as values; the ``Queue`` handle turns a
    failure into ``Empty``/``Full`` in the caller."""

    def __init__(self, maxsize):
        self.maxsize = maxsize
        self.items = collections.deque()
        self.cond = threading.Condition()
        self.running = 0  # calls in progress, not counting those waiting for items or space

    def _full(self):
        return 0 < self.maxsize <= len(self.items)

    def _call(self, fn):
        with self.cond:
            self.running += 1
            try:
                return fn()
            finally:
                self.running -= 1
                self.cond.notify_all()

    def _wait_for(self, predicate, timeout):
        self.running -= 1
        self.cond.notify_all()  # a drain() may be waiting for this
        try:
            return self.cond.wait_for(predicate, timeout)
        finally:
            self.running += 1

    def qsize(self):
        return len(self.items)

    def empty(self):
        return not self.items

    def full(self):
        return self._full()

    def put(self, item, timeout=None):
        def run():
            if not self._wait_for(lambda: not self._full(), timeout):
                return False
            self.items.append(item)
            return True
        return self._call(run)

    def put_nowait(self, item):
        def run():
            if self._full():
                return False
            self.items.append(item)
            return True
        return self._call(run)

    def put_nowait_batch(self, items):
        def run():
            if self.maxsize > 0 and len(items) + len(self.items) > self.maxsize:
                return (f"Cannot add {len(items)} items to queue of size {len(self.items)} "
                        f"and maxsize {self.maxsize}.")
            self.items.extend(items)
            return None
        return self._call(run)

    def get(self, timeout=None):
        def run():
            if not self._wait_for(lambda: bool(self.items), timeout):
                return False, None
            return True, self.items.popleft()
        return self._call(run)

    def get_nowait(self):
        def run():
            if not self.items:
                return False, None
            return True, self.items.popleft()
        return self._call(run)

    def get_nowait_batch(self, num_items):
        def run():
            if num_items > len(self.items):
                return False, f"Cannot get {num_items} items from queue of size {len(self.items)}."
            return True, [self.items.popleft() for _ in range(num_items)]
        return self._call(run)

    def peek(self):
        with self.cond:
            if not self.items:
                return False, None
            return True, self.items[0]

    def clear(self):
        def run():
            self.items.clear()
        return self._call(run)

    def drain(self, timeout):
        """Wait (up to ``timeout`` s) until no other call is working, only waiting ones."""
        with self.cond:
            return self.cond.wait_for(lambda: self.running == 0, timeout)


_QueueActorClass = _api.remote(_QueueActor)


def _check_timeout(timeout):
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A first-in first-out queue held by an actor.

    Args:
        maxsize: the most items the queue holds (``<= 0``: no limit).
        actor_options: options for the queue's actor (as for ``.options()``), e.g.
            ``{"num_cpus": 0, "name": "jobs"}``; ``max_concurrency`` is how many blocking calls
            can wait inside it at once (default 32).
    """

    def __init__(self, maxsize=0, actor_options=None):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"'maxsize' must be an int, got {type(maxsize).__name__}")
        if maxsize < 0:
            raise ValueError(f"'maxsize' must be >= 0 (0: no limit), got {maxsize}")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError(f"'actor_options' must be a dict, got {type(actor_options).__name__}")
        options = dict(actor_options or {})
        options.setdefault("max_concurrency", _DEFAULT_CONCURRENCY)
        self.maxsize = maxsize
        self.actor = _QueueActorClass.options(**options).remote(maxsize)

    def _handle(self):
        if self.actor is None:
            raise RuntimeError("this Queue has been shut down")
        return self.actor

    def __len__(self):
        return self.size()

    def size(self):
        """The number of items in the queue."""
        return _api.get(self._handle().qsize.remote())

    def qsize(self):
        """The number of items in the queue."""
        return self.size()

    def empty(self):
        """Whether the queue is empty."""
        return _api.get(self._handle().empty.remote())

    def full(self):
        """Whether the queue is full."""
        return _api.get(self._handle().full.remote())

    # ------------------------------------------------------------------ put

    def put(self, item, block=True, timeout=None):
        """Add ``item``. With ``block`` (the default) wait for space, at most ``timeout``
        seconds (``None``: no limit), then raise ``Full``; without, raise ``Full`` at once if
        there is no space."""
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _slice(deadline)
            if _api.get(self._handle().put.remote(item, wait)):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise Full

    async def put_async(self, item, block=True, timeout=None):
        """``put`` for asyncio code."""
        if not block:
            if not await self._handle().put_nowait.remote(item):
                raise Full
            return
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if await self._handle().put.remote(item, _slice(deadline)):
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise Full

    def put_nowait(self, item):
        """Add ``item`` if there is space, else raise ``Full``."""
        if not _api.get(self._handle().put_nowait.remote(item)):
            raise Full

    def put_nowait_batch(self, items):
        """Add all ``items`` at once, or none of them (``Full``) if they do not fit."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        error = _api.get(self._handle().put_nowait_batch.remote(list(items)))
        if error is not None:
            raise Full(error)

    # ------------------------------------------------------------------ get

    def get(self, block=True, timeout=None):
        """Remove and return the oldest item. With ``block`` (the default) wait for one, at
        most ``timeout`` seconds (``None``: no limit), then raise ``Empty``; without, raise
        ``Empty`` at once if the queue is empty."""
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ok, item = _api.get(self._handle().get.remote(_slice(deadline)))
            if ok:
                return item
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    async def get_async(self, block=True, timeout=None):
        """``get`` for asyncio code."""
        if not block:
            ok, item = await self._handle().get_nowait.remote()
            if not ok:
                raise Empty
            return item
        _check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ok, item = await self._handle().get.remote(_slice(deadline))
            if ok:
                return item
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    def get_nowait(self):
        """Remove and return the oldest item, or raise ``Empty``."""
        ok, item = _api.get(self._handle().get_nowait.remote())
        if not ok:
            raise Empty
        return item

    def get_nowait_batch(self, num_items):
        """Remove and return the ``num_items`` oldest items, or raise ``Empty`` (taking none)
        if there are fewer."""
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError("Argument 'num_items' must be an int")
        if num_items < 0:
            raise ValueError("'num_items' must be nonnegative")
        ok, value = _api.get(self._handle().get_nowait_batch.remote(num_items))
        if not ok:
            raise Empty(value)
        return value

    def peek(self):
        """The oldest item, left in the queue; ``Empty`` if there is none."""
        ok, item = _api.get(self._handle().peek.remote())
        if not ok:
            raise Empty
        return item

    async def peek_async(self):
        """``peek`` for asyncio code."""
        ok, item = await self._handle().peek.remote()
        if not ok:
            raise Empty
        return item

    def clear(self):
        """Remove every item."""
        _api.get(self._handle().clear.remote())

    # ------------------------------------------------------------------ end

    def shutdown(self, force=False, grace_period_s=5):
        """Terminate the queue's actor; its items are lost and calls through any copy of this
        Queue fail afterwards (``ActorDiedError``). Without ``force``, calls that are working
        (not waiting for items or space) get up to ``grace_period_s`` seconds to finish."""
        actor, self.actor = self.actor, None
        if actor is None:
            return
        if not force:
            try:
                _api.wait([actor.drain.remote(grace_period_s)], timeout=grace_period_s)
            except Exception:  # the actor is gone already
                pass
        try:
            _api.kill(actor, no_restart=True)
        except Exception:
            pass

    def __reduce__(self):
        # The class too, so that a subclass (with methods of its own) stays one in tasks and
        # actors; its other attributes travel as well.
        state = {k: v for k, v in self.__dict__.items() if k not in ("maxsize", "actor")}
        return (_rebuild, (type(self), self.maxsize, self.actor, state))


def _rebuild(cls, maxsize, actor, state=None):
    q = cls.__new__(cls)
    q.__dict__.update(state or {})
    q.maxsize = maxsize
    q.actor = actor
    return q


def _slice(deadline):
    """How long the next call waits inside the actor."""
    if deadline is None:
        return _WAIT_SLICE_S
    return max(0.0, min(_WAIT_SLICE_S, deadline - time.monotonic()))

