"""What a worker runs for Python tasks and actors (called by the runtime with the GIL held)."""

import asyncio
import inspect
import os
import pickle
import sys
import threading
import traceback

import cloudpickle

from . import _core
from . import _runtime_env
from ._runtime_env import Scope as _Scope

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


def _unpack(args):
    """Positional and keyword arguments from the task's argument list (see _api._call_args)."""
    meta = args[0]
    kwnames, num_returns, retry, max_retries, name, export = meta[:6]
    renv = meta[6] if len(meta) > 6 else None  # the runtime_env (_runtime_env.TaskEnv)
    values = args[1:]
    npos = len(values) - len(kwnames)
    return (values[:npos], dict(zip(kwnames, values[npos:])), num_returns, retry, max_retries,
            name, export, renv)


def _split(result, num_returns, name):
    if num_returns == 1:
        return [result]
    if not isinstance(result, (tuple, list)) or len(result) != num_returns:
        got = len(result) if isinstance(result, (tuple, list)) else 1
        raise ValueError(f"Task {name} returned {got} objects, but num_returns={num_returns}.")
    return list(result)


def _resolve(result):
    if inspect.iscoroutine(result):
        return asyncio.run(result)
    return result


def _run(function_id, export, pos, kw, num_returns, retry, max_retries, name, cache_key):
    fn = _load(cache_key, export)
    attempt = 0
    while True:
        try:
            return _split(_resolve(fn(*pos, **kw)), num_returns, name)
        except Exception as e:  # application errors: retried when asked to (retry_exceptions)
            retryable = retry is True or (isinstance(retry, tuple) and isinstance(e, retry))
            if not retryable or attempt >= max_retries:
                raise
            attempt += 1


def run_task(function_id, args):
    pos, kw, num_returns, retry, max_retries, name, export, renv = _unpack(args)
    _runtime_env.task_started()
    _names.current = name
    if renv is None:
        return _run(function_id, export, pos, kw, num_returns, retry, max_retries, name, function_id)
    # The function is loaded inside its environment (it may import from its packages), once
    # per set of packages.
    with _Scope(renv):
        return _run(function_id, export, pos, kw, num_returns, retry, max_retries, name,
                    (function_id, renv.key))


class _EnvActor:
    """An actor instance with a runtime_env: the environment is applied around its
    constructor and each of its methods."""

    __slots__ = ("instance", "env", "name")

    def __init__(self, instance, env, name):
        self.instance, self.env, self.name = instance, env, name


def create_actor(class_id, args):
    pos, kw, _, _, _, name, export, renv = _unpack(args)
    _runtime_env.task_started()
    _names.current = name
    if renv is None:
        cls = _load(class_id, export)
        instance = cls(*pos, **kw)
        _actor_names[id(instance)] = name
        return instance
    try:
        with _Scope(renv):
            cls = _load((class_id, renv.key), export)
            return _EnvActor(cls(*pos, **kw), renv, name)
    finally:
        _runtime_env.expect_arguments_of(renv)


def call_method(instance, method_name, args):
    pos, kw, num_returns, _, _, _, _, _ = _unpack(args)
    if type(instance) is _EnvActor:
        _names.current = instance.name
        try:
            with _Scope(instance.env):
                m = getattr(instance.instance, method_name)
                return _split(_resolve(m(*pos, **kw)), num_returns, method_name)
        finally:
            # The actor's next calls are unpickled on this thread: their arguments may need
            # the actor's packages too.
            _runtime_env.expect_arguments_of(instance.env)
    _runtime_env.task_started()
    _names.current = _actor_names.get(id(instance), type(instance).__name__)
    m = getattr(instance, method_name)
    return _split(_resolve(m(*pos, **kw)), num_returns, method_name)


_PACKAGE_DIR = __file__.rsplit("/", 1)[0] + "/"


def format_error(exc):
    """(message with the remote traceback, the pickled exception, status code). Frames of
    mpiray itself are left out, so the traceback shows the user's code only."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    try:
        detail = cloudpickle.dumps(exc)
    except Exception:
        detail = b""
    return text, detail, 7


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
