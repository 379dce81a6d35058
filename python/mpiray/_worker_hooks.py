"""What a worker runs for Python tasks and actors (called by the runtime with the GIL held)."""

import asyncio
import collections
import inspect
import os
import pickle
import sys
import threading
import traceback
import types
import weakref

import cloudpickle

from . import _api, _core
from . import _runtime_env, _task_info
from . import _source
from ._runtime_env import Scope as _Scope
from .actor import ActorExit, _actor_loop_thread

_loaded = {}  # exported function/class id -> object
_names = threading.local()  # what the calling thread runs, for its output lines
_actor_names = {}
_actor_pgs = {}  # actor id -> (PlacementGroup, capture) of the actors placed in a group


class _TaggedStream:
    """sys.stdout/sys.stderr of a worker: each complete line is written to the file descriptor
    in one write, tagged with the name of the task or actor of the writing thread, so lines
    reach the driver as "(name pid=..., rank=...) text" with the right name even when tasks
    and actors of one process print at the same time."""

    def __init__(self, stream):
        self._stream = stream
        self._fd = stream.fileno()
        self._local = threading.local()

    def write(self, text):
        buf = getattr(self._local, "buf", "") + text
        lines = buf.split("\n")
        self._local.buf = lines.pop()
        if lines:
            name = getattr(_names, "current", "") or ""
            out = "".join(f"\x01{name}\x02{line}\n" for line in lines)
            os.write(self._fd, out.encode("utf-8", "replace"))
        return len(text)

    def flush(self):
        rest = getattr(self._local, "buf", "")
        if rest:
            self._local.buf = ""
            self.write(rest + "\n")

    def fileno(self):
        return self._fd

    def isatty(self):
        return False

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _install_streams():
    if not isinstance(sys.stdout, _TaggedStream):
        sys.stdout = _TaggedStream(sys.__stdout__)
        sys.stderr = _TaggedStream(sys.__stderr__)


_install_streams()
_runtime_env.install_finder()


def _load(exported_id, ref):
    """The exported function or class (cached per id); `ref`: its export's ObjectRef, or a
    task's id bytes of it (see _api._Exported.key)."""
    obj = _loaded.get(exported_id)
    if obj is None:
        if isinstance(ref, bytes):
            ref = _core._rebuild_ref(ref)
        blob = _core.get([ref], None)[0]
        obj = _source.unpack(pickle.loads(blob))
        _loaded[exported_id] = obj
    return obj


current_info = _task_info.current  # see _task_info.py
_actor_info = {}  # id(actor instance) -> what _api put in its creation task's metadata


def _extra(args):
    """The runtime-context information of the task or actor (meta[7], see _api._call_args)."""
    meta = args[0]
    return meta[7] if len(meta) > 7 else None


def _unpack(args):
    """Positional and keyword arguments from the task's argument list (see _api._call_args)."""
    meta = args[0]
    kwnames, num_returns, retry, name, export = meta[:5]
    renv = meta[5] if len(meta) > 5 else None  # the runtime_env (_runtime_env.TaskEnv)
    values = args[1:]
    if not kwnames:
        return values, {}, num_returns, retry, name, export, renv
    npos = len(values) - len(kwnames)
    return values[:npos], dict(zip(kwnames, values[npos:])), num_returns, retry, name, export, renv


class _StoredError:
    """A return slot that holds the task's error: reading it (get, or a task taking it as
    an argument) raises the error (exceptions._raise_stored_error)."""

    def __init__(self, exc, name):
        text, detail, _, _ = format_error(exc)
        self.message = f"task {name} failed on pid {os.getpid()}: {text}"
        self.detail = detail

    def __reduce__(self):
        from .exceptions import _raise_stored_error
        return _raise_stored_error, (self.message, self.detail)


def _retried(exc, retry):
    """Whether the task's retry_exceptions cover `exc` (then the whole task runs again)."""
    return retry is True or (isinstance(retry, tuple) and isinstance(exc, retry))


