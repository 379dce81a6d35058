"""The replica actor: hosts one instance of the user's class (or function) and runs requests.

It is a threaded mpiray actor (none of its own methods is ``async``): every call arrives on one
of the actor's threads. Plain user methods run right there, on that thread, so a sync request
costs no hop between threads (an async actor would move every call to its event loop and back,
and a sync method from there to a pool). ``async def`` user methods, async generators,
``@serve.ingress`` ASGI apps and streams run on the replica's own event loop (one thread, the
same for every request, as in Ray): the calling thread hands the coroutine over and waits for
its result. A ``threading.Semaphore`` keeps at most ``max_ongoing_requests`` requests running;
more wait inside the replica (on their threads). Streaming responses are pulled by the caller in
chunks (``stream_start``/``stream_next``): the generator runs in the replica and fills a
queue."""

import asyncio
import collections
import concurrent.futures
import contextvars
import functools
import inspect
import os
import threading
import time
import traceback
import weakref

import cloudpickle

from . import http_util
from ..context import (DeploymentID, ReplicaContext, ReplicaID, RequestContext, _replica_ctx,
                       _request_ctx)

_STREAM_CHUNK = 64      # items returned by one stream_next at most
_STREAM_QUEUE = 256     # items a generator may run ahead of the caller
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]

_SYNC, _ASYNC, _SYNC_GEN, _ASYNC_GEN = "sync", "async", "sync-gen", "async-gen"


class _End:
    def __init__(self, error=None):
        self.error = error


def _kind(fn):
    if inspect.isasyncgenfunction(fn):
        return _ASYNC_GEN
    if inspect.isgeneratorfunction(fn):
        return _SYNC_GEN
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)):
        return _ASYNC
    return _SYNC


def _run_loop(loop, ctx):
    _replica_ctx.set(ctx)
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


