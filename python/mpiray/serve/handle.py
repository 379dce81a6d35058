"""``DeploymentHandle``, ``DeploymentResponse`` and ``DeploymentResponseGenerator``.

A handle names a deployment (application, deployment, call options) and is cheap to pickle:
it can be passed to tasks, actors and other deployments, and finds its replicas through the
controller in whatever process uses it."""

import asyncio
import itertools
import os
import time

import mpiray as ray
from mpiray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from .exceptions import DeploymentUnavailableError, RayServeException
from ._private.router import get_router
from ._private.waiter import wait_async

_MAX_ATTEMPTS = 3   # a request whose replica died is sent again, to another replica, this often


_id_state = [None, None, None]   # pid, random prefix, counter


def new_request_id():
    """A request id unique in the job: this process's random prefix and a counter (cheaper
    than a uuid4 per request; a forked child makes a prefix of its own)."""
    st = _id_state
    if st[0] != os.getpid():
        st[1], st[2], st[0] = os.urandom(8).hex(), itertools.count(), os.getpid()
    return f"{st[1]}{next(st[2]):x}"


def _replica_died(e):
    """True when the replica itself died (not when its user code re-raised an actor error)."""
    return isinstance(e, RayActorError) and not isinstance(e, RayTaskError)


class _HandleOptions:
    __slots__ = ("method_name", "stream", "multiplexed_model_id")

    def __init__(self, method_name="__call__", stream=False, multiplexed_model_id=""):
        self.method_name, self.stream = method_name, stream
        self.multiplexed_model_id = multiplexed_model_id

    def as_tuple(self):
        return (self.method_name, self.stream, self.multiplexed_model_id)


class DeploymentHandle:
    """Calls a deployment: ``handle.remote(...)``, ``handle.method.remote(...)``,
    ``handle.options(method_name=..., stream=..., multiplexed_model_id=...)``."""

    def __init__(self, deployment_name, app_name="default", *, _options=None):
        self.deployment_name = deployment_name
        self.app_name = app_name
        self._opts = _options or _HandleOptions()

    def options(self, *, method_name=None, stream=None, multiplexed_model_id=None,
                use_new_handle_api=None, **unknown):
        if unknown:
            raise TypeError(f"DeploymentHandle.options() got unknown option(s) "
                            f"{sorted(unknown)}; known: method_name, stream, "
                            f"multiplexed_model_id")
        o = self._opts
        if method_name is not None and (not isinstance(method_name, str) or not method_name):
            raise TypeError(f"method_name must be a non-empty string, got {method_name!r}")
        if stream is not None and not isinstance(stream, bool):
            raise TypeError(f"stream must be True or False, got {stream!r}")
        if multiplexed_model_id is not None and not isinstance(multiplexed_model_id, str):
            raise TypeError(f"multiplexed_model_id must be a string, got {multiplexed_model_id!r}")
        new = _HandleOptions(method_name if method_name is not None else o.method_name,
                             stream if stream is not None else o.stream,
                             multiplexed_model_id if multiplexed_model_id is not None
                             else o.multiplexed_model_id)
        return DeploymentHandle(self.deployment_name, self.app_name, _options=new)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self.options(method_name=name)

    def remote(self, *args, **kwargs):
        meta = {"request_id": new_request_id(), "method": self._opts.method_name,
                "multiplexed_model_id": self._opts.multiplexed_model_id}
        router = get_router(self.app_name, self.deployment_name)
        if self._opts.stream:
            return DeploymentResponseGenerator(router, meta, args, kwargs)
        return DeploymentResponse(router, meta, args, kwargs)

    def __reduce__(self):
        return (_rebuild_handle, (self.deployment_name, self.app_name, self._opts.as_tuple()))

    def __repr__(self):
        return (f"DeploymentHandle(deployment='{self.deployment_name}', "
                f"app='{self.app_name}', method='{self._opts.method_name}')")


def _rebuild_handle(dep, app, opts):
    return DeploymentHandle(dep, app, _options=_HandleOptions(*opts))


def _check_args(args, kwargs):
    for a in list(args) + list(kwargs.values()):
        if isinstance(a, DeploymentResponseGenerator):
            raise TypeError("a streaming DeploymentResponseGenerator cannot be passed as an "
                            "argument; iterate it and pass the items")


def _final(a):
    """DeploymentResponses passed as arguments travel as their ObjectRefs (the runtime
    resolves top-level refs before the replica's method runs)."""
    return a._ref if isinstance(a, DeploymentResponse) else a