def _yielded(result, name, limit=None, retry=False):
    """The values a generator yields (at most `limit`, the rest is dropped with a warning as
    Ray does), and the exception it raised after them (None when it finished). An exception
    its retry_exceptions cover is raised instead: the task runs again as a whole."""
    values = []
    try:
        if inspect.isasyncgen(result):
            async def drain():
                async for v in result:
                    values.append(v)
                    if limit is not None and len(values) > limit:
                        return
            _run_coroutine(drain())
        else:
            for v in result:
                values.append(v)
                if limit is not None and len(values) > limit:
                    break
    except Exception as e:
        if _retried(e, retry):
            raise
        return values, e
    if limit is not None and len(values) > limit:
        del values[limit:]
        print(f"mpiray: task {name} yielded more than num_returns={limit} values; the ones "
              "after them are dropped", file=sys.stderr)
    return values, None


def _collect(result, name, retry=False):
    """num_returns="dynamic": every value the generator yields goes into the object store;
    the task's one return is a DynamicObjectRefGenerator of their refs. A generator that
    raises after some values: their refs, then one ref holding the error (as Ray)."""
    from ._api import DynamicObjectRefGenerator
    if not (inspect.isasyncgen(result) or inspect.isgenerator(result) or hasattr(result, "__next__")):
        raise TypeError(f"Task {name} with num_returns='dynamic' must be a generator function "
                        f"(use yield), but it returned {type(result).__name__}")
    values, error = _yielded(result, name, retry=retry)
    if error is not None:
        values.append(_StoredError(error, name))
    # Each item a return of this task after its declared one: rebuilt by running it again when
    # lost, as Ray's dynamic returns.
    return [DynamicObjectRefGenerator([_core.put_item(v) for v in values])]


def _split(result, num_returns, name, retry=False):
    if num_returns == "dynamic":
        return _collect(result, name, retry)
    if inspect.isgenerator(result):
        # A generator with a fixed num_returns (1 too): its values are the returns (as Ray). Fewer
        # values: a ValueError; more: the first num_returns (Ray logs the rest away); an
        # exception after k values: the k values, then the error in each remaining return.
        values, error = _yielded(result, name, num_returns, retry)
        if error is not None:
            return values + [_StoredError(error, name)] * (num_returns - len(values))
        if len(values) < num_returns:
            raise ValueError(f"Task {name} returned {len(values)} objects, but "
                             f"num_returns={num_returns} (its generator yielded fewer).")
        return values
    if num_returns == 1:
        return [result]
    if not isinstance(result, (tuple, list)) or len(result) != num_returns:
        got = len(result) if isinstance(result, (tuple, list)) else 1
        raise ValueError(f"Task {name} returned {got} objects, but num_returns={num_returns}.")
    return list(result)


_loops = threading.local()


@types.coroutine
def _resume(coro, pending):
    """Go on with a coroutine that already ran up to its first suspension (`pending`, what it
    yielded), under the event loop's Task: each yielded future goes up to the Task, each
    result or exception comes back down."""
    while True:
        try:
            value = yield pending
        except BaseException as e:  # thrown in by the Task (cancellation, a failed future)
            try:
                pending = coro.throw(e)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            pending = coro.send(value)
        except StopIteration as stop:
            return stop.value


async def _finish(coro, pending):
    return await _resume(coro, pending)