class ServeReplica:
    def __init__(self, app_name, deployment_name, replica_tag, def_bytes, args_bytes,
                 is_function, max_ongoing_requests, user_config, rank=0, world_size=1):
        self._dep = deployment_name
        self._is_function = is_function
        self._def_bytes, self._args_bytes = def_bytes, args_bytes
        self._max_ongoing = max_ongoing_requests
        self._user_config = user_config
        self._ctx = ReplicaContext(ReplicaID(replica_tag, DeploymentID(deployment_name, app_name)),
                                   rank=rank, world_size=world_size)
        self._sem = threading.Semaphore(max_ongoing_requests)
        self._count_lock = threading.Lock()
        self._ongoing = 0         # requests running (holding a semaphore slot)
        self._load = 0            # requests here, running or waiting for a slot
        self._callable = None
        self._methods = {}        # name -> (bound method, kind)
        self._loop = None         # the replica's event loop (started on first need)
        self._inbox = collections.deque()   # coroutines for the loop (see _on_loop)
        self._inbox_scheduled = False
        self._loop_lock = threading.Lock()
        self._gen_pool = None     # threads for sync generators of streams
        self._streams = {}
        self._cancelled_streams = set()
        self._http_streams = {}   # request id -> (Collector, task) of a streaming HTTP response
        self._asgi_app = None     # @serve.ingress(app): the ASGI app requests go through

    # ------------------------------------------------------------------ helpers

    def _get_loop(self):
        loop = self._loop
        if loop is None:
            with self._loop_lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=_run_loop, args=(loop, self._ctx), daemon=True,
                                     name=f"serve-loop-{self._dep}").start()
                    weakref.finalize(self, loop.call_soon_threadsafe, loop.stop)
                    self._loop = loop
                loop = self._loop
        return loop

    def _on_loop(self, coro):
        """Runs ``coro`` on the replica's event loop; this (actor) thread waits for it.

        Lighter than ``run_coroutine_threadsafe(...).result()``: the coroutine joins an inbox
        that the loop drains (one wake-up of the loop for a burst of calls), and the thread
        waits on a plain lock that the task's done-callback releases."""
        done = threading.Lock()
        done.acquire()
        box = [coro, done, None, None]   # coroutine, lock, result, exception
        self._inbox.append(box)
        if not self._inbox_scheduled:
            self._inbox_scheduled = True
            loop = self._loop or self._get_loop()
            loop.call_soon_threadsafe(self._drain_inbox)
        done.acquire()
        if box[3] is not None:
            exc, box[3] = box[3], None
            raise exc
        return box[2]

    def _drain_inbox(self):
        """On the loop: starts every coroutine queued by ``_on_loop``."""
        self._inbox_scheduled = False
        inbox, loop = self._inbox, self._loop
        while inbox:
            box = inbox.popleft()
            try:
                task = loop.create_task(box[0])
            except BaseException as e:  # noqa: BLE001 - to the waiting thread
                box[3] = e
                box[1].release()
                continue
            task.add_done_callback(functools.partial(_finish_box, box))

    def _in_pool(self, fn, *args):
        """From the loop: ``fn(*args)`` on a thread of the replica's generator pool."""
        if self._gen_pool is None:
            with self._loop_lock:
                if self._gen_pool is None:
                    self._gen_pool = concurrent.futures.ThreadPoolExecutor(
                        self._max_ongoing + 2, f"serve-{self._dep}")
        ctx = contextvars.copy_context()
        return asyncio.get_running_loop().run_in_executor(
            self._gen_pool, functools.partial(ctx.run, fn, *args))

    def _call_user(self, fn, *args, **kwargs):
        """Calls a user function from an actor thread: plain ones here, coroutines on the
        loop."""
        if _kind(fn) == _ASYNC:
            return self._on_loop(_await_call(self, None, fn, args, kwargs))
        out = fn(*args, **kwargs)
        if inspect.isawaitable(out):
            out = self._on_loop(_await_value(out))
        return out

    def _method(self, name):
        hit = self._methods.get(name)
        if hit is not None:
            return hit
        if self._callable is None:
            raise RuntimeError(f"replica {self._ctx.replica_tag} is not initialized")
        if self._is_function:
            if name != "__call__":
                raise AttributeError(
                    f"Deployment '{self._dep}' is a function deployment: it only has the "
                    f"method '__call__', not {name!r}.")
            fn = self._callable
        else:
            fn = getattr(self._callable, name, None) if not name.startswith("__") or \
                name == "__call__" else None
            if fn is None or not callable(fn):
                methods = sorted(m for m in dir(type(self._callable)) if not m.startswith("_")
                                 and callable(getattr(self._callable, m, None)))
                if callable(getattr(self._callable, "__call__", None)) and \
                        type(self._callable).__call__ is not object.__call__:
                    methods.insert(0, "__call__")
                raise AttributeError(f"Deployment '{self._dep}' has no method {name!r}. "
                                     f"Available methods: {methods}.")
        hit = self._methods[name] = (fn, _kind(fn))
        return hit

    def _enter(self, meta):
        _replica_ctx.set(self._ctx)
        _request_ctx.set(RequestContext(request_id=meta.get("request_id", ""),
                                        multiplexed_model_id=meta.get("multiplexed_model_id", ""),
                                        app_name=self._ctx.app_name))

    def _arrive(self):
        with self._count_lock:
            self._load += 1

    def _start(self):
        """Waits for one of the ``max_ongoing_requests`` slots (the request was counted by
        ``_arrive``)."""
        try:
            self._sem.acquire()
        except BaseException:
            self._leave(False)
            raise
        with self._count_lock:
            self._ongoing += 1

    def _leave(self, started=True):
        """The request ended (from any thread)."""
        with self._count_lock:
            self._load -= 1
            if started:
                self._ongoing -= 1
        if started:
            self._sem.release()

    # ------------------------------------------------------------------ control plane

    def initialize(self):
        """Builds the user object; returns None, or the constructor's traceback."""
        _replica_ctx.set(self._ctx)
        try:
            target = cloudpickle.loads(self._def_bytes)
            args, kwargs = cloudpickle.loads(self._args_bytes)
            if self._is_function:
                self._callable = target
            else:
                self._callable = target(*args, **kwargs)
            self._ctx.servable_object = self._callable
            app = None if self._is_function else getattr(type(self._callable),
                                                         "_serve_asgi_app", None)
            if app is not None:
                if hasattr(app, "router") and hasattr(app, "include_router"):
                    http_util.bind_class_routes(app, type(self._callable))
                self._asgi_app = app
            if self._user_config is not None:
                self._reconfigure(self._user_config)
            return None
        except BaseException:  # noqa: BLE001 - reported to the controller, shown in status()
            return traceback.format_exc()

    def _reconfigure(self, user_config):
        fn = getattr(self._callable, "reconfigure", None) if not self._is_function else None
        if fn is None:
            raise AttributeError(f"user_config given, but deployment '{self._dep}' has no "
                                 f"reconfigure(user_config) method")
        self._call_user(fn, user_config)
        self._user_config = user_config
        self._ctx._user_config = user_config

    def reconfigure(self, user_config):
        _replica_ctx.set(self._ctx)
        self._reconfigure(user_config)
        return True

    def check_health(self):
        """The user's ``check_health`` if any; and the replica's event loop must answer (a
        request that blocks it stalls every async request: the replica is replaced, as in
        Ray, where the health check runs on that loop)."""
        _replica_ctx.set(self._ctx)
        fn = getattr(self._callable, "check_health", None) if not self._is_function else None
        if fn is not None:
            self._call_user(fn)
        if self._loop is not None:
            self._on_loop(_await_value(asyncio.sleep(0)))
        return True

    def get_metadata(self):
        return {"pid": os.getpid(), "replica_tag": self._ctx.replica_tag,
                "ongoing": self._ongoing, "load": self._load + len(self._streams)}

    def prepare_for_shutdown(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while (self._ongoing or self._streams) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._ongoing

    # ------------------------------------------------------------------ requests

    def handle_request(self, _serve_meta, *args, **kwargs):
        self._arrive()
        self._start()
        try:
            fn, kind = self._method(_serve_meta.get("method", "__call__"))
            if kind == _ASYNC:
                return self._on_loop(_await_call(self, _serve_meta, fn, args, kwargs))
            if kind in (_SYNC_GEN, _ASYNC_GEN):
                raise TypeError(f"Method {_serve_meta.get('method')!r} of deployment "
                                f"'{self._dep}' is a generator: call it with "
                                f"handle.options(stream=True)")
            self._enter(_serve_meta)
            out = fn(*args, **kwargs)
            if inspect.isawaitable(out):
                out = self._on_loop(_await_value(out))
            return out
        finally:
            self._leave()

    def stream_start(self, _serve_meta, *args, **kwargs):
        """Starts a streaming call; returns its first chunk (items, done)."""
        fn, kind = self._method(_serve_meta.get("method", "__call__"))
        if kind not in (_SYNC_GEN, _ASYNC_GEN):
            raise TypeError(f"handle.options(stream=True) needs a generator method, but "
                            f"{_serve_meta.get('method')!r} of deployment '{self._dep}' is not one")
        self._arrive()
        self._start()   # released when the generator ends (on the loop)
        return self._on_loop(_stream_start(self, _serve_meta, fn, kind, args, kwargs))

    def stream_next(self, request_id):
        return self._on_loop(_stream_next(self, request_id))

    def stream_cancel(self, request_id):
        """The caller stopped iterating: the generator stops at its next item (a producer
        blocked on the full queue is released by draining it)."""
        return self._on_loop(_stream_cancel(self, request_id))

    # ------------------------------------------------------------------ HTTP (native proxy)

    def handle_http(self, _serve_meta, req):
        """A request from the HTTP proxy. Returns (status, headers, body parts, done); when not
        done (a streaming response) the proxy pulls the rest with ``http_next``."""
        self._arrive()
        self._start()
        handed = False
        try:
            scope = http_util.make_scope(req)
            if self._asgi_app is None:
                fn, kind = self._method("__call__")
                if kind in (_SYNC, _SYNC_GEN):
                    # A plain __call__ runs here; a value that needs the loop (a coroutine, a
                    # Starlette response, a generator) is finished there.
                    self._enter(_serve_meta)
                    from starlette.requests import Request
                    try:
                        result = fn(Request(scope, http_util.make_receive(req[4])))
                        plain = http_util.plain_response(result)
                    except Exception as e:  # noqa: BLE001 - a 500 with the error text
                        return 500, _TEXT, [http_util.error_text(e).encode()], True
                    if plain is not None:
                        return plain + (True,)
                    handed = True
                    return self._on_loop(_http_on_loop(self, _serve_meta, req, scope, result))
            handed = True
            return self._on_loop(_http_on_loop(self, _serve_meta, req, scope, _NO_RESULT))
        finally:
            if not handed:
                self._leave()

    def http_next(self, request_id):
        return self._on_loop(_http_next(self, request_id))

    def http_cancel(self, request_id):
        """The HTTP client went away: stop the response's producer."""
        entry = self._http_streams.pop(request_id, None)
        if entry is not None:
            col, task = entry
            loop = self._get_loop()
            loop.call_soon_threadsafe(col.cancel)
            loop.call_soon_threadsafe(task.cancel)
        return True


# ---------------------------------------------------------------------- on the replica's loop
# (module functions: a coroutine method would make the replica an async actor)

_NO_RESULT = object()


def _finish_box(box, task):
    if task.cancelled():
        box[3] = asyncio.CancelledError()
    else:
        box[3] = task.exception()
        if box[3] is None:
            box[2] = task.result()
    box[1].release()


async def _await_call(replica, meta, fn, args, kwargs):
    if meta is not None:
        replica._enter(meta)
    return await fn(*args, **kwargs)


async def _await_value(awaitable):
    return await awaitable


async def _stream_start(replica, meta, fn, kind, args, kwargs):
    rid = meta["request_id"]
    q = asyncio.Queue(_STREAM_QUEUE)
    replica._streams[rid] = q
    loop = asyncio.get_running_loop()
    cancelled = replica._cancelled_streams

    async def produce():
        replica._enter(meta)
        try:
            if kind == _ASYNC_GEN:
                async for item in fn(*args, **kwargs):
                    if rid in cancelled:
                        break
                    await q.put(item)
            else:
                def run_sync():
                    gen = fn(*args, **kwargs)
                    try:
                        for item in gen:
                            if rid in cancelled:
                                return
                            asyncio.run_coroutine_threadsafe(q.put(item), loop).result()
                    finally:
                        gen.close()
                await replica._in_pool(run_sync)
            await q.put(_End())
        except BaseException as e:  # noqa: BLE001 - raised at the caller's next item
            await q.put(_End(e))
        finally:
            replica._leave()
            cancelled.discard(rid)

    loop.create_task(produce())
    return await _stream_next(replica, rid)


async def _stream_next(replica, request_id):
    q = replica._streams.get(request_id)
    if q is None:
        raise KeyError(f"no stream {request_id!r} on this replica")
    items = [await q.get()]
    while len(items) < _STREAM_CHUNK and not isinstance(items[-1], _End):
        try:
            items.append(q.get_nowait())
        except asyncio.QueueEmpty:
            break
    if isinstance(items[-1], _End):
        end = items.pop()
        replica._streams.pop(request_id, None)
        if end.error is not None and not items:
            raise end.error
        if end.error is not None:  # deliver the items first, the error on the next call
            replica._streams[request_id] = q
            q.put_nowait(end)
            return items, False
        return items, True
    return items, False


async def _stream_cancel(replica, request_id):
    q = replica._streams.pop(request_id, None)
    if q is not None:
        replica._cancelled_streams.add(request_id)
        while not q.empty():
            q.get_nowait()
    return True


async def _http_on_loop(replica, meta, req, scope, result):
    """The HTTP request on the loop: an ASGI app, an async ``__call__``, or the result of a sync
    one that needs the loop. The request's slot is released when the response ends."""
    rid = meta["request_id"]
    col = http_util.Collector()
    receive = http_util.make_receive(req[4])

    async def run():
        try:
            replica._enter(meta)
            try:
                out = result
                if out is _NO_RESULT and replica._asgi_app is not None:
                    await replica._asgi_app(scope, receive, col.send)
                else:
                    if out is _NO_RESULT:
                        from starlette.requests import Request
                        fn, kind = replica._method("__call__")
                        out = fn(Request(scope, receive))
                    if inspect.isawaitable(out):
                        out = await out
                    await http_util.send_result(out, scope, receive, col.send)
                col.finish()
            except BaseException as e:  # noqa: BLE001 - a 500 with the error text
                col.finish(http_util.error_text(e))
        finally:
            replica._leave()

    try:
        task = asyncio.get_running_loop().create_task(run())
    except BaseException:
        replica._leave()
        raise
    await col.wait()
    parts = col.take()
    if col.done:
        return col.status, col.headers, parts, True
    replica._http_streams[rid] = (col, task)
    return col.status, col.headers, parts, False


async def _http_next(replica, request_id):
    entry = replica._http_streams.get(request_id)
    if entry is None:
        raise KeyError(f"no HTTP stream {request_id!r} on this replica")
    col, _ = entry
    await col.wait()
    parts = col.take()
    if col.done:
        replica._http_streams.pop(request_id, None)
    return parts, col.done
