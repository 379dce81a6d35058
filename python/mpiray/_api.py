"""Ray's core API (init, remote, get, put, wait, ...) over the mpiray runtime."""

import atexit
import concurrent.futures
import functools
import inspect
import logging
import numbers
import os
import pickle
import sys
import threading

import cloudpickle

from . import _core, _runtime_env, _source, _task_info
from ._core import ObjectRef

# Task kinds, languages, strategies and sentinels are the runtime's, exported by the binding
# (_core.TaskKind, _core.Language, ...); read where used, so that `import mpiray` works even
# when the native runtime cannot load (_native.py).

_lock = threading.RLock()
_initialized_here = False
_session = 0  # bumped by every init(): exports of an earlier session are stale

# ------------------------------------------------------------------ init / shutdown

# init() arguments: ours, and Ray's that have no meaning here (accepted, ignored) so that
# ordinary Ray programs run unchanged.
_INIT_ARGS = {
    "address", "num_cpus", "num_gpus", "resources", "object_store_memory", "namespace",
    "logging_level", "log_to_driver", "ignore_reinit_error", "num_workers", "ranks_per_node",
    "runtime_env", "include_dashboard", "dashboard_host", "dashboard_port", "configure_logging",
    "logging_format", "local_mode", "job_config", "_temp_dir", "_system_config",
    "session_root", "keep_session", "autoscale", "keep_mpi", "_memory", "_node_ip_address",
}

_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
           logging.ERROR: "error", logging.CRITICAL: "error"}


def _check_options(given, valid, what):
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"Invalid option keyword(s) {unknown} for {what}. "
                         f"Valid ones are: {sorted(valid)}")
    _check_option_values(given)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


# Option -> (test, what it accepts): checked where the options are given (the decorator,
# .options()), with Ray's messages.
_OPTION_RULES = {
    "num_returns": (lambda v: (_is_int(v) and v >= 0) or v in ("streaming", "dynamic"),
                    "0 or a positive integer, 'streaming' or 'dynamic'"),
    "max_retries": (lambda v: _is_int(v) and v >= -1, "0, -1 or a positive integer"),
    "max_calls": (lambda v: _is_int(v) and v >= 0, "0 or a positive integer"),
    "max_restarts": (lambda v: _is_int(v) and v >= -1, "-1, 0 or a positive integer"),
    "max_task_retries": (lambda v: _is_int(v) and v >= -1, "-1, 0 or a positive integer"),
    "max_concurrency": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "num_cpus": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "num_gpus": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "memory": (lambda v: _is_number(v) and v >= 0, "a non-negative number"),
    "resources": (lambda v: isinstance(v, dict), "a dict of resource names to amounts"),
}


def _check_option_values(options):
    for key, value in list(options.items()):
        rule = _OPTION_RULES.get(key)
        if rule is not None and value is not None and not rule[0](value):
            raise ValueError(f"The keyword '{key}' only accepts {rule[1]}, got {value!r}")
        if _is_int(value) and type(value) is not int:  # numpy integers and the like
            options[key] = int(value)


def init(address=None, **kwargs):
    """Start mpiray (Ray's ``ray.init``).

    Under ``mpirun``/``srun`` rank 0 returns and every other rank becomes a worker that never
    returns from here. Without a launcher the driver starts local worker processes (one per
    CPU, or ``num_cpus``/``num_workers``).
    """
    global _initialized_here
    _check_options(kwargs, _INIT_ARGS - {"address"}, "init()")
    if address not in (None, "local") and kwargs.get("_system_config"):
        # As Ray: the settings of a cluster one connects to are those it started with.
        raise ValueError("When connecting to an existing cluster, _system_config must not be provided.")
    with _lock:
        if _core.is_initialized():
            if kwargs.get("ignore_reinit_error"):
                return _ray_context()
            raise RuntimeError("Maybe you called ray.init twice by accident? This error can be "
                               "suppressed by passing in 'ignore_reinit_error=True'.")
        # The job's runtime_env: checked and zipped before the cluster starts (not on worker
        # ranks, which never submit and may not see the driver's files), shipped after.
        runtime_env = _runtime_env.validate(kwargs.get("runtime_env"), "init()")
        prebuilt = {} if _runtime_env._is_worker_rank() else _runtime_env.prepare_job(runtime_env)
        opts = {}
        level = kwargs.get("logging_level")
        if level is not None:
            opts["log_level"] = _LEVELS.get(level, level) if isinstance(level, int) else str(level).lower()
        for k in ("num_cpus", "num_gpus", "resources", "object_store_memory", "ranks_per_node",
                  "log_to_driver", "session_root", "keep_session", "num_workers", "keep_mpi"):
            if kwargs.get(k) is not None:
                opts[k] = kwargs[k]
        if "object_store_memory" in opts:  # bytes; Ray takes floats such as 700e6 too
            opts["object_store_memory"] = _byte_count(opts["object_store_memory"], "object_store_memory")
        if kwargs.get("namespace") is not None:
            opts["namespace"] = kwargs["namespace"]
        if kwargs.get("_memory") is not None:
            # Ray's `_memory`: the "memory" resource each node offers, in bytes (default: 70%
            # of the host's memory at start-up, split among its virtual nodes).
            res = dict(opts.get("resources") or {})
            if "memory" in res:
                raise ValueError("give the memory resource as _memory=..., not also as resources['memory']")
            res["memory"] = float(_byte_count(kwargs["_memory"], "_memory"))
            opts["resources"] = res
        node_ip = _node_ip_option(kwargs.get("_node_ip_address"))
        autoscale = kwargs.get("autoscale")
        if autoscale:
            # {"max": 3, "nodes": 1, "idle": 60, ...} or "max=3,nodes=1,idle=60"
            if isinstance(autoscale, dict):
                autoscale = ",".join(f"{k}={v}" for k, v in autoscale.items())
            opts["autoscale"] = str(autoscale)
        if "num_workers" not in opts and kwargs.get("num_cpus") is not None:
            opts["num_workers"] = max(1, int(kwargs["num_cpus"]))
        # Local workers run this interpreter with the driver's import path.
        opts["worker_command"] = [sys.executable, "-m", "mpiray._worker"]
        global _node_ip_set
        if node_ip is not None:  # this node's address, for the driver and its local workers
            os.environ[_NODE_IP_ENV] = node_ip
            _node_ip_set = True
        paths = [p for p in sys.path if p] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
        _core.init(opts)  # worker ranks serve inside and never return
        global _session
        _session += 1
        try:
            _runtime_env.set_job(runtime_env, prebuilt)
        except BaseException:
            _core.shutdown()
            _runtime_env.reset()
            raise
        _initialized_here = True
        if kwargs.get("log_to_driver", True):
            _whole_lines.start()
        atexit.register(_shutdown_at_exit)
        return _ray_context()


class _WholeLines:
    """While workers' output is forwarded to the driver's stdout, the driver's own
    sys.stdout/sys.stderr write whole lines: line-buffered instead of write-through (python -u
    or PYTHONUNBUFFERED, usual in batch scripts, makes print() write each piece on its own) or
    block-buffered (a pipe or a file: its 8 KiB blocks end mid-line), so that a forwarded line
    never lands inside one of the driver's. Restored by shutdown()."""

    def __init__(self):
        self._saved = []

    def start(self):
        for stream in (sys.stdout, sys.stderr):
            if stream is None or stream not in (sys.__stdout__, sys.__stderr__):
                continue  # replaced (pytest's capture, Jupyter): left as it is
            if any(s is stream for s, _ in self._saved):
                continue
            try:
                before = (stream.line_buffering, stream.write_through)
                if before != (True, False):
                    stream.reconfigure(line_buffering=True, write_through=False)
                    self._saved.append((stream, before))
            except (AttributeError, ValueError, OSError):
                pass

    def stop(self):
        saved, self._saved = self._saved, []
        for stream, (line_buffering, write_through) in saved:
            try:
                stream.flush()
                stream.reconfigure(line_buffering=line_buffering, write_through=write_through)
            except (AttributeError, ValueError, OSError):
                pass