def _run_coroutine(coro):
    """Run a coroutine to completion on this thread's own event loop (kept between calls:
    creating a loop per call, as asyncio.run does, costs more than a small call itself).
    A coroutine that never suspends (most small async methods) finishes in its first step,
    without going through the loop at all."""
    loop = getattr(_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _loops.loop = loop
    asyncio.events._set_running_loop(loop)  # what it creates in its first step is the loop's
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return stop.value
    except BaseException:
        coro.close()
        raise
    finally:
        asyncio.events._set_running_loop(None)
    return loop.run_until_complete(_finish(coro, pending))


def _resolve(result):
    if inspect.iscoroutine(result):
        return _run_coroutine(result)
    return result


def _stream(result):
    """A streaming task: each yielded value becomes an item at once; returns the count."""
    count = 0
    if inspect.isasyncgen(result):
        async def drain():
            n = 0
            async for value in result:
                _core.stream_emit(value)
                n += 1
            return n
        return _run_coroutine(drain())
    if not inspect.isgenerator(result) and not hasattr(result, "__next__"):
        raise TypeError("a task with num_returns='streaming' must be a generator function "
                        f"(use yield), but it returned {type(result).__name__}")
    for value in result:
        _core.stream_emit(value)
        count += 1
    return count


def _run(function_id, export, pos, kw, num_returns, retry, name, cache_key):
    fn = _load(cache_key, export)
    if num_returns == "streaming":  # yielded items cannot be taken back: no retry here
        return [_stream(fn(*pos, **kw))]
    try:
        return _split(_resolve(fn(*pos, **kw)), num_returns, name, retry)
    except Exception as e:
        # An application error its options retry (retry_exceptions): the head runs the task
        # again while its max_retries allow (one budget with worker deaths), see format_error.
        if retry is True or (isinstance(retry, tuple) and isinstance(e, retry)):
            _retryable.exc = e
        raise


def _set_placement(args):
    """The calling task's placement group (meta[6], see _api._placement) while it runs."""
    meta = args[0]
    _api._task_pg.value = meta[6] if len(meta) > 6 else None


_running = {}  # task id (as the runtime prints it) -> ident of the thread running it


def interrupt(task_id):
    """ray.cancel of a running task: KeyboardInterrupt in its thread (as Ray). Called with the
    GIL held; the thread is inside run_task while the id is listed, so the exception is raised
    there (at its next bytecode), never in a later task."""
    ident = _running.get(task_id)
    if ident is None:
        # Cancelled while starting (after the runtime's own check, before run_task listed
        # it): run_task raises at its start.
        _cancel_pending.add(task_id)
    else:
        import ctypes
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                                   ctypes.py_object(KeyboardInterrupt))
        # A task blocked in ray.get/wait runs no bytecode: end its waits too (they raise
        # TaskCancelledError), until the task is over (run_task clears it).
        _interrupted.add(ident)
        _core.interrupt_waits(ident, True)


_cancel_pending = set()
_interrupted = set()  # idents of threads whose waits interrupt() ended


def run_task(function_id, args):
    task_id = _core.current_task_id()
    _running[task_id] = threading.get_ident()
    try:
        if _cancel_pending and task_id in _cancel_pending:
            _cancel_pending.discard(task_id)
            raise KeyboardInterrupt("the task was cancelled")
        return _run_task(function_id, args)
    except SystemExit as e:
        _leave_process(e)
        raise
    finally:
        _running.pop(task_id, None)
        if _interrupted:
            ident = threading.get_ident()
            if ident in _interrupted:
                _interrupted.discard(ident)
                _core.interrupt_waits(ident, False)


# OMP_NUM_THREADS as Ray sets it: unless the worker's environment already had one, each task
# or actor gets the number of CPUs it holds (at least 1), so OpenMP/BLAS libraries inside it
# start that many threads instead of one per core of the machine.
_USER_OMP = os.environ.get("OMP_NUM_THREADS")


_omp_set = None  # the value this process last set (setting os.environ calls putenv)
_omp_values = {}  # a task's resources (as its metadata has them) -> the value


def _set_omp_threads(resources):
    global _omp_set
    if _USER_OMP is not None:
        return
    value = _omp_values.get(resources) if type(resources) is tuple else None
    if value is None:
        cpus = 1.0
        if resources:
            items = resources.items() if isinstance(resources, dict) else resources
            cpus = dict(items).get("CPU", 1.0)
        value = str(max(1, int(cpus)))
        if type(resources) is tuple and len(_omp_values) < 1000:
            _omp_values[resources] = value
    if value != _omp_set:  # (as in Ray, a task that changes it changes it for later ones)
        os.environ["OMP_NUM_THREADS"] = _omp_set = value


