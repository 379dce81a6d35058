"""What a worker runs for Python tasks and actors (called by the runtime with the GIL held)."""

import asyncio
import inspect
import os
import pickle
import sys
import threading
import traceback
import types
import weakref

import cloudpickle

from . import _core
from . import _runtime_env, _task_info
from ._runtime_env import Scope as _Scope
from .actor import ActorExit, _actor_loop_thread

_loaded = {}  # exported function/class id -> object
_names = threading.local()  # what the calling thread runs, for its output lines
_actor_names = {}


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
    obj = _loaded.get(exported_id)
    if obj is None:
        blob = _core.get([ref], None)[0]
        obj = pickle.loads(blob)
        _loaded[exported_id] = obj
    return obj


current_info = _task_info.current  # see _task_info.py
_actor_info = {}  # id(actor instance) -> what _api put in its creation task's metadata


def _extra(args):
    meta = args[0]
    return meta[6] if len(meta) > 6 else None


def _unpack(args):
    """Positional and keyword arguments from the task's argument list (see _api._call_args)."""
    meta = args[0]
    kwnames, num_returns, retry, name, export = meta[:5]
    renv = meta[5] if len(meta) > 5 else None  # the runtime_env (_runtime_env.TaskEnv)
    values = args[1:]
    npos = len(values) - len(kwnames)
    return values[:npos], dict(zip(kwnames, values[npos:])), num_returns, retry, name, export, renv


def _split(result, num_returns, name):
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
        return _split(_resolve(fn(*pos, **kw)), num_returns, name)
    except Exception as e:
        # An application error its options retry (retry_exceptions): the head runs the task
        # again while its max_retries allow (one budget with worker deaths), see format_error.
        if retry is True or (isinstance(retry, tuple) and isinstance(e, retry)):
            _retryable.exc = e
        raise


def run_task(function_id, args):
    pos, kw, num_returns, retry, name, export, renv = _unpack(args)
    _runtime_env.task_started()
    _names.current = name
    current_info.set((name, _extra(args)))  # made into a dict only when asked (_task_info.get)
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
    info = _extra(args) or {}
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
_actor_loops_lock = threading.Lock()


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
        with _actor_loops_lock:
            _actor_loops.pop(key, None)
        loop.call_soon_threadsafe(loop.stop)

    weakref.finalize(instance, stop)
    return loop


async def _guarded(coro):
    # exit_actor() raises a SystemExit, which asyncio would let out of the loop (ending it):
    # bring it back to the calling thread as a value instead.
    try:
        return True, await coro
    except ActorExit as e:
        return False, e


def _is_async_actor(cls):
    flag = _async_classes.get(cls)
    if flag is None:
        flag = _async_classes[cls] = any(
            inspect.iscoroutinefunction(getattr(cls, n, None)) or inspect.isasyncgenfunction(getattr(cls, n, None))
            for n in dir(cls) if not n.startswith("__"))
    return flag


_async_classes = weakref.WeakKeyDictionary()


async def _on_loop(info, m, pos, kw):
    # In the loop's thread, in this call's own asyncio context.
    current_info.set(info)
    result = m(*pos, **kw)
    if inspect.iscoroutine(result):
        result = await result
    return result


def _call(instance, method_name, pos, kw, num_returns):
    m = getattr(instance, method_name)
    info = _method_info(instance, method_name)
    current_info.set(info)
    try:
        if _is_async_actor(type(instance)):
            # As in Ray, every method of an async actor (plain ones too) runs in the actor's
            # event-loop thread: one thread, the same each time.
            loop = _actor_loop(instance, _names.current)
            info = _method_info(instance, method_name, _core.context())
            ok, result = asyncio.run_coroutine_threadsafe(
                _guarded(_on_loop(info, m, pos, kw)), loop).result()
            if not ok:
                raise result
            return _split(result, num_returns, method_name)
        result = m(*pos, **kw)
        if inspect.iscoroutine(result):
            loop = _actor_loop(instance, _names.current)
            ok, result = asyncio.run_coroutine_threadsafe(_guarded(result), loop).result()
            if not ok:
                raise result
        return _split(result, num_returns, method_name)
    except ActorExit as e:
        _exit_actor(e, _names.current, method_name)
        raise


def call_method(instance, method_name, args):
    if _exited:  # some actor of this process called exit_actor(): is it this one?
        message = _exited.get(_core.context()["actor_id"])
        if message is not None:
            raise ActorExit(message)
    pos, kw, num_returns, _, _, _, _ = _unpack(args)
    if type(instance) is _EnvActor:
        _names.current = instance.name
        try:
            with _Scope(instance.env):
                return _call(instance.instance, method_name, pos, kw, num_returns)
        finally:
            # The actor's next calls are unpickled on this thread: their arguments may need
            # the actor's packages too.
            _runtime_env.expect_arguments_of(instance.env)
    _runtime_env.task_started()
    _names.current = _actor_names.get(id(instance), type(instance).__name__)
    return _call(instance, method_name, pos, kw, num_returns)


# Actors of this process that called exit_actor() -> the message their calls fail with.
_exited = {}
# The actor is killed this long after exit_actor(), so that the head records the result of
# the exiting call (which names exit_actor()) before the kill fails the actor's other calls.
_EXIT_KILL_DELAY_S = 0.1


def _exit_actor(exc, actor_name, method_name):
    """exit_actor() was called: later calls that reach this process fail at once; the runtime
    kills the actor for good (no restart, the name and resources released)."""
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
