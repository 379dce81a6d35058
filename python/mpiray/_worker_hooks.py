"""What a worker runs for Python tasks and actors (called by the runtime with the GIL held)."""

import asyncio
import inspect
import pickle
import sys
import traceback

import cloudpickle

from . import _core

_loaded = {}  # exported function/class id -> object


def _load(exported_id):
    obj = _loaded.get(exported_id)
    if obj is None:
        blob = _core.get([_core._ref_from_hex(exported_id)], None)[0]
        obj = pickle.loads(blob)
        _loaded[exported_id] = obj
    return obj


def _unpack(args):
    """Positional and keyword arguments from the task's argument list (see _api._call_args)."""
    kwnames, num_returns, retry, max_retries, name = args[0]
    values = args[1:]
    npos = len(values) - len(kwnames)
    return values[:npos], dict(zip(kwnames, values[npos:])), num_returns, retry, max_retries, name


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


def run_task(function_id, args):
    fn = _load(function_id)
    pos, kw, num_returns, retry, max_retries, name = _unpack(args)
    attempt = 0
    while True:
        try:
            return _split(_resolve(fn(*pos, **kw)), num_returns, name)
        except Exception as e:  # application errors: retried when asked to (retry_exceptions)
            retryable = retry is True or (isinstance(retry, tuple) and isinstance(e, retry))
            if not retryable or attempt >= max_retries:
                raise
            attempt += 1


def create_actor(class_id, args):
    cls = _load(class_id)
    pos, kw, _, _, _, _ = _unpack(args)
    return cls(*pos, **kw)


def call_method(instance, method_name, args):
    pos, kw, num_returns, _, _, _ = _unpack(args)
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