def _run_task(function_id, args):
    pos, kw, num_returns, retry, name, export, renv = _unpack(args)
    _runtime_env.task_started()
    _names.current = name
    _set_placement(args)
    extra = _extra(args)
    _set_omp_threads(extra[1] if extra else None)
    current_info.set((name, extra))  # made into a dict only when asked (_task_info.get)
    if renv is None:
        return _run(function_id, export, pos, kw, num_returns, retry, name, function_id)
    # The function is loaded inside its environment (it may import from its packages), once
    # per set of packages.
    with _Scope(renv):
        return _run(function_id, export, pos, kw, num_returns, retry, name, (function_id, renv.key))


class _EnvActor:
    """An actor instance with a runtime_env: the environment is applied around its
    constructor and each of its methods."""

    __slots__ = ("instance", "env", "name")

    def __init__(self, instance, env, name):
        self.instance, self.env, self.name = instance, env, name


def create_actor(class_id, args):
    pos, kw, _, _, name, export, renv = _unpack(args)
    _runtime_env.task_started()
    _names.current = name
    _set_placement(args)
    if _api._task_pg.value is not None:
        _actor_pgs[_core.context()["actor_id"]] = _api._task_pg.value
    info = _extra(args) or {}
    _set_omp_threads(info.get("resources"))
    current_info.set((info, "__init__", None))
    if renv is None:
        cls = _load(class_id, export)
        instance = cls(*pos, **kw)
        _actor_names[id(instance)] = name
        _actor_info[id(instance)] = info
        if _weakrefable(instance):
            weakref.finalize(instance, _actor_info.pop, id(instance), None)
        return instance
    try:
        with _Scope(renv):
            cls = _load((class_id, renv.key), export)
            env_actor = _EnvActor(cls(*pos, **kw), renv, name)
            _actor_info[id(env_actor.instance)] = info
            return env_actor
    finally:
        _runtime_env.expect_arguments_of(renv)


def _weakrefable(obj):
    try:
        weakref.ref(obj)
        return True
    except TypeError:
        return False


def _method_info(instance, method_name, native_ctx=None):
    """What get_runtime_context() tells an actor call (made into a dict by _task_info.get
    only when asked)."""
    base = _actor_info.get(id(instance))
    if base is None:
        base = {"class": type(instance).__name__, "module": type(instance).__module__}
    return (base, method_name, native_ctx)


# Async actors (a class with `async def` methods): every call's coroutine runs on the actor's
# own event loop, in a thread of its own, so that calls interleave at their awaits (up to the
# actor's max_concurrency, 1000 by default: each call waits in one of the actor's threads).
_actor_loops = {}  # id(instance) -> event loop
# Reentrant: creating a loop under the lock can run the garbage collector, whose finalizer of
# a dead actor's instance (stop() below) takes the lock again on the same thread.
_actor_loops_lock = threading.RLock()


def _actor_loop(instance, name):
    key = id(instance)
    with _actor_loops_lock:
        loop = _actor_loops.get(key)
        if loop is not None:
            return loop
        loop = asyncio.new_event_loop()

        def run():
            _names.current = name
            _actor_loop_thread.active = True
            asyncio.set_event_loop(loop)
            loop.run_forever()

        threading.Thread(target=run, name=f"mpiray-actor-loop-{name}", daemon=True).start()
        _actor_loops[key] = loop

    def stop(key=key, loop=loop):
        # No lock here: the collector may run this finalizer inside the very thread that
        # _actor_loop is starting (under the lock, in Thread.start()) and deadlock. A dict pop
        # is atomic; only the loop of this dead instance is removed.
        if _actor_loops.get(key) is loop:
            _actor_loops.pop(key, None)
        loop.call_soon_threadsafe(_stop_loop, loop, _loop_fds.pop(key, None))

    weakref.finalize(instance, stop)
    return loop


# id(instance) -> the eventfd through which its calls reach its loop (attach_calls)
_loop_fds = {}


def _stop_loop(loop, fd):
    if fd is not None:  # (the runtime closes it once the reader is gone)
        loop.remove_reader(fd)
    loop.stop()


async def _guarded(coro):
    # exit_actor() raises a SystemExit, which asyncio would let out of the loop (ending it):
    # bring it back to the calling thread as a value instead.
    try:
        return True, await coro
    except ActorExit as e:
        return False, e
    except SystemExit as e:
        _leave_process(e)
        raise


