"""``Pool``: a drop-in for ``multiprocessing.Pool`` that runs on mpiray actors (Ray's
``ray.util.multiprocessing``).

    from mpiray.util.multiprocessing import Pool

    with Pool() as pool:                       # one actor per CPU of the cluster
        print(pool.map(f, range(100)))

Each process slot of the pool is an actor (created at once, running ``initializer(*initargs)``
first) and a driver thread that feeds it one chunk of work at a time: a slot takes the next
chunk when its actor is done with the previous one, so work is balanced over the actors and
``imap``/``imap_unordered`` read their input only as fast as the actors consume it.
Exceptions raised by the function reach the caller with the remote traceback as their
``__cause__`` (as with ``multiprocessing``).
"""

import builtins
import collections
import itertools
import multiprocessing as _mp
import os
import pickle
import sys
import threading
import time
import traceback
import types
from multiprocessing.pool import RemoteTraceback

import cloudpickle

from .. import _api
from ..exceptions import RayActorError, RaySystemError, TaskCancelledError

from multiprocessing import JoinableQueue  # noqa: E402,F401  (Ray exports it here too)

__all__ = ["Pool", "AsyncResult", "IMapIterator", "TimeoutError", "JoinableQueue"]


class TimeoutError(_mp.TimeoutError, builtins.TimeoutError):  # noqa: A001
    """A result did not come in time: both ``multiprocessing.TimeoutError`` (as raised by
    ``multiprocessing.Pool``) and the builtin ``TimeoutError``."""


# How a chunk's items are passed to the function.
_MAP, _STAR, _APPLY = 0, 1, 2
_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"


# ------------------------------------------------------------------ the actor


