"""The replica actor: hosts one instance of the user's class (or function) and runs requests.

It is an async mpiray actor. ``async def`` user methods run on the actor's event loop; plain
methods in a thread pool of ``max_ongoing_requests`` threads, so a blocking method does not stop
other requests. An ``asyncio.Semaphore`` keeps at most ``max_ongoing_requests`` requests
running; more wait inside the replica. Streaming responses are pulled by the handle in chunks
(``stream_start``/``stream_next``): the generator runs in the replica and fills a queue."""

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import os
import time
import traceback

import cloudpickle

from . import http_util
from ..context import (DeploymentID, ReplicaContext, ReplicaID, RequestContext, _replica_ctx,
                       _request_ctx)

_STREAM_CHUNK = 64      # items returned by one stream_next at most
_STREAM_QUEUE = 256     # items a generator may run ahead of the caller


class _End:
    def __init__(self, error=None):
        self.error = error


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
        self._pool = concurrent.futures.ThreadPoolExecutor(max_ongoing_requests + 2,
                                                           f"serve-{deployment_name}")
        self._sem = None
        self._ongoing = 0
        self._load = 0            # requests here, running or waiting for the semaphore
        self._callable = None
        self._streams = {}
        self._cancelled_streams = set()
        self._http_streams = {}   # request id -> (Collector, task) of a streaming HTTP response
        self._asgi_app = None     # @serve.ingress(app): the ASGI app requests go through

    # ------------------------------------------------------------------ helpers

    def _run_in_pool(self, fn, *args, **kwargs):
        ctx = contextvars.copy_context()
        return asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(ctx.run, fn, *args, **kwargs))

    async def _call_user(self, fn, *args, **kwargs):
        """Calls a user function: coroutine functions on the loop, others in the pool."""
        if inspect.iscoroutinefunction(fn):
            return await fn(*args, **kwargs)
        out = await self._run_in_pool(fn, *args, **kwargs)
        if inspect.isawaitable(out):
            out = await out
        return out

    def _method(self, name):
        if self._callable is None:
            raise RuntimeError(f"replica {self._ctx.replica_tag} is not initialized")
        if self._is_function:
            if name != "__call__":
                raise AttributeError(
                    f"Deployment '{self._dep}' is a function deployment: it only has the "
                    f"method '__call__', not {name!r}.")
            return self._callable
        fn = getattr(self._callable, name, None) if not name.startswith("__") or \
            name == "__call__" else None
        if fn is None or not callable(fn):
            methods = sorted(m for m in dir(type(self._callable))
                             if not m.startswith("_") and callable(getattr(self._callable, m, None)))
            if callable(getattr(self._callable, "__call__", None)) and \
                    type(self._callable).__call__ is not object.__call__:
                methods.insert(0, "__call__")
            raise AttributeError(f"Deployment '{self._dep}' has no method {name!r}. "
                                 f"Available methods: {methods}.")
        return fn

    def _enter(self, meta):
        _replica_ctx.set(self._ctx)
        _request_ctx.set(RequestContext(request_id=meta.get("request_id", ""),
                                        multiplexed_model_id=meta.get("multiplexed_model_id", ""),
                                        app_name=self._ctx.app_name))

    def _semaphore(self):
        if self._sem is None:
            self._sem = asyncio.Semaphore(self._max_ongoing)
        return self._sem

    # ------------------------------------------------------------------ control plane

    async def initialize(self):
        """Builds the user object; returns None, or the constructor's traceback."""
        _replica_ctx.set(self._ctx)
        try:
            target = cloudpickle.loads(self._def_bytes)
            args, kwargs = cloudpickle.loads(self._args_bytes)
            if self._is_function:
                self._callable = target
            else:
                self._callable = await self._run_in_pool(target, *args, **kwargs)
            self._ctx.servable_object = self._callable
            app = None if self._is_function else getattr(type(self._callable),
                                                         "_serve_asgi_app", None)
            if app is not None:
                if hasattr(app, "router") and hasattr(app, "include_router"):
                    http_util.bind_class_routes(app, type(self._callable))
                self._asgi_app = app
            if self._user_config is not None:
                await self._reconfigure(self._user_config)
            return None
        except BaseException:  # noqa: BLE001 - reported to the controller, shown in status()
            return traceback.format_exc()

    async def _reconfigure(self, user_config):
        fn = getattr(self._callable, "reconfigure", None) if not self._is_function else None
        if fn is None:
            raise AttributeError(f"user_config given, but deployment '{self._dep}' has no "
                                 f"reconfigure(user_config) method")
        await self._call_user(fn, user_config)
        self._user_config = user_config
        self._ctx._user_config = user_config

    async def reconfigure(self, user_config):
        _replica_ctx.set(self._ctx)
        await self._reconfigure(user_config)
        return True

    async def check_health(self):
        _replica_ctx.set(self._ctx)
        fn = getattr(self._callable, "check_health", None) if not self._is_function else None
        if fn is not None:
            await self._call_user(fn)
        return True

    async def get_metadata(self):
        return {"pid": os.getpid(), "replica_tag": self._ctx.replica_tag,
                "ongoing": self._ongoing, "load": self._load + len(self._streams)}

    async def prepare_for_shutdown(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while (self._ongoing or self._streams) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self._ongoing

    # ------------------------------------------------------------------ requests

    async def handle_request(self, _serve_meta, *args, **kwargs):
        self._load += 1
        try:
            async with self._semaphore():
                self._ongoing += 1
                try:
                    self._enter(_serve_meta)
                    fn = self._method(_serve_meta.get("method", "__call__"))
                    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
                        raise TypeError(f"Method {_serve_meta.get('method')!r} of deployment "
                                        f"'{self._dep}' is a generator: call it with "
                                        f"handle.options(stream=True)")
                    return await self._call_user(fn, *args, **kwargs)
                finally:
                    self._ongoing -= 1
        finally:
            self._load -= 1

    async def stream_start(self, _serve_meta, *args, **kwargs):
        """Starts a streaming call; returns its first chunk (items, done)."""
        rid = _serve_meta["request_id"]
        fn = self._method(_serve_meta.get("method", "__call__"))
        if not (inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)):
            raise TypeError(f"handle.options(stream=True) needs a generator method, but "
                            f"{_serve_meta.get('method')!r} of deployment '{self._dep}' is not one")
        q = asyncio.Queue(_STREAM_QUEUE)
        self._streams[rid] = q
        loop = asyncio.get_running_loop()
        sem = self._semaphore()
        cancelled = self._cancelled_streams

        async def produce():
            async with sem:
                self._ongoing += 1
                self._enter(_serve_meta)
                try:
                    if inspect.isasyncgenfunction(fn):
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
                        await self._run_in_pool(run_sync)
                    await q.put(_End())
                except BaseException as e:  # noqa: BLE001 - raised at the caller's next item
                    await q.put(_End(e))
                finally:
                    self._ongoing -= 1
                    cancelled.discard(rid)

        loop.create_task(produce())
        return await self.stream_next(rid)

    async def stream_next(self, request_id):
        q = self._streams.get(request_id)
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
            self._streams.pop(request_id, None)
            if end.error is not None and not items:
                raise end.error
            if end.error is not None:  # deliver the items first, the error on the next call
                self._streams[request_id] = q
                q.put_nowait(end)
                return items, False
            return items, True
        return items, False

    async def stream_cancel(self, request_id):
        """The caller stopped iterating: the generator stops at its next item (a producer
        blocked on the full queue is released by draining it)."""
        q = self._streams.pop(request_id, None)
        if q is not None:
            self._cancelled_streams.add(request_id)
            while not q.empty():
                q.get_nowait()
        return True

    # ------------------------------------------------------------------ HTTP (native proxy)

    async def handle_http(self, _serve_meta, req):
        """A request from the HTTP proxy. Returns (status, headers, body parts, done); when not
        done (a streaming response) the proxy pulls the rest with ``http_next``."""
        rid = _serve_meta["request_id"]
        col = http_util.Collector()
        scope = http_util.make_scope(req)
        receive = http_util.make_receive(req[4])
        sem = self._semaphore()

        async def run():
            try:
                async with sem:
                    self._ongoing += 1
                    self._enter(_serve_meta)
                    try:
                        await self._run_http(scope, receive, col.send)
                        col.finish()
                    except BaseException as e:  # noqa: BLE001 - a 500 with the error text
                        col.finish(http_util.error_text(e))
                    finally:
                        self._ongoing -= 1
            finally:
                self._load -= 1

        self._load += 1

        task = asyncio.get_running_loop().create_task(run())
        await col.wait()
        parts = col.take()
        if col.done:
            return col.status, col.headers, parts, True
        self._http_streams[rid] = (col, task)
        return col.status, col.headers, parts, False

    async def http_next(self, request_id):
        entry = self._http_streams.get(request_id)
        if entry is None:
            raise KeyError(f"no HTTP stream {request_id!r} on this replica")
        col, _ = entry
        await col.wait()
        parts = col.take()
        if col.done:
            self._http_streams.pop(request_id, None)
        return parts, col.done

    async def http_cancel(self, request_id):
        """The HTTP client went away: stop the response's producer."""
        entry = self._http_streams.pop(request_id, None)
        if entry is not None:
            entry[0].cancel()
            entry[1].cancel()
        return True

    async def _run_http(self, scope, receive, send):
        if self._asgi_app is not None:
            await self._asgi_app(scope, receive, send)
            return
        from starlette.requests import Request
        fn = self._method("__call__")
        request = Request(scope, receive)
        if inspect.isasyncgenfunction(fn):
            result = fn(request)
        else:
            result = await self._call_user(fn, request)
        await http_util.send_result(result, scope, receive, send)