# This process was started for one actor (MPIRAY_ACTOR_PROCESSES=dedicated): sys.exit() in
# its methods ends the process (as in Ray: the actor restarts or dies, its calls are retried
# per max_task_retries), and each call sets the process title ("ray::Class.method").
_ACTOR_PROCESS = os.environ.get("MPIRAY_ACTOR_PROCESS") == "1"
# In such a session (Ray's process model) sys.exit() in a task ends a local worker of the
# driver too, as in Ray (WorkerCrashedError, retried as a crash; the worker is replaced).
_EXIT_ENDS_PROCESS = _ACTOR_PROCESS or (
    os.environ.get("MPIRAY_ACTOR_PROCESSES") == "dedicated" and "MPIRAY_WORKER_INDEX" in os.environ)
_set_title = None
if _ACTOR_PROCESS:
    try:
        from setproctitle import setproctitle as _set_title
    except ImportError:  # (optional: the title is then the interpreter's command line)
        pass


def _leave_process(exc):
    """sys.exit() in a method of an actor with a process of its own, or in a task of a local
    worker in such a session: the process ends."""
    if not _EXIT_ENDS_PROCESS or isinstance(exc, ActorExit):
        return
    flush_output()
    code = exc.code
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _title(instance, method_name, args):
    if _set_title is not None:
        meta = args[0]
        name = meta[3] if len(meta) > 3 and isinstance(meta[3], str) and meta[3] != method_name \
            else f"{type(instance).__name__}.{method_name}"
        _set_title(f"ray::{name}")


def actor_process_ending(graceful):
    """This process of one actor's own ends with its actor: its atexit handlers run unless the
    actor was killed (kill()), as when Ray's actor process exits."""
    if graceful or _exited:
        import atexit
        atexit._run_exitfuncs()
    flush_output()


def _builtin_method(instance, method_name):
    """Ray's methods of every actor: __ray_ready__ (True once constructed), __ray_call__(fn,
    *args) (runs fn(instance, *args) in the actor), __ray_terminate__ (ends it, as
    exit_actor() after the calls queued before it)."""
    if method_name == "__ray_ready__":
        return lambda: True
    if method_name == "__ray_call__":
        return lambda fn, *a, **k: fn(instance, *a, **k)

    def terminate():
        raise ActorExit("the actor was terminated by __ray_terminate__")
    return terminate


def _is_async_actor(cls):
    flag = _async_classes.get(cls)
    if flag is None:
        flag = _async_classes[cls] = any(
            inspect.iscoroutinefunction(getattr(cls, n, None)) or inspect.isasyncgenfunction(getattr(cls, n, None))
            for n in dir(cls) if not n.startswith("__"))
    return flag


_async_classes = weakref.WeakKeyDictionary()


async def _on_loop(info, placement, m, pos, kw):
    # In the loop's thread, in this call's own asyncio context.
    current_info.set(info)
    _api._task_pg.value = placement  # the actor's group (the same for all its calls)
    result = m(*pos, **kw)
    if type(result) is types.CoroutineType or inspect.iscoroutine(result):
        result = await result
    elif inspect.isasyncgen(result):  # an async generator method: its items, made on the loop
        values, error = [], None
        try:
            async for v in result:
                values.append(v)
        except Exception as e:  # its values so far, then the error (as a task's, _yielded)
            error = e
        result = _replay(values, error)
    return result


def _replay(values, error):
    yield from values
    if error is not None:
        raise error


def _call(instance, method_name, pos, kw, num_returns, retry=False, budget=0):
    if method_name.startswith("__ray_"):
        m = _builtin_method(instance, method_name)
    else:
        m = getattr(instance, method_name)
    current_info.set(_method_info(instance, method_name))
    while True:
        try:
            # A generator method's error is retried as a whole while the budget lasts;
            # the last try gives its values, then the error.
            return _call_once(instance, m, method_name, pos, kw, num_returns,
                              retry if budget != 0 else False)
        except Exception as e:
            # retry_exceptions of an actor method: again on this instance while the method's
            # (or else the actor's) max_task_retries allow; -1: without limit.
            if not retry or budget == 0 or (isinstance(retry, tuple) and not isinstance(e, retry)):
                raise
            if budget > 0:
                budget -= 1
            _core.call_retried(_core.current_task_id())