def _portable_error(exc):
    """(exception, formatted traceback) that can travel back to the driver."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        cloudpickle.dumps(exc)
    except Exception:
        exc = RuntimeError(f"{type(exc).__name__}: {exc} (the exception could not be pickled)")
    return exc, tb


def _rebind(func, namespace):
    """A copy of ``func`` that reads and writes its globals in ``namespace``."""
    new = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__,
                             func.__closure__)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__qualname__ = func.__qualname__
    new.__module__ = func.__module__
    new.__doc__ = func.__doc__
    new.__dict__.update(func.__dict__)
    return new


class _PoolActor:
    """One process slot: runs the initializer once, then chunks of work.

    Functions come cloudpickled, so that those of the driver's ``__main__`` work (they travel
    by value). cloudpickle gives each unpickled batch of such functions a private copy of
    their globals, so an initializer's ``global model; model = ...`` would be invisible to
    the mapped function; the actor gives all of them one namespace instead, its own, like the
    ``__main__`` module of a ``multiprocessing`` worker process."""

    def __init__(self, init_blob):
        self._main = {}   # the namespace of the driver's __main__ functions in this actor
        self._funcs = {}  # ObjectRef hex -> function, for the jobs seen last
        initializer, initargs = pickle.loads(init_blob)
        if initializer is not None:
            self._share_main(initializer)(*initargs)

    def _share_main(self, func):
        scope = getattr(func, "__globals__", None)
        if (not isinstance(func, types.FunctionType) or scope is self._main
                or scope.get("__name__") != "__main__" or scope is vars(sys.modules["__main__"])):
            return func  # not a by-value function of the driver's __main__
        for name, value in scope.items():
            if name not in self._main:  # names the actor has (set by the initializer) win
                shared = isinstance(value, types.FunctionType) and value.__globals__ is scope
                self._main[name] = _rebind(value, self._main) if shared else value
        return _rebind(func, self._main)

    def _function(self, func_ref):
        key = func_ref.hex()
        func = self._funcs.get(key)
        if func is None:
            if len(self._funcs) >= 16:
                self._funcs.clear()
            func = self._funcs[key] = self._share_main(pickle.loads(_api.get(func_ref)))
        return func

    def ping(self):
        return None

    def run_batch(self, func_ref, mode, items):
        """[(True, value) or (False, (exception, traceback))] for each item, in order."""
        func = self._function(func_ref[0])
        out = []
        for item in items:
            try:
                if mode == _MAP:
                    value = func(item)
                elif mode == _STAR:
                    value = func(*item)
                else:
                    args, kwds = item
                    value = func(*args, **kwds)
                out.append((True, value))
            except Exception as e:  # reported per item, like multiprocessing
                out.append((False, _portable_error(e)))
        return out


_PoolActorClass = _api.remote(_PoolActor)


def _with_remote_traceback(error):
    exc, tb = error
    exc.__cause__ = RemoteTraceback(f'\n"""\n{tb}"""')
    return exc


# ------------------------------------------------------------------ jobs and results


class _Chunk:
    __slots__ = ("job", "start", "items")

    def __init__(self, job, start, items):
        self.job = job
        self.start = start
        self.items = items


def _iterable_for_imap(iterable):
    """Ray's imap/imap_unordered take a single non-iterable argument as a one-item input,
    with a DeprecationWarning (Ray 2.3 and later)."""
    if hasattr(iterable, "__iter__"):
        return iterable
    import warnings
    warnings.warn("Passing a non-iterable argument to the ray.util.multiprocessing.Pool imap "
                  "and imap_unordered methods is deprecated as of Ray 2.3 and will be removed "
                  "in a future release. See https://github.com/ray-project/ray/issues/24237 "
                  "for more information.", DeprecationWarning, stacklevel=3)
    return [iterable]


class _Job:
    """Work submitted to the pool: the input (read chunk by chunk) and where results go."""

    def __init__(self, pool, func, mode, iterable, chunksize, total=None):
        self._pool = pool
        self._func_ref = _api.put(cloudpickle.dumps(func))
        self._mode = mode
        self._input = iter(iterable)
        self._chunksize = chunksize
        self._taken = 0              # items handed to actors so far
        self._input_done = False
        self._inflight = {}          # chunk start -> chunk handed out, result not in yet
        self._lock = threading.Condition()
        self._results = {}           # index -> (ok, value or exception)
        self._count = 0              # results in so far
        self._total = total          # known once the input is exhausted
        self._finished = False

    # -- input (called by the pool with its lock held)

    def _throttled(self):
        return False

    def _next_chunk(self, throttle):
        """The next chunk of input (None when it is used up, or held back by ``throttle``)."""
        with self._lock:
            if self._input_done or (throttle and self._throttled()):
                return None
            try:
                items = list(itertools.islice(self._input, self._chunksize))
            except Exception as e:  # the input iterator raised: that position fails
                self._input_done = True
                self._store(self._taken, False, e)
                self._taken += 1
                self._total = self._taken
                items = None
            else:
                if len(items) < self._chunksize:
                    self._input_done = True
                    self._total = self._taken + len(items)
                if items:
                    chunk = _Chunk(self, self._taken, items)
                    self._inflight[chunk.start] = chunk
                    self._taken += len(items)
                    return chunk
        return None  # the pool completes the job (outside its own lock)

    # -- results (called by slot threads)

    def _deliver(self, chunk, out):
        self._chunk_done(chunk, [(ok, v if ok else _with_remote_traceback(v)) for ok, v in out])

    def _fail(self, chunk, exc):
        self._chunk_done(chunk, [(False, exc)] * len(chunk.items))

    def _chunk_done(self, chunk, results):
        with self._lock:
            if self._inflight.pop(chunk.start, None) is None:
                return  # failed already (the pool was terminated)
            for k, (ok, value) in enumerate(results):
                self._store(chunk.start + k, ok, value)
        self._complete_if_done()

    def _abort(self, exc):
        """The pool was terminated: every result not in yet fails with ``exc``."""
        with self._lock:
            if self._total is None:
                self._total = self._taken
            missing = [i for c in self._inflight.values()
                       for i in range(c.start, c.start + len(c.items))]
            missing += range(self._taken, self._total)
            self._inflight.clear()
            self._taken = self._total
            self._input_done = True
            for i in missing:
                self._store(i, False, exc)
        self._complete_if_done()

    def _store(self, index, ok, value):
        # With self._lock held.
        self._results[index] = (ok, value)
        self._count += 1
        self._on_result(index)
        self._lock.notify_all()

    def _complete_if_done(self):
        with self._lock:
            if self._finished or self._total is None or self._count < self._total:
                return
            self._finished = True
            self._lock.notify_all()
        self._pool._forget(self)
        self._on_complete()

    def _on_result(self, index):
        pass

    def _on_complete(self):
        pass


class AsyncResult(_Job):
    """The result of ``apply_async``, ``map_async`` and ``starmap_async``."""

    def __init__(self, pool, func, mode, items, chunksize, callback, error_callback, single):
        super().__init__(pool, func, mode, items, chunksize, total=len(items))
        self._callback = callback
        self._error_callback = error_callback
        self._single = single
        self._event = threading.Event()

    def _on_complete(self):
        error = self._error()
        try:
            if error is None and self._callback is not None:
                self._callback(self._value())
            elif error is not None and self._error_callback is not None:
                self._error_callback(error)
        except Exception:
            traceback.print_exc()
        finally:
            self._event.set()

    def _error(self):
        for i in range(self._total):
            ok, value = self._results[i]
            if not ok:
                return value
        return None

    def _value(self):
        values = [self._results[i][1] for i in range(self._total)]
        return values[0] if self._single else values

    def ready(self):
        """Whether the call has finished."""
        return self._event.is_set()

    def successful(self):
        """Whether the call finished without raising (``ValueError`` if not finished)."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error() is None

    def wait(self, timeout=None):
        """Wait until the call has finished, at most ``timeout`` seconds."""
        self._event.wait(timeout)

    def get(self, timeout=None):
        """The result; raises the call's exception, or ``multiprocessing.TimeoutError`` if it
        is not finished within ``timeout`` seconds."""
        if not self._event.wait(timeout):
            raise TimeoutError
        error = self._error()
        if error is not None:
            raise error
        return self._value()