class _ResponseBase:
    def __init__(self, router, meta, args, kwargs):
        _check_args(args, kwargs)
        self._router, self._meta = router, meta
        self._args, self._kwargs = args, kwargs
        self._attempts = 0
        self._slot = None
        self._ref = None
        self._cancelled = False

    @property
    def request_id(self):
        return self._meta["request_id"]

    def _start(self, method):
        """Sends the request. DeploymentResponses among the arguments travel as their pending
        ObjectRefs, from the driver and from replicas alike: the replica's method runs once
        they are ready, without a wait here."""
        self._send(method)

    def _sent_sync(self):
        if self._ref is None:
            raise RuntimeError("this DeploymentResponse was not sent")

    def _send(self, method):
        self._attempts += 1
        self._slot = self._router.choose(self._meta.get("multiplexed_model_id", ""))
        fn = getattr(self._slot.actor, method)
        self._ref = fn.remote(self._meta, *[_final(a) for a in self._args],
                              **{k: _final(v) for k, v in self._kwargs.items()})
        self._router.track(self._slot, self._ref)
        return self._ref

    def _on_death(self, err):
        """The replica died: mark it, and send again if attempts are left."""
        self._router.release(self._ref)
        self._router.mark_dead(self._slot)
        if self._attempts >= _MAX_ATTEMPTS:
            raise DeploymentUnavailableError(
                f"Request {self.request_id} to deployment '{self._router.dep}' failed: "
                f"{self._attempts} replica(s) died while handling it ({err})") from err

    def cancel(self):
        self._cancelled = True
        if self._ref is not None:
            try:
                ray.cancel(self._ref)
            except Exception:  # noqa: BLE001 - already finished
                pass

    def cancelled(self):
        return self._cancelled


class DeploymentResponse(_ResponseBase):
    """The future result of a handle call: ``.result(timeout_s=...)`` or ``await``. Pass it
    to another handle call to chain deployments without waiting here."""

    def __init__(self, router, meta, args, kwargs):
        super().__init__(router, meta, args, kwargs)
        self._start("handle_request")

    def _to_object_ref_sync(self, _timeout_s=None):
        self._sent_sync()
        return self._ref

    async def _to_object_ref(self):
        return self._ref

    def result(self, *, timeout_s=None, _skip_asyncio_check=False):
        self._sent_sync()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                value = ray.get(self._ref, timeout=remaining)
            except GetTimeoutError:
                raise TimeoutError(f"Request {self.request_id} to deployment "
                                   f"'{self._router.dep}' did not finish in {timeout_s}s") from None
            except Exception as e:  # noqa: BLE001
                if not _replica_died(e):
                    self._router.release(self._ref)
                    raise
                self._on_death(e)
                self._send("handle_request")
                continue
            self._router.release(self._ref)
            return value

    async def _result_async(self):
        while True:
            try:
                value = await wait_async(self._ref)
            except Exception as e:  # noqa: BLE001
                if not _replica_died(e):
                    self._router.release(self._ref)
                    raise
                self._on_death(e)
                await asyncio.get_running_loop().run_in_executor(
                    None, self._send, "handle_request")
                continue
            self._router.release(self._ref)
            return value

    def __await__(self):
        return self._result_async().__await__()

    def __reduce__(self):
        raise RayServeException("DeploymentResponse cannot be pickled except as a top-level "
                                "argument of another handle call; pass the result instead")


class DeploymentResponseGenerator(_ResponseBase):
    """The items of a streaming call (``handle.options(stream=True)``): iterate with ``for``
    or ``async for``. The generator runs in the replica; items come in chunks."""

    def __init__(self, router, meta, args, kwargs):
        super().__init__(router, meta, args, kwargs)
        self._buffer = []
        self._done = False
        self._delivered = 0
        self._start("stream_start")

    def _accept(self, chunk):
        items, done = chunk
        self._buffer.extend(items)
        self._done = done
        if done:
            self._router.release(self._ref)

    def _fetch_sync(self):
        while True:
            try:
                chunk = ray.get(self._ref)
            except Exception as e:  # noqa: BLE001
                self._handle_error(e)
                self._send("stream_start")
                continue
            self._accept(chunk)
            if not self._done:
                self._next_ref()
            return

    def _next_ref(self):
        self._router.release(self._ref)
        self._ref = self._slot.actor.stream_next.remote(self.request_id)
        self._router.track(self._slot, self._ref)

    def _handle_error(self, e):
        if not _replica_died(e):
            self._router.release(self._ref)
            self._done = True
            raise e
        if self._delivered:
            self._router.release(self._ref)
            self._router.mark_dead(self._slot)
            self._done = True
            raise DeploymentUnavailableError(
                f"The replica streaming request {self.request_id} of deployment "
                f"'{self._router.dep}' died after {self._delivered} item(s): {e}") from e
        self._on_death(e)

    def __iter__(self):
        return self

    def __next__(self):
        self._sent_sync()
        while not self._buffer:
            if self._done:
                raise StopIteration
            self._fetch_sync()
        self._delivered += 1
        return self._buffer.pop(0)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            try:
                chunk = await wait_async(self._ref)
            except Exception as e:  # noqa: BLE001
                self._handle_error(e)
                await asyncio.get_running_loop().run_in_executor(None, self._send, "stream_start")
                continue
            self._accept(chunk)
            if not self._done:
                self._next_ref()
        self._delivered += 1
        return self._buffer.pop(0)

    def result(self, *a, **k):
        raise TypeError("a streaming response has no single result: iterate it")

    def __del__(self):
        # Abandoned before the end: stop the generator in the replica.
        try:
            if not self._done and self._ref is not None and self._slot is not None:
                self._router.release(self._ref)
                self._slot.actor.stream_cancel.remote(self.request_id)
        except Exception:  # noqa: BLE001 - interpreter shutdown, replica gone
            pass