_whole_lines = _WholeLines()


_NODE_IP_ENV = "MPIRAY_NODE_IP_ADDRESS"
_node_ip_set = False  # init(_node_ip_address=...) set _NODE_IP_ENV: shutdown takes it back


def _node_ip_option(value):
    """Ray's ``init(_node_ip_address=...)``: the address this node reports, checked."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"_node_ip_address must be an IP address string, got {value!r}")
    value = value.strip()
    if value == "localhost":  # as Ray
        return "127.0.0.1"
    import ipaddress
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"_node_ip_address must be an IP address, got {value!r}") from None
    return value


def _byte_count(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of bytes, got {type(value).__name__}")
    if value != value or value in (float("inf"), float("-inf")) or value <= 0:
        raise ValueError(f"{what} must be a positive number of bytes, got {value!r}")
    return int(value)


class RayContext(dict):
    """What ``init()`` returns (Ray's ``RayContext``): the address information as a dict
    (``ctx["address"]``, ``ctx["session_dir"]``, ...), also as attributes (``ctx.address_info``,
    ``ctx.dashboard_url``); a context manager whose exit shuts mpiray down."""

    def __init__(self, info, rank=0):
        super().__init__(info)
        self.address_info = dict(info)
        self.dashboard_url = info.get("webui_url", "")
        self.rank = rank                         # this process's rank (0: the driver)
        self.task_id = self.actor_id = None      # the driver runs no task
        self.python_version = "{}.{}.{}".format(*sys.version_info[:3])
        self.ray_version = _version()
        self.ray_commit = ""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, *args):
        """``get(key[, default])`` as a dict; ``get()``: the whole dict (mpiray's older
        context object had that)."""
        return dict(self) if not args else super().get(*args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()

    def disconnect(self):
        shutdown()


def _version():
    from . import __version__
    return __version__


def _util_node_ip():
    from .util import get_node_ip_address
    return get_node_ip_address()


def _ray_context():
    ctx = _core.context()
    node = format(ctx["node"], "032x")
    info = {
        "address": f"mpiray://{ctx['job_id']}",
        "node_ip_address": _util_node_ip(),
        "raylet_ip_address": _util_node_ip(),
        "session_dir": ctx.get("session_dir", ""),
        "webui_url": "",  # mpiray has no dashboard (see `mpiray status` / ray.util.state)
        "gcs_address": "",
        "node_id": node,
        "job_id": ctx["job_id"],
        "namespace": ctx["namespace"],
    }
    return RayContext(info, ctx.get("rank", 0))


def _auto_init():
    """Ray starts a local cluster at the first use of the API without ``init()``
    (``RAY_ENABLE_AUTO_CONNECT=0`` turns this off)."""
    if _core.is_initialized():
        return
    if os.environ.get("RAY_ENABLE_AUTO_CONNECT", "") == "0":
        raise RuntimeError("mpiray is not initialized: call ray.init() first "
                           "(automatic start is off: RAY_ENABLE_AUTO_CONNECT=0)")
    with _lock:
        if not _core.is_initialized():
            init()


def _termination_signals():
    import signal
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    name = os.environ.get("MPIRAY_CHECKPOINT_SIGNAL", "USR1").strip().upper()
    if name not in ("", "NONE"):
        sig = getattr(signal, "SIG" + name.removeprefix("SIG"), None)
        if sig is None and name.isdigit():
            sig = int(name)
        if sig is not None:
            sigs.add(sig)
    return sigs


def _unblock_signals_in_child():
    # The runtime blocks the termination signals in this process's threads (its watcher
    # thread takes them). A child made by fork() (multiprocessing, a DataLoader's workers)
    # inherits that mask and could then never be terminated: it gets the signals back.
    import signal
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _termination_signals())
    except (OSError, ValueError):
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unblock_signals_in_child)


def _shutdown_at_exit():
    # An uncaught KeyboardInterrupt (Ctrl-C): Python ends by killing itself with SIGINT after
    # this, which no exit handler sees; the job's exit status (MPIRAY_EXIT_STATUS_FILE, what
    # scripts/mpirun returns) is 130 as a shell would report it.
    last = getattr(sys, "last_type", None)
    interrupted = isinstance(last, type) and issubclass(last, KeyboardInterrupt)
    try:
        shutdown()
    except BaseException:  # a second Ctrl-C forces the stop inside; nothing to add here
        pass
    if interrupted:
        try:
            _core.record_exit_status(130)
        except Exception:
            pass


def shutdown():
    """Stop the cluster: workers exit, objects and session files are removed."""
    global _node_ip_set
    with _lock:
        _exports_alive.clear()
        _core.shutdown()
        _runtime_env.reset()
        _whole_lines.stop()
        if _node_ip_set:
            os.environ.pop(_NODE_IP_ENV, None)
            _node_ip_set = False


def is_initialized():
    return _core.is_initialized()


# ------------------------------------------------------------------ objects

def put(value, *, _fill=None):
    """Store ``value`` in the object store and return its ObjectRef.

    ``_fill`` (internal, used by mpiray.data's readers): ``_fill(index, dst, src_address)`` is
    called for each out-of-band buffer of ``value`` (numpy arrays, ...) with ``dst``, a
    writable memoryview of that buffer's place in the object's shared memory; it may write the
    buffer's contents there itself (e.g. a file read straight into the store) and return True,
    or return False to have the buffer copied as usual. It must not keep ``dst``."""
    if isinstance(value, ObjectRef):
        raise TypeError("Calling 'put' on an ray.ObjectRef is not allowed. If you really "
                        "want to do this, you can wrap the ray.ObjectRef in a list and call "
                        "'put' on it.")
    _auto_init()
    if _fill is not None:
        return _core.put(value, _fill)
    return _core.put(value)


def _filled(value, fill):
    """A task's return value stored as ``put(value, _fill=fill)`` stores it: ``fill`` writes
    out-of-band buffers of ``value`` straight into the returned object's shared memory
    (internal, used by mpiray.data). Only a remote function's or actor method's return value
    (one of them when it has several) may be wrapped."""
    return _core.FilledValue(value, fill)


def _check_refs(refs, what):
    for r in refs:
        if not isinstance(r, ObjectRef):
            raise TypeError(f"{what} expects ObjectRefs, got {type(r).__name__}: {r!r:.100}")


def get(object_refs, *, timeout=None):
    """Values of one ObjectRef or a list of them (raises the task's error)."""
    if isinstance(object_refs, ObjectRef):
        return _core.get([object_refs], timeout)[0]
    if isinstance(object_refs, (list, tuple)):
        _check_refs(object_refs, "get()")
        return _core.get(list(object_refs), timeout)
    raise ValueError("'object_refs' must either be an ObjectRef or a list of ObjectRefs, "
                     f"got {type(object_refs).__name__}")


def wait(object_refs, *, num_returns=1, timeout=None, fetch_local=True):
    """Return (ready, not_ready): the first ``num_returns`` refs that are ready (in input
    order) once they are, or whatever is ready when ``timeout`` seconds pass."""
    del fetch_local  # objects are fetched on get
    if isinstance(object_refs, ObjectRef):
        raise TypeError("wait() expected a list of ray.ObjectRef, got a single ray.ObjectRef")
    if not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expected a list of ray.ObjectRef, got {type(object_refs).__name__}")
    if timeout is not None and timeout < 0:
        raise ValueError(f"The 'timeout' argument must be nonnegative. Received {timeout}")
    if not object_refs:
        return [], []
    # In the binding (ray.wait over 1,000 refs, shrinking by one each call, is a benchmark of
    # Ray's): ObjectRefs only, unique, 1 <= num_returns <= len, then the split in input order.
    ready, not_ready = _core.wait_split(object_refs, num_returns, timeout)
    return ready, not_ready


def cancel(object_ref, *, force=False, recursive=True):
    """Cancel the task that produces ``object_ref``."""
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    _core.cancel(object_ref, force, recursive)


def _ref_future(self):
    fut = concurrent.futures.Future()

    def resolve():
        try:
            value = get(self)
        except BaseException as e:  # delivered through the future
            if not fut.done():  # (cancelled: an `await` interrupted by Ctrl-C)
                try:
                    fut.set_exception(e)
                except concurrent.futures.InvalidStateError:
                    pass
            return
        if not fut.done():
            try:
                fut.set_result(value)
            except concurrent.futures.InvalidStateError:
                pass

    threading.Thread(target=resolve, daemon=True).start()
    return fut


def _ref_await(self):
    import asyncio
    return asyncio.wrap_future(self.future()).__await__()


def _ref_as_future(self, _internal=False):
    """An ``asyncio.Future`` of the running (or current) event loop, resolved with the value
    (or the task's exception)."""
    import asyncio
    return asyncio.wrap_future(self.future())


def _ref_on_completed(self, callback):
    """Call ``callback(value)`` (the exception instead, when the task failed) in a
    background thread once the object is ready."""
    def done(fut):
        if fut.cancelled():
            return
        exc = fut.exception()
        callback(exc if exc is not None else fut.result())

    self.future().add_done_callback(done)


ObjectRef.future = _ref_future
ObjectRef.__await__ = _ref_await
ObjectRef.as_future = _ref_as_future
ObjectRef._on_completed = _ref_on_completed


# ------------------------------------------------------------------ options

_TASK_OPTIONS = {"num_cpus", "num_gpus", "resources", "memory", "num_returns", "max_retries",
                 "retry_exceptions", "name", "max_calls", "scheduling_strategy", "runtime_env",
                 "accelerator_type", "_metadata", "placement_group", "placement_group_bundle_index",
                 "placement_group_capture_child_tasks"}
_ACTOR_OPTIONS = {"num_cpus", "num_gpus", "resources", "memory", "name", "namespace", "lifetime",
                  "max_concurrency", "max_restarts", "max_task_retries", "get_if_exists",
                  "scheduling_strategy", "runtime_env", "max_pending_calls", "accelerator_type",
                  "concurrency_groups", "_metadata", "placement_group",
                  "placement_group_bundle_index", "placement_group_capture_child_tasks"}




def _check_retry_count(value, what):
    if not isinstance(value, int) or isinstance(value, bool) or value < _core.RETRY_FOREVER:
        raise ValueError(f"{what} must be an integer >= 0, or -1 for unlimited; got {value!r}")


def _resources(options, default_cpus):
    """The resource request of a task or actor; None means the runtime's default."""
    keys = ("num_cpus", "num_gpus", "resources", "memory")
    if all(options.get(k) is None for k in keys) and default_cpus == 1:
        return None
    res = {}
    cpus = options.get("num_cpus")
    res["CPU"] = float(default_cpus if cpus is None else cpus)
    if options.get("num_gpus") is not None:
        res["GPU"] = float(options["num_gpus"])
    if options.get("memory") is not None:
        res["memory"] = float(options["memory"])
    for k, v in (options.get("resources") or {}).items():
        if k == "bundle":
            raise ValueError("'bundle' is a reserved resource name (placement groups use it, "
                             "as in Ray): ask for the group's resources with "
                             "scheduling_strategy=PlacementGroupSchedulingStrategy(...)")
        if k in ("CPU", "GPU"):
            raise ValueError(f"Use the '{k.lower().replace('cpu', 'num_cpus').replace('gpu', 'num_gpus')}' "
                             f"option instead of resources['{k}']")
        res[k] = float(v)
    for k, v in res.items():
        if v < 0:
            raise ValueError(f"Resource '{k}' must be non-negative, got {v}")
    return {k: v for k, v in res.items() if v != 0 or k == "CPU"}


# While a task or actor placed in a placement group runs, the worker sets `value` on its
# thread to (PlacementGroup, capture_child_tasks) (see _worker_hooks): work it submits without
# a strategy of its own goes into the same group when capture is on (as Ray).
class _TaskPlacement(threading.local):
    value = None  # (a class default: reading it costs no AttributeError in new threads)


_task_pg = _TaskPlacement()


def _no_placement_option(options):
    strategy = options.get("scheduling_strategy")
    pg = options.get("placement_group")
    return (strategy is None or strategy == "DEFAULT") and (pg is None or pg == "default")


def _placement(options):
    """(PlacementGroup, capture_child_tasks) that work submitted with ``options`` will run in,
    or None: its own strategy, or else the calling task's group if that captures its children."""
    strategy = options.get("scheduling_strategy")
    pg = options.get("placement_group")
    if _no_placement_option(options):
        current = getattr(_task_pg, "value", None)
        return current if current is not None and current[1] else None
    if pg is not None and pg != "default":
        return pg, bool(options.get("placement_group_capture_child_tasks"))
    group = getattr(strategy, "placement_group", None)
    if group is None:
        return None
    return group, bool(getattr(strategy, "placement_group_capture_child_tasks", False))


def _warn_placement_group_option():
    """Ray's warning for the older placement_group= option, with its link to the docs of
    this version (master for a development version)."""
    import re
    import warnings
    version = getattr(sys.modules.get(__package__), "__version__", "")
    doc = f"releases-{version}" if re.match(r"^\d+\.\d+\.\d+$", version) else "master"
    warnings.warn(
        "placement_group parameter is deprecated. Use scheduling_strategy="
        "PlacementGroupSchedulingStrategy(...) instead, see the usage at "
        f"https://docs.ray.io/en/{doc}/ray-core/package-ref.html#ray-remote.",
        DeprecationWarning, stacklevel=4)


def _scheduling(options, resources, default_cpus, placement=None):
    """(scheduling options for _core.TaskOptions, resources): from ``scheduling_strategy`` (or
    the older ``placement_group=`` / ``placement_group_bundle_index=`` options, or the group
    ``placement`` captured from the calling task)."""
    strategy = options.get("scheduling_strategy")
    pg = options.get("placement_group")
    if (strategy is None or strategy == "DEFAULT") and (pg is None or pg == "default"):
        if placement is None:
            return {}, resources  # the common case: nothing to import
        from .util.scheduling_strategies import PlacementGroupSchedulingStrategy
        strategy = PlacementGroupSchedulingStrategy(placement[0], -1, True)
    from .util.placement_group import PlacementGroup
    from .util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                             PlacementGroupSchedulingStrategy)
    if pg is not None and pg != "default":
        _warn_placement_group_option()
        strategy = PlacementGroupSchedulingStrategy(pg, options.get("placement_group_bundle_index", -1))
    if strategy == "SPREAD":
        return {"strategy": _core.SchedulingStrategy.SPREAD}, resources
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        if not isinstance(group, PlacementGroup):
            raise TypeError("PlacementGroupSchedulingStrategy needs a PlacementGroup, got "
                            f"{type(group).__name__}")
        index = strategy.placement_group_bundle_index
        if not isinstance(index, int) or index < -1 or index >= group.bundle_count:
            raise ValueError(f"placement_group_bundle_index must be -1 or between 0 and "
                             f"{group.bundle_count - 1}, got {index!r}")
        return {"placement_group": group.id.binary(), "bundle_index": index}, resources
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        try:
            node = int(strategy.node_id, 16)
        except (TypeError, ValueError):
            raise ValueError(f"NodeAffinitySchedulingStrategy needs a node id from ray.nodes() "
                             f"(hex), got {strategy.node_id!r}") from None
        if strategy.soft:
            return {"strategy": _core.SchedulingStrategy.NODE_AFFINITY_SOFT, "node": node}, resources
        res = dict(resources) if resources is not None else {"CPU": float(default_cpus)}
        res[f"node:{node}"] = 0.001
        return {}, res
    raise ValueError(f"Unknown scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD', "
                     "PlacementGroupSchedulingStrategy or NodeAffinitySchedulingStrategy")


def _call_args(args, kwargs, meta):
    """Task arguments: a metadata tuple, the positional values, then the keyword values.
    Top-level ObjectRefs are resolved by the runtime before the call (as in Ray).

    The metadata (read by _worker_hooks; trailing elements may be left out):
    (0) keyword names, (1) num_returns (or "streaming"/"dynamic"), (2) retry_exceptions,
    (3) name for output lines, (4) export ref, (5) runtime_env, (6) placement: the
    (PlacementGroup, capture_child_tasks) the task or actor runs in (_placement), (7) info
    for get_runtime_context(): a task's (function name, resources), an actor's dict (see
    _task_info), (8) an actor method call's retry budget (with retry_exceptions)."""
    return [meta, *args, *kwargs.values()]


# Ray refuses to export a function or class whose pickle is larger than this (it usually
# captured a big array from its scope by accident): a ValueError naming it and the size.
# The default is Ray's (FUNCTION_SIZE_ERROR_THRESHOLD, 10**8 bytes).
_MAX_EXPORT_BYTES = int(os.environ.get("MPIRAY_MAX_EXPORT_BYTES", 10**8))


def _check_export_size(blob, obj):
    if len(blob) > _MAX_EXPORT_BYTES:
        if isinstance(obj, type):  # Ray's words: "The actor Name ...", "The remote function f ..."
            what, name = "actor", obj.__name__
        else:
            what, name = "remote function", getattr(obj, "__qualname__", getattr(obj, "__name__", "?"))
        raise ValueError(
            f"The {what} {name} is too large: its pickle has "
            f"{len(blob) / 2**20:.1f} MiB (the limit is {_MAX_EXPORT_BYTES / 2**20:.1f} MiB, "
            "MPIRAY_MAX_EXPORT_BYTES). Check whether it captures a large array or other object "
            "from its scope; pass such values as arguments or with ray.put() instead.")


class _Pickling(threading.local):
    active = False


# Every export of this session, kept to its end (as Ray's function table): tasks carry only
# the id of their function's export (_Exported.key), not a reference that pickling would
# have to count per task.
_exports_alive = []


class _Exported:
    """A function or class shipped by value through the object store (once per session).
    Tasks carry the id of the export inside their metadata (``key()``); the export stays
    alive until shutdown (_exports_alive), even if the RemoteFunction itself is gone."""

    def __init__(self, obj):
        self._obj = obj
        self._ref = None
        self._key = None
        self._session = -1
        self._lock = threading.Lock()
        self._pickling = _Pickling()

    def key(self):
        """The id bytes of the export (what a task's metadata carries; the worker rebuilds the
        ObjectRef from them only to load the function); None as ref() gives None."""
        with self._lock:
            if self._key is not None and self._session == _session:
                return self._key
        ref = self.ref()
        return None if ref is None else self._key

    def ref(self):
        """The export's ObjectRef (made at the first use in a session); None while this thread
        is pickling this very object (a function whose globals hold itself, or mutually
        recursive ones): that copy exports itself again where it is first used."""
        with self._lock:
            if self._ref is not None and self._session == _session:
                return self._ref
        if getattr(self._pickling, "active", False):
            return None
        # Pickled without the lock held: pickling may export other functions, which may need
        # this one (recursion in `__main__`), and must not wait for this thread.
        self._pickling.active = True
        try:
            blob = cloudpickle.dumps(_source.pack(self._obj))
        finally:
            self._pickling.active = False
        _check_export_size(blob, self._obj)
        ref = _core.put(blob)
        with self._lock:
            if self._ref is None or self._session != _session:
                self._ref, self._session, self._key = ref, _session, ref.binary()
                _exports_alive.append(ref)
            return self._ref

    def __getstate__(self):
        return {"obj": self._obj, "ref": self.ref()}

    def __setstate__(self, state):
        self._obj = state["obj"]
        self._ref = state["ref"]
        self._key = None if self._ref is None else self._ref.binary()
        self._session = _session
        self._lock = threading.Lock()
        self._pickling = _Pickling()


# ------------------------------------------------------------------ remote functions

class _AsyncRefIteration:
    """``async for ref in gen``: each ``__next__`` (which may block) runs in the loop's executor."""

    def __aiter__(self):
        return self

    async def __anext__(self):
        import asyncio
        _end = object()

        def step():  # StopIteration cannot cross a Future
            try:
                return self.__next__()
            except StopIteration:
                return _end

        ref = await asyncio.get_running_loop().run_in_executor(None, step)
        if ref is _end:
            raise StopAsyncIteration
        return ref


class ObjectRefGenerator(_AsyncRefIteration):
    """What a task with ``num_returns="streaming"`` returns: iterate it (``for ref in gen`` or
    ``async for``) to get an ObjectRef per yielded value, as soon as the task yields it; an
    exception in the task is raised by ``ray.get`` of the ref after the last good one."""

    def __init__(self, task, completed_ref):
        self._task = task
        self._completed = completed_ref
        self._next = 1          # item index (from 1)
        self._wanted = False    # this index is registered with the head
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        return self._next_sync(None)

    def _next_sync(self, timeout_s):
        if self._done:
            raise StopIteration
        status, ref = _core.stream_next(self._task, self._next, timeout_s, not self._wanted)
        self._wanted = True
        if status == 0:
            self._done = True
            # A task that failed after its last item: one more ref, whose get raises its error.
            try:
                _core.get([self._completed], None)
            except Exception:
                return self._completed
            raise StopIteration
        self._next += 1
        self._wanted = False
        return ref

    def completed(self):
        """An ObjectRef ready when the task has finished (its value: the number of items)."""
        return self._completed

    def is_finished(self):
        return self._done

    def __del__(self):
        # Items the task made that nobody asked for are given back.
        try:
            if self._done or not _core.is_initialized():
                return
            if _core.wait([self._completed], 1, 0)[0]:
                count = _core.get([self._completed], None)[0]
                start = self._next + (1 if self._wanted else 0)
                if isinstance(count, int) and count + 1 > start:
                    _core.stream_release(self._task, start, count + 1)
        except Exception:
            pass


# ------------------------------------------------------------------ call-time argument checks

def _outline(fn, skip_first=False):
    """A picklable outline of ``fn``'s parameters ((name, kind, has_default), ...) for checking
    the arguments of ``.remote()`` at the call, as Ray does; None: anything goes."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        return None
    if skip_first and params:
        params = params[1:]  # self
    kinds = {p.kind for p in params}
    if inspect.Parameter.VAR_POSITIONAL in kinds and inspect.Parameter.VAR_KEYWORD in kinds:
        return None
    return tuple((p.name, int(p.kind), p.default is not p.empty) for p in params)


_signatures = {}  # outline -> inspect.Signature
_positional = {}  # outline -> (required, most) positional arguments, for calls without keywords


def _positional_range(outline):
    P = inspect.Parameter
    required = most = 0
    for _, kind, has_default in outline:
        if kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
            most += 1
            required += 0 if has_default else 1
        elif kind == P.VAR_POSITIONAL:
            most = float("inf")
        elif kind == P.KEYWORD_ONLY and not has_default:
            return None  # a call without keywords is wrong: let bind() say why
    return required, most


def _check_call(outline, args, kwargs, what):
    """TypeError now (at ``.remote()``) when the arguments do not fit the signature."""
    if outline is None:
        return
    if not kwargs:  # the common case, without building a binding (~0.2 us instead of ~3)
        r = _positional.get(outline, False)
        if r is False:
            r = _positional[outline] = _positional_range(outline)
        if r is not None and r[0] <= len(args) <= r[1]:
            return
    sig = _signatures.get(outline)
    if sig is None:
        sig = _signatures[outline] = inspect.Signature([
            inspect.Parameter(n, inspect._ParameterKind(k),
                              default=None if d else inspect.Parameter.empty)
            for n, k, d in outline])
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{what}: {e}") from None


def _num_returns_ok(num_returns, extra=()):
    return num_returns in extra or (isinstance(num_returns, int) and not isinstance(num_returns, bool)
                                    and num_returns >= 0)


class DynamicObjectRefGenerator:
    """The value of the one ref a ``num_returns="dynamic"`` task returns (as Ray): iterate it
    for an ObjectRef per yielded value; ``len()`` counts them."""

    def __init__(self, refs):
        self._refs = list(refs)

    def __iter__(self):
        return iter(list(self._refs))

    def __len__(self):
        return len(self._refs)

    def __repr__(self):
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"


class _CollectedRefGenerator(_AsyncRefIteration):
    """What a generator method of an actor returns by default (Ray: a streaming
    ObjectRefGenerator): the method runs to its end on the actor, then this yields an ObjectRef
    per value it yielded (actor methods do not stream their items one by one here). An error
    in the method is raised by ``ray.get`` of the last ref yielded."""

    def __init__(self, ref):
        self._ref = ref
        self._items = None
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._items is None:
            try:
                self._items = list(get(self._ref))
            except Exception:
                if self._done:
                    raise StopIteration
                self._done = True
                return self._ref  # its get raises the method's error
        if not self._items:
            raise StopIteration
        return self._items.pop(0)

    def completed(self):
        return self._ref


def _is_generator_function(fn):
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


class RemoteFunction:
    """A function decorated with ``@remote``; call it with ``.remote(...)``."""

    def __init__(self, function, options):
        _check_options(options, _TASK_OPTIONS, "a remote function")
        self._function = function
        self._options = _runtime_env.validated_options(dict(options), "@remote")
        self._exported = _Exported(function)
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "task"))
        self._native = None  # _core.TaskOptions of self._options, made at the first call
        self._info = None    # (function name, resources) for the task's runtime context
        self._outline = _outline(function)
        self._is_generator = _is_generator_function(function)
        functools.update_wrapper(self, function)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_native"] = None  # made again where it is used
        state["_info"] = None
        return state

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Remote functions cannot be called directly. Instead of running "
                        f"'{self._name}()', try '{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options, self)

    def options(self, **options):
        _check_options(options, _TASK_OPTIONS, "options()")
        merged = {**self._options, **_runtime_env.validated_options(options, "options()")}
        parent = self

        class _WithOptions:
            _native = None
            _info = None

            def remote(self, *args, **kwargs):
                return parent._submit(args, kwargs, merged, self)

        return _WithOptions()

    def _remote(self, args=None, kwargs=None, **options):
        """Ray's ``f._remote(args=[...], kwargs={...}, num_returns=..., ...)``."""
        if not options:
            return self._submit(tuple(args or ()), dict(kwargs or {}), self._options, self)
        return self.options(**options).remote(*(args or ()), **(kwargs or {}))

    def bind(self, *args, **kwargs):
        raise NotImplementedError("Ray DAGs (.bind) are not supported by mpiray")

    def _submit(self, args, kwargs, options, holder):
        _check_call(self._outline, args, kwargs, f"{self._name}.remote()")
        _auto_init()
        num_returns = options.get("num_returns")
        if num_returns is None:  # as Ray: a generator function streams its items
            num_returns = "streaming" if self._is_generator else 1
        streaming = num_returns == "streaming"
        dynamic = num_returns == "dynamic"
        if dynamic:
            num_returns = 1
        if not streaming and not _num_returns_ok(num_returns):
            raise ValueError(f"num_returns must be a non-negative integer, 'streaming', "
                             f"'dynamic' or None, got {num_returns!r}")
        retry = options.get("retry_exceptions", False)
        if isinstance(retry, (list, tuple)):
            retry = tuple(retry)
        name = options.get("name") or self._name
        export = self._exported.ref()
        if streaming:
            num_returns = 1
            retry = False
        renv = _runtime_env.for_submission(options.get("runtime_env"))
        placement = _placement(options)
        native = holder._native
        captured = placement is not None and _no_placement_option(options)
        if native is None or captured:  # once per remote function and options
            scheduling, resources = _scheduling(options, _resources(options, 1), 1,
                                                placement if captured else None)
            native = _core.TaskOptions(
                num_returns=max(num_returns, 1), resources=resources,
                max_retries=options.get("max_retries", 3), name=name, **scheduling)
            if not captured:
                holder._native = native
            # What get_runtime_context() tells the task: its function and resources.
            holder._info = (f"{getattr(self._function, '__module__', '')}."
                            f"{getattr(self._function, '__name__', name)}",
                            tuple(sorted((resources or {"CPU": 1.0}).items())))
        # The export's id, not its ObjectRef: pickling a ref costs more than the rest of the
        # metadata together, and the export lives to the session's end anyway (_exports_alive).
        # (An actor's creation keeps its ref: a restart may come after its creator has gone.)
        meta = (tuple(kwargs), "streaming" if streaming else "dynamic" if dynamic else max(num_returns, 1),
                retry, name, self._exported.key(), renv, placement, holder._info)
        refs = _core.submit(_core.TaskKind.NORMAL, _core.Language.PYTHON, export.hex(),
                            _call_args(args, kwargs, meta), native)
        if streaming:
            return ObjectRefGenerator(refs[0].binary()[:8], refs[0])
        if num_returns == 0:
            return None
        return refs[0] if num_returns == 1 else refs


class CppFunction:
    """A C++ function registered with MPIRAY_REMOTE, called from Python."""

    def __init__(self, name, library=None, options=None):
        library = os.path.abspath(library) if library else ""
        if _core.is_initialized() or library:
            if not _core.cpp_function_exists(library, name):
                where = f" in {library}" if library else " in this process"
                raise ValueError(f"C++ function '{name}' is not registered with MPIRAY_REMOTE{where}")
        self._name = name
        self._function = f"lib:{library}:{name}" if library else name
        self._options = dict(options or {})

    def options(self, **options):
        _check_options(options, _TASK_OPTIONS, "options()")
        if options.get("runtime_env") is not None:
            raise ValueError("runtime_env is not supported for C++ functions (it applies to "
                             "Python tasks and actors only)")
        return CppFunction.__new__(CppFunction)._init_copy(self, {**self._options, **options})

    def _init_copy(self, other, options):
        self._name, self._function, self._options = other._name, other._function, options
        return self

    def remote(self, *args):
        scheduling, resources = _scheduling(self._options, _resources(self._options, 1), 1)
        native = _core.TaskOptions(resources=resources, max_retries=self._options.get("max_retries", 3),
                                   name=self._options.get("name") or self._name, **scheduling)
        refs = _core.submit(_core.TaskKind.NORMAL, _core.Language.CPP, self._function, list(args), native)
        return refs[0]


def cpp_function(name, library=None):
    """A handle to C++ function ``name`` (registered with MPIRAY_REMOTE, in ``library`` or
    linked into the workers); ``.remote(args)`` runs it as a task. Arguments and results are
    converted between Python and msgpack (None, bool, int, float, str, bytes, list, dict,
    numpy arrays as lists)."""
    return CppFunction(name, library)


# ------------------------------------------------------------------ actors

_METHOD_OPTIONS = {"num_returns", "concurrency_group", "max_task_retries", "retry_exceptions",
                   "_generator_backpressure_num_objects", "enable_task_events"}


def method(*args, **kwargs):
    """``@ray.method(num_returns=2, max_task_retries=3, retry_exceptions=True)`` on an actor
    method: defaults for its calls (each can be changed with ``.options()`` at the call)."""
    _check_options(kwargs, _METHOD_OPTIONS, "method()")
    if args and not (len(args) == 1 and callable(args[0]) and not kwargs):
        raise ValueError("The @ray.method decorator must be applied using at least one of the "
                         "arguments in the list ['num_returns', 'max_task_retries', "
                         "'retry_exceptions', 'concurrency_group'], for example "
                         "'@ray.method(num_returns=2)'.")
    _check_method_options(kwargs, "@ray.method")

    def deco(m):
        m.__mpiray_method_options__ = {k: v for k, v in kwargs.items()
                                       if k in ("num_returns", "max_task_retries", "retry_exceptions")}
        return m

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return deco(args[0])
    return deco


def _check_method_options(options, what):
    n = options.get("num_returns", 1)
    if n is not None and not _num_returns_ok(n, ("streaming", "dynamic")):
        raise ValueError(f"{what}: num_returns must be a non-negative integer, 'streaming', "
                         f"'dynamic' or None, got {n!r}")
    if options.get("max_task_retries") is not None:
        _check_retry_count(options["max_task_retries"], f"{what}: max_task_retries")
    r = options.get("retry_exceptions")
    if r is not None and not isinstance(r, bool) and not (
            isinstance(r, (list, tuple)) and all(isinstance(c, type) and issubclass(c, BaseException) for c in r)):
        raise TypeError(f"{what}: retry_exceptions must be a bool or a list of exception types, got {r!r}")


# Methods every actor has (as Ray): readiness, running a function on the instance, ending it.
_BUILTIN_METHODS = ("__ray_ready__", "__ray_call__", "__ray_terminate__")


def _method_table(cls):
    """{name: {"num_returns", "max_task_retries", "retry_exceptions", "outline"}} of the
    methods of ``cls`` and its bases (picklable: it travels with every handle)."""
    table = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("__") and name != "__call__":
            continue
        if not callable(member):
            continue
        raw = inspect.getattr_static(cls, name, None)
        if isinstance(raw, (staticmethod, classmethod)):
            outline = _outline(member)
        else:
            outline = _outline(member, skip_first=True)
        spec = {"num_returns": None, "max_task_retries": None, "retry_exceptions": None,
                "generator": _is_generator_function(member)}
        spec.update(getattr(member, "__mpiray_method_options__", {}))
        spec["outline"] = outline
        table[name] = spec
    table["__ray_ready__"] = {"num_returns": 1, "max_task_retries": None, "retry_exceptions": None,
                              "outline": ()}
    table["__ray_call__"] = {"num_returns": 1, "max_task_retries": None, "retry_exceptions": None,
                             "outline": None}
    table["__ray_terminate__"] = {"num_returns": 1, "max_task_retries": None,
                                  "retry_exceptions": None, "outline": ()}
    return table


class ActorMethod:
    def __init__(self, handle, name, spec):
        self._handle = handle
        self._name = name
        self._spec = spec if isinstance(spec, dict) else {"num_returns": spec, "outline": None}

    @property
    def _num_returns(self):
        return self._spec.get("num_returns", 1)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running "
                        f"'object.{self._name}()', try 'object.{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, {})

    def options(self, **options):
        _check_options(options, _METHOD_OPTIONS | {"name"}, "actor method options()")
        _check_method_options(options, "actor method options()")
        parent = self

        class _WithOptions:
            def remote(self, *args, **kwargs):
                return parent._submit(args, kwargs, options)

        return _WithOptions()

    def _remote(self, args=None, kwargs=None, **options):
        """Ray's ``handle.method._remote(args=[...], kwargs={...}, num_returns=...)``."""
        options = {k: v for k, v in options.items() if v is not None}
        return self.options(**options).remote(*(args or ()), **(kwargs or {}))

    def bind(self, *args, **kwargs):
        raise NotImplementedError("Ray DAGs (.bind) are not supported by mpiray")

    def _submit(self, args, kwargs, options):
        spec = self._spec
        handle = self._handle
        _check_call(spec.get("outline"), args, kwargs,
                    f"{handle._class_name}.{self._name}.remote()")
        num_returns = options.get("num_returns", spec.get("num_returns", 1))
        if num_returns is None:  # as Ray: a generator method streams (here: collected)
            num_returns = "streaming" if spec.get("generator") else 1
        collected = num_returns if num_returns in ("streaming", "dynamic") else None
        if collected:
            num_returns = 1
        retries = options.get("max_task_retries", spec.get("max_task_retries"))
        if retries is None:
            retries = _core.ACTOR_DEFAULT_RETRIES  # the actor's max_task_retries
        retry = options.get("retry_exceptions", spec.get("retry_exceptions"))
        if isinstance(retry, list):
            retry = tuple(retry)
        if retry:
            # Application errors are retried on the actor's worker, on the same instance
            # (_worker_hooks.call_method), up to the method's or else the actor's budget.
            budget = retries if retries != _core.ACTOR_DEFAULT_RETRIES else \
                handle._meta.get("max_task_retries", 0)
            meta = (tuple(kwargs), "dynamic" if collected else max(num_returns, 1), retry,
                    options.get("name") or self._name, None, None, None, None, budget)
        else:
            meta = (tuple(kwargs), "dynamic" if collected else max(num_returns, 1), False,
                    options.get("name") or self._name, None)
        natives = handle.__dict__.setdefault("_natives", {})
        native = natives.get((num_returns, retries))
        if native is None:  # once per handle, returns and retries
            native = natives[(num_returns, retries)] = _core.TaskOptions(
                num_returns=max(num_returns, 1), max_retries=retries,
                name=handle._class_name, actor=handle._id)
        refs = _core.submit(_core.TaskKind.ACTOR_CALL, _core.Language.PYTHON, self._name,
                            _call_args(args, kwargs, meta), native)
        if collected == "streaming":
            return _CollectedRefGenerator(refs[0])
        if num_returns == 0:
            return None
        return refs[0] if num_returns == 1 else refs


class BaseID:
    """An id with Ray's methods: ``hex()``, ``binary()``, ``is_nil()``; equal to another id of
    the same kind with the same bytes."""

    def __init__(self, raw):
        self._raw = bytes(raw)

    def hex(self):
        return self._raw.hex()

    def binary(self):
        return self._raw

    def is_nil(self):
        return not any(self._raw)

    @classmethod
    def from_hex(cls, hex_id):
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def from_binary(cls, raw):
        return cls(raw)

    def __eq__(self, other):
        return type(other) is type(self) and other._raw == self._raw

    def __hash__(self):
        return hash((type(self).__name__, self._raw))

    def __str__(self):
        return self.hex()

    def __repr__(self):
        return f"{type(self).__name__}({self.hex()})"

    def __reduce__(self):
        return (type(self), (self._raw,))


class ActorID(BaseID):
    pass


class JobID(BaseID):
    pass


class NodeID(BaseID):
    pass


class TaskID(BaseID):
    pass


def _job_id(ctx):
    try:
        return JobID(bytes.fromhex(ctx["job_id"]))
    except (TypeError, ValueError):
        return JobID(str(ctx["job_id"]).encode())


def _task_id(ctx):
    t = ctx.get("task_id")
    if t is None:
        return None
    try:  # "submitter.sequence"
        return TaskID(b"".join(int(p).to_bytes(8, "big") for p in str(t).split(".")))
    except ValueError:
        return TaskID(str(t).encode())


class ActorHandle:
    """A handle to an actor; methods are called with ``handle.method.remote(...)``. Handles
    can be passed to tasks and other actors."""

    def __init__(self, actor_id, meta, ref=None):
        self._id = actor_id
        self._meta = meta
        # The actor's creation ObjectRef (non-detached, unnamed actors): the head ends the
        # actor once no process holds it, i.e. when its last handle is gone (as Ray).
        self._ref = ref
        self._class_name = meta.get("class_name", "Actor")
        self._methods = meta.get("methods", {})

    def __getattr__(self, name):
        methods = self.__dict__.get("_methods", {})
        if name in methods:
            return ActorMethod(self, name, methods[name])
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"'{self.__dict__.get('_class_name', 'Actor')}' actor has no method '{name}'")

    def __reduce__(self):
        return (ActorHandle, (self._id, self._meta, self._ref))

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._id == self._id

    def __hash__(self):
        return hash(self._id)

    def __repr__(self):
        return f"Actor({self._class_name}, {self._id.hex()})"

    @property
    def _actor_id(self):
        return ActorID(self._id)


class ActorClass:
    """A class decorated with ``@remote``; create actors with ``.remote(...)``."""

    def __init__(self, cls, options):
        _check_options(options, _ACTOR_OPTIONS, "an actor class")
        self._cls = cls
        self._options = _runtime_env.validated_options(dict(options), "@remote")
        self._exported = _Exported(cls)
        self._meta = {"class_name": cls.__name__, "methods": _method_table(cls)}
        init = cls.__init__
        self._init_outline = None if init is object.__init__ else _outline(init, skip_first=True)
        # An async actor runs its calls on one event loop, up to 1000 at once by default (as
        # Ray): the worker starts each call's coroutine and no thread waits for it.
        self._async = _has_async_methods(cls)
        self._default_concurrency = 1000 if self._async else 1

    def __mro_entries__(self, bases):
        from .actor import ActorClassInheritanceException
        raise ActorClassInheritanceException(
            f"Inheriting from actor classes is not currently supported. You can instead "
            f"inherit from a non-actor base class ({self._cls.__name__}, before @ray.remote) "
            f"and make the derived class an actor class (with @ray.remote).")

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actors cannot be instantiated directly. Instead of "
                        f"'{self._cls.__name__}()', use '{self._cls.__name__}.remote()'.")

    def __getattr__(self, name):
        # The class's own attributes (class constants, static methods), as on Ray's actor
        # classes: code inside the actor often reads them through the decorated name.
        cls = self.__dict__.get("_cls")
        if cls is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        try:
            return getattr(cls, name)
        except AttributeError:
            raise AttributeError(f"'ActorClass({cls.__name__})' has no attribute '{name}'") from None

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def options(self, **options):
        _check_options(options, _ACTOR_OPTIONS, "options()")
        merged = {**self._options, **_runtime_env.validated_options(options, "options()")}
        parent = self

        class _WithOptions:
            def remote(self, *args, **kwargs):
                return parent._submit(args, kwargs, merged)

        return _WithOptions()

    def _remote(self, args=None, kwargs=None, **options):
        """Ray's ``Cls._remote(args=[...], kwargs={...}, **actor_options)``."""
        if options:
            return self.options(**options).remote(*(args or ()), **(kwargs or {}))
        return self._submit(tuple(args or ()), dict(kwargs or {}), self._options)

    def bind(self, *args, **kwargs):
        raise NotImplementedError("Ray DAGs (.bind) are not supported by mpiray")

    def _submit(self, args, kwargs, options):
        _check_call(self._init_outline, args, kwargs, f"{self._cls.__name__}.remote()")
        _auto_init()
        name = options.get("name")
        ns = options.get("namespace")
        if ns is None:
            ns = get_runtime_context().namespace
        if name is not None and options.get("get_if_exists"):
            try:
                return get_actor(name, namespace=ns)
            except ValueError:
                pass
        max_concurrency = options.get("max_concurrency", self._default_concurrency)
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        lifetime = options.get("lifetime")
        if lifetime not in (None, "detached", "non_detached"):
            raise ValueError(f"lifetime must be None, 'detached' or 'non_detached', got {lifetime!r}")
        # Detached and named actors live until killed (or the job ends); others end with
        # their last handle. (Ray also ends named non-detached ones then; handles from
        # get_actor() do not hold the actor here, so mpiray keeps named actors.)
        scoped = lifetime != "detached" and name is None
        max_restarts = options.get("max_restarts", 0)
        _check_retry_count(max_restarts, "max_restarts")
        max_task_retries = options.get("max_task_retries", 0)
        _check_retry_count(max_task_retries, "max_task_retries")
        export = self._exported.ref()
        handle_meta = {**self._meta, "max_task_retries": max_task_retries}
        display = name if name is not None else self._cls.__name__  # output lines show this
        # The actor's runtime_env applies to its constructor and every method.
        renv = _runtime_env.for_submission(options.get("runtime_env"))
        placement = _placement(options)
        scheduling, resources = _scheduling(options, _resources(options, 0), 0, placement)
        # What get_runtime_context() tells the actor: its name, class, resources, handle.
        info = {"actor_name": name if name is not None else "",
                "class": self._cls.__name__, "module": getattr(self._cls, "__module__", ""),
                "resources": {k: v for k, v in (resources or {}).items() if v and not k.startswith("node:")},
                "handle_meta": handle_meta}
        if self._async:
            # Ray names an async actor's methods by their qualified name (the class's
            # __qualname__, e.g. "f.<locals>.A.m"), a threaded actor's by "Class.m".
            info["qualname"] = self._cls.__qualname__
        meta = (tuple(kwargs), 1, False, display, export, renv, placement, info)
        native = _core.TaskOptions(
            resources=resources, max_retries=0, name=name if name is not None else self._cls.__name__,
            max_concurrency=max_concurrency, namespace=ns if name is not None else "",
            named=name is not None, handle_meta=pickle.dumps(handle_meta), max_restarts=max_restarts,
            max_task_retries=max_task_retries, scoped=scoped, **scheduling)
        refs = _core.submit(_core.TaskKind.ACTOR_CREATE, _core.Language.PYTHON, export.hex(),
                            _call_args(args, kwargs, meta),
                            native)
        return ActorHandle(refs[0].binary()[:8], handle_meta, refs[0] if scoped else None)