def _call_once(instance, m, method_name, pos, kw, num_returns, retry=False):
    try:
        if _is_async_actor(type(instance)):
            # As in Ray, every method of an async actor (plain ones too) runs in the actor's
            # event-loop thread: one thread, the same each time.
            loop = _actor_loop(instance, _names.current)
            info = _method_info(instance, method_name, _core.context())
            placement = getattr(_api._task_pg, "value", None)
            ok, result = asyncio.run_coroutine_threadsafe(
                _guarded(_on_loop(info, placement, m, pos, kw)), loop).result()
            if not ok:
                raise result
            return _split(result, num_returns, method_name, retry)
        result = m(*pos, **kw)
        if inspect.iscoroutine(result):
            loop = _actor_loop(instance, _names.current)
            ok, result = asyncio.run_coroutine_threadsafe(_guarded(result), loop).result()
            if not ok:
                raise result
        return _split(result, num_returns, method_name, retry)
    except ActorExit as e:
        _exit_actor(e, _names.current, method_name)
        raise
    except SystemExit as e:
        _leave_process(e)
        raise


def _method_call(args, actor_id=None, native=None):
    """An actor call's (pos, kw, num_returns, retry_exceptions, retry budget); raises ActorExit
    when the actor (`actor_id`, by default the calling thread's) already called exit_actor().
    `native`: the call's runtime context (by default the calling thread's)."""
    if _exited:  # some actor of this process called exit_actor(): is it this one?
        message = _exited.get(actor_id or _core.context()["actor_id"])
        if message is not None:
            raise ActorExit(message)
    pos, kw, num_returns, retry, _, _, _ = _unpack(args)
    meta = args[0]
    budget = meta[8] if retry and len(meta) > 8 else 0  # see _api._call_args
    if retry:
        # One budget with the call's re-sends after crashes: a re-sent call brings what is left
        # (each retry here is told to the head, _core.call_retried).
        left = (native or _core.context())["max_retries"]
        if left != _core.ACTOR_DEFAULT_RETRIES and (budget < 0 or 0 <= left < budget):
            budget = left
    return pos, kw, num_returns, retry, budget


def call_method(instance, method_name, args):
    pos, kw, num_returns, retry, budget = _method_call(args)
    if _ACTOR_PROCESS:
        _title(instance, method_name, args)
    _api._task_pg.value = _actor_pgs.get(_core.context()["actor_id"]) if _actor_pgs else None
    if type(instance) is _EnvActor:
        _names.current = instance.name
        try:
            with _Scope(instance.env):
                return _call(instance.instance, method_name, pos, kw, num_returns, retry, budget)
        finally:
            # The actor's next calls are unpickled on this thread: their arguments may need
            # the actor's packages too.
            _runtime_env.expect_arguments_of(instance.env)
    _runtime_env.task_started()
    _names.current = _actor_names.get(id(instance), type(instance).__name__)
    return _call(instance, method_name, pos, kw, num_returns, retry, budget)


def defers_calls(instance):
    """Whether the runtime hands this actor's calls to its loop (attach_calls) instead of waiting in
    call_method for each (async actors, not those with a runtime_env of their own)."""
    return type(instance) is not _EnvActor and _is_async_actor(type(instance))


def attach_calls(instance, fd, take):
    """The runtime hands this async actor's calls to its event loop: when eventfd `fd` fires,
    ``take()`` gives the calls that arrived, each (method name, arguments, done, runtime
    context), and each starts on the loop, in arrival order. No other thread takes the GIL to
    hand a call over, and the loop wakes once per burst of calls."""
    key = id(instance)
    loop = _actor_loop(instance, _actor_names.get(key, type(instance).__name__))

    def drain():
        try:
            os.read(fd, 8)
        except BlockingIOError:  # (woken for calls a drain before this one took)
            pass
        for method_name, args, done, native in take():
            try:
                _start_call(instance, loop, method_name, args, done, native)
            except BaseException as e:  # it failed before it was scheduled
                done.fail(e)

    _loop_fds[key] = fd
    loop.call_soon_threadsafe(loop.add_reader, fd, drain)