ApplyResult = AsyncResult
MapResult = AsyncResult


class IMapIterator(_Job):
    """The iterator ``imap`` and ``imap_unordered`` return; ``next(timeout)`` raises
    ``multiprocessing.TimeoutError`` when no result comes in time. As in Ray (unlike
    ``multiprocessing``), an item whose call raised comes back as the exception object, and
    the iteration goes on."""

    def __init__(self, pool, func, mode, iterable, chunksize, ordered):
        super().__init__(pool, func, mode, iterable, chunksize)
        self._ordered = ordered
        self._yielded = 0
        # Items handed out but not yet returned by next(): at most this many (as in Ray, the
        # input is read as the results are), unless the pool is closed.
        self._window = 2 * pool._processes * chunksize
        self._arrived = collections.deque()  # unordered: indices in the order they finished

    def _throttled(self):
        return self._taken - self._yielded >= self._window

    def _on_result(self, index):
        if not self._ordered:
            self._arrived.append(index)

    def __iter__(self):
        return self

    def next(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self._ordered and self._yielded in self._results:
                    index = self._yielded
                    break
                if not self._ordered and self._arrived:
                    index = self._arrived.popleft()
                    break
                if self._total is not None and self._yielded >= self._total:
                    raise StopIteration
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                self._lock.wait(left)
            ok, value = self._results.pop(index)
            self._yielded += 1
            wake = not self._input_done and self._taken - self._yielded == self._window - 1
        if wake:
            self._pool._wake()  # room for more of this iterator's input
        return value  # a failed item: its exception, as a value (Ray's imap)

    __next__ = next


# ------------------------------------------------------------------ the pool


class _Slot:
    __slots__ = ("actor", "tasks", "thread")

    def __init__(self):
        self.actor = None
        self.tasks = 0
        self.thread = None


class Pool:
    """A pool of actors with the API of ``multiprocessing.Pool``.

    Args:
        processes: how many actors (default: the cluster's CPU count).
        initializer, initargs: ``initializer(*initargs)`` runs once in each actor when it
            starts (also in actors that replace others after ``maxtasksperchild``).
        maxtasksperchild: replace an actor after it has run this many chunks.
        context: ignored (as in Ray).
        ray_address: passed to ``mpiray.init()`` when mpiray is not started yet.
        ray_remote_args: options for the actors (``.options()``), e.g. ``{"num_cpus": 1}`` to
            hold a CPU per actor; by default an actor holds none, as in Ray.
    """

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, ray_address=None, ray_remote_args=None):
        del context
        if processes is not None and (not isinstance(processes, int) or processes < 1):
            raise ValueError("Processes in the pool must be >0.")
        if not _api.is_initialized():
            # As Ray: a local cluster with one CPU per process (all cores if not given);
            # ray_address (or RAY_ADDRESS) "local" does the same.
            _api.init(address=ray_address, num_cpus=processes)
        try:
            cpus = int(_api.cluster_resources().get("CPU", 1))
        except (RaySystemError, ValueError):
            # No cluster information (a runtime without a head link): the node's cores, and
            # no check against the cluster's CPUs.
            cpus = None
        if processes is None:
            processes = max(1, cpus if cpus is not None else (os.cpu_count() or 1))
        elif cpus is not None and cpus < processes:
            raise ValueError(f"Tried to start a pool with {processes} processes on an existing "
                             f"ray cluster, but there are only {cpus} CPUs in the ray cluster.")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int)
                                             or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._processes = processes
        self._init_blob = cloudpickle.dumps((initializer, tuple(initargs or ())))
        self._maxtasks = maxtasksperchild
        self._actor_class = _PoolActorClass.options(**(ray_remote_args or {}))
        self._cond = threading.Condition()
        self._state = _RUN
        self._jobs = collections.deque()  # jobs with input not yet handed out, oldest first
        self._pending = set()             # jobs not finished (failed on terminate)
        self._slots = [_Slot() for _ in range(processes)]
        for slot in self._slots:
            slot.actor = self._new_actor()
        # As Ray: the pool is ready (every initializer has run) when the constructor returns;
        # an initializer that raises fails the constructor.
        try:
            _api.get([slot.actor.ping.remote() for slot in self._slots])
        except BaseException:
            for slot in self._slots:
                try:
                    _api.kill(slot.actor)
                except Exception:
                    pass
            raise
        for i, slot in enumerate(self._slots):
            slot.thread = threading.Thread(target=self._serve, args=(slot,), daemon=True,
                                           name=f"mpiray-pool-slot-{i}")
            slot.thread.start()

    def __repr__(self):
        return (f"<mpiray.util.multiprocessing.Pool state={self._state} "
                f"pool_size={self._processes}>")

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc):
        self.terminate()

    # ------------------------------------------------------------------ slots

    def _new_actor(self):
        return self._actor_class.remote(self._init_blob)

    def _take(self):
        """The next chunk of work, waiting for one; None when the slot should stop."""
        while True:
            chunk, stop, used_up = None, False, []
            with self._cond:
                while True:
                    if self._state == _TERMINATE:
                        stop = True
                        break
                    i = 0
                    while i < len(self._jobs) and chunk is None:
                        job = self._jobs[i]
                        chunk = job._next_chunk(throttle=self._state == _RUN)
                        if chunk is None and job._input_done:
                            used_up.append(job)  # its input is used up
                            del self._jobs[i]
                        elif chunk is None:
                            i += 1  # an imap held back until its results are read
                    if chunk is not None or used_up:
                        break
                    if self._state == _CLOSE:
                        stop = True
                        break
                    self._cond.wait()
            for job in used_up:  # outside the lock: completing may run callbacks
                job._complete_if_done()
            if chunk is not None or stop:
                return chunk

    def _slot_actor(self, slot):
        with self._cond:
            if self._state == _TERMINATE:
                return None
            if slot.actor is None:
                slot.actor = self._new_actor()
                slot.tasks = 0
            return slot.actor

    def _drop_actor(self, slot, kill):
        with self._cond:
            actor, slot.actor = slot.actor, None
        if actor is not None and kill:
            try:
                _api.kill(actor)
            except Exception:  # already dead, or the session is over
                pass

    def _serve(self, slot):
        try:
            while True:
                chunk = self._take()
                if chunk is None:
                    return
                job = chunk.job
                actor = self._slot_actor(slot)
                if actor is None:
                    job._fail(chunk, _cancelled())
                    return
                try:
                    out = _api.get(actor.run_batch.remote((job._func_ref,), job._mode, chunk.items))
                except Exception as e:
                    if self._state == _TERMINATE:
                        job._fail(chunk, _cancelled())
                        return
                    job._fail(chunk, e)
                    if isinstance(e, RayActorError):
                        self._drop_actor(slot, kill=False)  # a new actor takes the next chunk
                    continue
                job._deliver(chunk, out)
                slot.tasks += 1
                if self._maxtasks is not None and slot.tasks >= self._maxtasks:
                    self._drop_actor(slot, kill=True)
        finally:
            self._drop_actor(slot, kill=True)

    # ------------------------------------------------------------------ submitting

    def _wake(self):
        with self._cond:
            self._cond.notify_all()

    def _forget(self, job):
        with self._cond:
            self._pending.discard(job)

    def _check_running(self):
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _submit(self, job):
        with self._cond:
            self._check_running()
            self._pending.add(job)
            self._jobs.append(job)
            self._cond.notify_all()
        return job

    def _async(self, func, mode, iterable, chunksize, callback, error_callback):
        self._check_running()
        items = list(iterable)
        if chunksize is None:
            chunksize, extra = divmod(len(items), self._processes * 4)
            chunksize += 1 if extra else 0
        _check_chunksize(chunksize if items else max(1, chunksize))
        job = AsyncResult(self, func, mode, items, chunksize, callback, error_callback,
                          single=False)
        if not items:
            job._complete_if_done()
            return job
        return self._submit(job)

    def __reduce__(self):
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def apply(self, func, args=(), kwds={}):  # noqa: B006 (multiprocessing's signature)
        """``func(*args, **kwds)`` in an actor; waits for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):  # noqa: B006
        """``func(*args, **kwds)`` in an actor; returns an AsyncResult. ``callback(result)``
        or ``error_callback(exception)`` is called (in a pool thread) when it finishes."""
        self._check_running()
        item = (tuple(args or ()), dict(kwds or {}))
        job = AsyncResult(self, func, _APPLY, [item], 1, callback, error_callback, single=True)
        return self._submit(job)

    def map(self, func, iterable, chunksize=None):
        """``[func(x) for x in iterable]``, computed in chunks by the actors."""
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """``map`` returning an AsyncResult (a list once ready)."""
        return self._async(func, _MAP, iterable, chunksize, callback, error_callback)

    def starmap(self, func, iterable, chunksize=None):
        """``[func(*args) for args in iterable]``."""
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        """``starmap`` returning an AsyncResult."""
        return self._async(func, _STAR, iterable, chunksize, callback, error_callback)

    def imap(self, func, iterable, chunksize=1):
        """An iterator over ``func(x)`` in input order. The input is read lazily: at most
        2 x processes chunks are handed out ahead of the results read from the iterator (all
        of it after ``close()``)."""
        self._check_running()
        _check_chunksize(chunksize)
        iterable = _iterable_for_imap(iterable)
        return self._submit(IMapIterator(self, func, _MAP, iterable, chunksize, ordered=True))

    def imap_unordered(self, func, iterable, chunksize=1):
        """Like ``imap``, in the order results finish."""
        self._check_running()
        _check_chunksize(chunksize)
        iterable = _iterable_for_imap(iterable)
        return self._submit(IMapIterator(self, func, _MAP, iterable, chunksize, ordered=False))

    # ------------------------------------------------------------------ ending

    def close(self):
        """Accept no more work; the actors exit once the submitted work is done (``imap``
        input included, read to its end whether or not its results are read)."""
        with self._cond:
            if self._state == _RUN:
                self._state = _CLOSE
            self._cond.notify_all()

    def terminate(self):
        """Stop at once: kill the actors; results not finished raise TaskCancelledError."""
        with self._cond:
            if self._state == _TERMINATE:
                return
            self._state = _TERMINATE
            self._jobs.clear()
            jobs = list(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        for slot in self._slots:
            self._drop_actor(slot, kill=True)
        for job in jobs:
            job._abort(_cancelled())
        self.join()

    def join(self):
        """Wait for the slot threads to end (after ``close`` or ``terminate``)."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        for slot in self._slots:
            if slot.thread is not None and slot.thread is not threading.current_thread():
                slot.thread.join()


def _check_chunksize(chunksize):
    if not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")


def _cancelled():
    return TaskCancelledError("the Pool was terminated before this task finished")
