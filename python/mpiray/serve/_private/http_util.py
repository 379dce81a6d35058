"""HTTP inside a replica: the ASGI scope of a request that came through the native proxy, a
Starlette ``Request`` for ``__call__``, Ray Serve's conversion of return values to responses,
FastAPI ingress apps (``@serve.ingress``) with class-method routes, and the collector that
turns ASGI ``send`` messages into what goes back to the proxy (whole, or chunk by chunk)."""

import asyncio
import collections
import inspect
import json
import traceback

# What the proxy sends per request (a tuple, cheap to pickle):
# (method, path, query bytes, headers [(bytes, bytes)], body bytes, (host, port), http version,
#  route prefix)

_STREAM_AHEAD = 256   # ASGI body messages a streaming app may run ahead of the client


def make_scope(req):
    method, path, query, headers, body, client, http_version, prefix = req
    root = "" if prefix in ("/", None) else prefix
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": http_version, "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode("latin-1", "replace"), "root_path": root,
        "query_string": query, "headers": list(headers), "client": tuple(client),
        "server": None, "extensions": {},
    }


def make_receive(body):
    sent = False
    never = asyncio.Event()

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()  # the body was read whole; nothing more comes (no disconnect event)

    return receive


_encoder = []   # [fastapi's jsonable_encoder or None], looked up once


def _json_bytes(obj):
    if not _encoder:
        try:
            from fastapi.encoders import jsonable_encoder
        except ImportError:
            jsonable_encoder = None
        _encoder.append(jsonable_encoder)
    if _encoder[0] is not None and not _plain_json(obj):
        obj = _encoder[0](obj)
    return json.dumps(obj, separators=(",", ":")).encode()


def _plain_json(obj, depth=0):
    """True for dicts/lists of str keys and str/int/float/bool/None values (json.dumps writes
    them as jsonable_encoder would; anything else goes through the encoder)."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return True
    if depth > 8:
        return False
    if type(obj) is dict:
        return all(type(k) is str and _plain_json(v, depth + 1) for k, v in obj.items())
    if type(obj) is list:
        return all(_plain_json(v, depth + 1) for v in obj)
    return False


def object_messages(obj, status=200):
    """Ray Serve's conversion: None/bytes -> text/plain, str -> text/plain; charset=utf-8,
    anything else -> JSON."""
    if obj is None:
        body, ctype = b"", b"text/plain"
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        body, ctype = bytes(obj), b"text/plain"
    elif isinstance(obj, str):
        body, ctype = obj.encode(), b"text/plain; charset=utf-8"
    else:
        body, ctype = _json_bytes(obj), b"application/json"
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", ctype)]},
            {"type": "http.response.body", "body": body}]


def plain_response(obj):
    """(status, headers, body parts) of a return value that needs no event loop (text, bytes,
    None, JSON-able values), or None for coroutines, generators and Starlette responses."""
    if obj is None or isinstance(obj, (str, bytes, bytearray, memoryview)):
        pass
    elif inspect.isawaitable(obj) or inspect.isgenerator(obj) or inspect.isasyncgen(obj) or \
            (callable(obj) and hasattr(obj, "status_code") and hasattr(obj, "headers")):
        return None
    start, body = object_messages(obj)
    return start["status"], start["headers"], ([body["body"]] if body["body"] else [])


class Collector:
    """ASGI ``send`` that keeps status, headers and body parts until the proxy takes them."""

    def __init__(self):
        self.status = None
        self.headers = []
        self.parts = collections.deque()
        self.done = False
        self.cancelled = False
        self._changed = asyncio.Event()
        self._drained = asyncio.Event()

    async def send(self, msg):
        if self.cancelled:
            raise OSError("the HTTP client went away")
        kind = msg["type"]
        if kind == "http.response.start":
            self.status = int(msg["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in msg.get("headers", ())]
        elif kind == "http.response.body":
            if self.status is None:
                raise RuntimeError("ASGI app sent a body before http.response.start")
            body = msg.get("body", b"")
            if body:
                self.parts.append(bytes(body))
            if not msg.get("more_body", False):
                self.done = True
            while len(self.parts) > _STREAM_AHEAD and not self.cancelled:
                self._drained.clear()
                self._changed.set()
                await self._drained.wait()
        self._changed.set()

    def finish(self, error=None):
        """The app returned (or raised): end the response."""
        if self.status is None:
            if error is None:
                error = "the app returned without sending a response"
            self.status, self.headers = 500, [(b"content-type", b"text/plain; charset=utf-8")]
            self.parts.append(error.encode() if isinstance(error, str) else error)
        self.done = True
        self._changed.set()

    async def wait(self):
        """Until there is something to hand on: the status and a body part, or the end."""
        while not (self.status is not None and (self.parts or self.done)):
            self._changed.clear()
            await self._changed.wait()

    def take(self):
        parts = list(self.parts)
        self.parts.clear()
        self._drained.set()
        return parts

    def cancel(self):
        self.cancelled = True
        self.parts.clear()
        self._drained.set()


def error_text(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


async def send_result(result, scope, receive, send):
    """Sends a user's return value as Ray Serve does: Starlette responses are honoured,
    generators become a chunked StreamingResponse, other values text or JSON."""
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        from starlette.responses import StreamingResponse
        result = StreamingResponse(result, media_type="text/plain")
    if callable(result) and hasattr(result, "status_code") and hasattr(result, "headers") \
            and inspect.iscoroutinefunction(getattr(result, "__call__", None)):
        await result(scope, receive, send)    # a starlette/fastapi Response
        return
    for m in object_messages(result):
        await send(m)


# ------------------------------------------------------------------ FastAPI ingress

def _current_servable():
    from ..context import _replica_ctx
    ctx = _replica_ctx.get()
    if ctx is None:
        raise RuntimeError("a class-based FastAPI route ran outside a Serve replica")
    return ctx.servable_object


def bind_class_routes(app, cls):
    """Class methods registered as routes (``@app.get(...)`` inside the class body) get their
    ``self`` from the replica serving the request, as in Ray Serve. Done once per app object."""
    if getattr(app, "_mpiray_cbv", None) is cls:
        return
    from fastapi import APIRouter, Depends
    from fastapi.routing import APIRoute
    owners = tuple(b.__qualname__ + "." for b in cls.__mro__ if b is not object)
    mine = [r for r in app.router.routes if isinstance(r, APIRoute) and
            getattr(r.endpoint, "__qualname__", "").startswith(owners)]
    if mine:
        params = [p for p in inspect.signature(APIRouter.add_api_route).parameters
                  if p not in ("self", "path", "endpoint", "route_class_override")]
        new = APIRouter()
        for route in mine:
            app.router.routes.remove(route)
            fn = route.endpoint
            sig = inspect.signature(fn)
            ps = list(sig.parameters.values())
            first = ps[0].replace(default=Depends(_current_servable))
            rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                    if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) else p
                    for p in ps[1:]]
            fn.__signature__ = sig.replace(parameters=[first] + rest)
            kwargs = {p: getattr(route, p) for p in params if hasattr(route, p)}
            new.add_api_route(route.path, fn, **kwargs)
        app.include_router(new)
    app._mpiray_cbv = cls