def _start_call(instance, loop, method_name, args, done, native):
    """A call of an async actor, on its loop's thread: its coroutine becomes a task of the loop
    and ``done.finish(values)`` or ``done.fail(exc)`` ends the call when the task ends."""
    pos, kw, num_returns, retry, budget = _method_call(args, native["actor_id"], native)
    if _ACTOR_PROCESS:
        _title(instance, method_name, args)
    placement = _actor_pgs.get(native["actor_id"]) if _actor_pgs else None
    _runtime_env.task_started()
    m = _builtin_method(instance, method_name) if method_name.startswith("__ray_") \
        else getattr(instance, method_name)
    info = _method_info(instance, method_name, native)

    async def run():
        # The call ends inside its task (no done-callback: one loop iteration less).
        nonlocal budget
        try:
            while True:
                try:
                    ok, result = await _guarded(_on_loop(info, placement, m, pos, kw))
                    if not ok:  # exit_actor() in the method
                        _exit_actor(result, _actor_names.get(id(instance), type(instance).__name__),
                                    method_name, native["actor_id"])
                        done.fail(result)
                        return
                    # (A generator's values here: its retryable error runs the call again.)
                    values = _split(result, num_returns, method_name, retry if budget != 0 else False)
                    break
                except Exception as e:
                    # retry_exceptions: again on this instance while the budget lasts (-1: forever)
                    if not retry or budget == 0 or (isinstance(retry, tuple) and not isinstance(e, retry)):
                        raise
                    if budget > 0:
                        budget -= 1
                    _core.call_retried(native["task_id"])
        except BaseException as e:  # the method's error (a cancelled one's too)
            done.fail(e)
            if isinstance(e, asyncio.CancelledError):
                raise  # the task is cancelled, as it was
            return
        done.finish(values)

    loop.create_task(run())


# Actors of this process that called exit_actor() -> the message their calls fail with.
_exited = {}
# The actor is killed this long after exit_actor(), so that the head records the result of
# the exiting call (which names exit_actor()) before the kill fails the actor's other calls.
_EXIT_KILL_DELAY_S = 0.1


def _exit_actor(exc, actor_name, method_name, actor=None):
    """exit_actor() was called: later calls that reach this process fail at once; the runtime
    kills the actor for good (no restart, the name and resources released). `actor`: its id
    (by default the one the calling thread serves; a deferred call ends on the loop's thread)."""
    if actor is None:
        actor = _core.context()["actor_id"]
    exc.message = (f"The actor {actor_name} exited intentionally: exit_actor() was called in "
                   f"its method '{method_name}'.")
    if actor in _exited:
        return
    _exited[actor] = exc.message

    def kill():
        try:
            _core.kill_actor(actor, True)
        except Exception:  # the session is ending
            pass

    timer = threading.Timer(_EXIT_KILL_DELAY_S, kill)
    timer.daemon = True
    timer.start()


_PACKAGE_DIR = __file__.rsplit("/", 1)[0] + "/"


# The exception a task's retry_exceptions matched on this thread, until format_error reports it.
_retryable = threading.local()


def format_error(exc):
    """(message with the remote traceback, the pickled exception, status code, whether the
    head may retry it). Frames of mpiray itself are left out, so the traceback shows the
    user's code only. exit_actor() is reported as the actor's death (ActorDiedError at the
    caller)."""
    retryable = getattr(_retryable, "exc", None) is exc
    _retryable.exc = None
    if isinstance(exc, ActorExit):
        return exc.message, b"", _core.StatusCode.ActorDied, False
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        detail = cloudpickle.dumps(exc)
    except Exception:
        detail = b""
    return text, detail, _core.StatusCode.TaskError, retryable


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