def _has_async_methods(cls):
    for name in dir(cls):
        if name.startswith("__"):
            continue
        attr = getattr(cls, name, None)
        if inspect.iscoroutinefunction(attr) or inspect.isasyncgenfunction(attr):
            return True
    return False


def get_actor(name, namespace=None):
    """The handle of the live actor registered as ``name`` (in ``namespace``, default: this
    job's)."""
    if not isinstance(name, str) or not name:
        raise ValueError("get_actor() needs a non-empty actor name")
    ns = namespace if namespace is not None else get_runtime_context().namespace
    found = _core.get_named_actor(ns, name)
    if found is None:
        raise ValueError(f"Failed to look up actor with name '{name}' in namespace '{ns}'. This "
                         "could be because 1. You are trying to look up a named actor you didn't "
                         "create. 2. The named actor died.")
    actor_id, meta = found
    return ActorHandle(actor_id, pickle.loads(meta))


def kill(actor, *, no_restart=True):
    """Terminate an actor: its queued and future calls fail with ActorDiedError. With
    ``no_restart=False``, an actor created with ``max_restarts`` left is restarted instead
    (its constructor runs again; handles keep working)."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"ray.kill() only supported for actors. For tasks, try ray.cancel(). "
                         f"Got: {type(actor).__name__}.")
    _core.kill_actor(actor._id, no_restart)


def remote(*args, **kwargs):
    """``@remote`` or ``@remote(num_cpus=..., ...)`` on a function or a class."""
    def make(obj, options):
        if inspect.isclass(obj):
            return ActorClass(obj, options)
        if inspect.iscoroutinefunction(obj):  # as Ray (async generators are fine: streaming)
            raise ValueError("'async def' should not be used for remote tasks. You can wrap "
                             "the async function with `asyncio.run(f())`. See more at: "
                             "https://docs.ray.io/en/latest/ray-core/actors/async_api.html")
        if callable(obj):
            return RemoteFunction(obj, options)
        raise TypeError("The @ray.remote decorator must be applied to either a function or a "
                        f"class, got {type(obj).__name__}")

    if len(args) == 1 and not kwargs and callable(args[0]):
        return make(args[0], {})
    if args or not kwargs:  # also `@ray.remote()`, which Ray refuses
        raise TypeError("The @ray.remote decorator must be applied either with no arguments "
                        "and no parentheses, for example '@ray.remote', or it must be applied "
                        "using some of the arguments in the list "
                        f"{sorted(_TASK_OPTIONS | _ACTOR_OPTIONS)}, for example "
                        "'@ray.remote(num_returns=2, resources={\"CustomResource\": 1})'.")
    return lambda obj: make(obj, kwargs)


# ------------------------------------------------------------------ cluster information

def _snapshot():
    return _core.snapshot()


def nodes():
    """The cluster's nodes, in Ray's format."""
    snap = _snapshot()
    hosts = {}
    for p in snap["processes"]:
        hosts.setdefault(p["node"], p["host"])
    out = []
    for n in snap["nodes"]:
        out.append({
            "NodeID": format(n["id"], "032x"),
            "Alive": True,
            "alive": True,
            "NodeManagerAddress": hosts.get(n["id"], ""),
            "NodeManagerHostname": hosts.get(n["id"], ""),
            "Resources": {k: v for k, v in n["total"].items() if v},
            "Workers": list(n["workers"]),
        })
    return out


def _sum_resources(key):
    total = {}
    for n in _snapshot()["nodes"]:
        for k, v in n[key].items():
            if v:
                total[k] = total.get(k, 0.0) + v
    return total


def cluster_resources():
    """Total resources of the cluster."""
    return _sum_resources("total")


def available_resources():
    """Resources not in use right now."""
    return _sum_resources("available")


def _deprecated(what, instead):
    import warnings
    warnings.warn(f"Use {instead}() instead", DeprecationWarning, stacklevel=3)


class RuntimeContext:
    """What ``get_runtime_context()`` returns (Ray's names). ``get_*()`` return hex strings;
    the older properties (``job_id``, ``node_id``, ``task_id``, ``actor_id``) return id
    objects."""

    def __init__(self, ctx):
        self._info = _task_info.get()
        # An async actor's calls run in its event-loop thread, which the runtime does not know:
        # the call's own part of the context (task, actor, incarnation, GPUs) comes with it.
        native = self._info.get("native_ctx")
        self._ctx = {**ctx, **native} if native and ctx.get("actor_id") is None else ctx

    def get(self):
        """Ray's dict: job_id, node_id, namespace; task_id inside a task or actor; actor_id
        inside an actor (id objects); and mpiray's session_dir and rank."""
        out = {"job_id": _job_id(self._ctx), "node_id": NodeID(bytes.fromhex(format(self._ctx["node"], "032x"))),
               "namespace": self._ctx["namespace"],
               # mpiray's own keys, beside Ray's
               "session_dir": self._ctx.get("session_dir", ""), "rank": self._ctx.get("rank", 0)}
        task = _task_id(self._ctx)
        if task is not None and not self._ctx.get("driver"):
            out["task_id"] = task
        if self._ctx.get("actor_id") is not None:
            out["actor_id"] = ActorID(self._ctx["actor_id"])
        return out

    def __getitem__(self, key):
        return self.get()[key]

    @property
    def job_id(self):
        _deprecated("job_id", "get_job_id")
        return _job_id(self._ctx)

    @property
    def node_id(self):
        _deprecated("node_id", "get_node_id")
        return NodeID(bytes.fromhex(format(self._ctx["node"], "032x")))

    @property
    def task_id(self):
        _deprecated("task_id", "get_task_id")
        return None if self._ctx.get("driver") else _task_id(self._ctx)

    @property
    def actor_id(self):
        _deprecated("actor_id", "get_actor_id")
        a = self._ctx["actor_id"]
        return ActorID(a) if a is not None else None

    @property
    def namespace(self):
        return self._ctx["namespace"]

    @property
    def rank(self):
        """This process's rank (0: the driver)."""
        return self._ctx["rank"]

    @property
    def gcs_address(self):
        return ""

    def get_job_id(self):
        return _job_id(self._ctx).hex()

    def get_node_id(self):
        return format(self._ctx["node"], "032x")

    def get_task_id(self):
        if self._ctx.get("driver"):
            return None
        t = _task_id(self._ctx)
        return t.hex() if t is not None else None

    def get_actor_id(self):
        a = self._ctx["actor_id"]
        return a.hex() if a is not None else None

    def get_actor_name(self):
        """The calling actor's name ("" if it has none); None outside actors."""
        if self._ctx.get("actor_id") is None:
            return None
        return self._info.get("actor_name", "")

    def get_task_name(self):
        return self._info.get("task_name") if not self._ctx.get("driver") else None

    def get_task_function_name(self):
        return self._info.get("function_name") if not self._ctx.get("driver") else None

    def get_rank(self):
        return self.rank

    def get_assigned_resources(self):
        """The resources the calling task or actor holds ({} on the driver)."""
        return {k: float(v) for k, v in (self._info.get("resources") or {}).items()}

    def get_placement_group_id(self):
        from .util.placement_group import get_current_placement_group
        pg = get_current_placement_group()
        return pg.id.hex() if pg is not None else None

    @property
    def current_placement_group_id(self):
        _deprecated("current_placement_group_id", "get_placement_group_id")
        from .util.placement_group import get_current_placement_group
        pg = get_current_placement_group()
        return pg.id if pg is not None else None

    @property
    def current_actor(self):
        """The handle of the calling actor (inside an actor method)."""
        a = self._ctx.get("actor_id")
        if a is None:
            raise RuntimeError("This method is only available in an actor.")
        return ActorHandle(a, self._info.get("handle_meta") or {})

    def get_accelerator_ids(self):
        """{"GPU": [device ids as strings]} given to the calling task or actor."""
        return {"GPU": [str(g) for g in self._ctx.get("gpu_ids", [])]}

    def get_dashboard_url(self):
        return ""  # mpiray has no dashboard

    @property
    def was_current_actor_reconstructed(self):
        """Whether the calling actor is a restarted instance (its constructor ran again after
        its worker died), as Ray."""
        return self._ctx.get("actor_id") is not None and self._ctx.get("incarnation", 0) > 1

    @property
    def should_capture_child_tasks_in_placement_group(self):
        """Whether work the calling task or actor submits goes into its placement group."""
        current = getattr(_task_pg, "value", None)
        return bool(current is not None and current[1])

    @property
    def runtime_env(self):
        """The runtime_env of the calling code (the job's on the driver), as a dict: env_vars,
        and working_dir / py_modules as the URIs of their shipped packages."""
        return _runtime_env.current_view()

    def get_runtime_env_string(self):
        import json
        return json.dumps(self.runtime_env)


def get_gpu_ids():
    """The GPU devices given to the calling task or actor (as numbered on its node; also in
    its CUDA_VISIBLE_DEVICES). Empty in the driver and in work that asked for no GPU."""
    return list(_core.context()["gpu_ids"])


def get_runtime_context():
    """Job, node, task, actor and rank of the calling code."""
    _auto_init()
    return RuntimeContext(_core.context())



def register_checkpoint_callback(callback):
    """Call ``callback()`` on the driver when the job is about to end: on SIGTERM (Slurm's time
    limit or preemption) and on the early-warning signal (``#SBATCH --signal=USR1@120``;
    ``MPIRAY_CHECKPOINT_SIGNAL`` picks another). Callbacks run while the cluster still works;
    then mpiray shuts down cleanly and the process exits (0 after the early warning, 143 after
    SIGTERM), so a ``--requeue`` job can resume from what they saved."""
    if not callable(callback):
        raise TypeError("register_checkpoint_callback() needs a callable")
    _core.add_checkpoint_callback(callback)
