"""The HTTP side of Serve in the driver process: the native proxy (``mpiray._serve_proxy``,
libs/serve) and the Python side that hands its requests to replicas.

Why the driver: the proxy's requests become actor calls that go straight from the calling
process to the replica's worker, so the fewest hops are had where the proxy and the router
share a process; the driver (rank 0, the head) lives as long as the session, while the
controller is an actor on some worker that could be placed anywhere.

The request path has no thread per request: a router thread takes every request queued in the
proxy at once (``next_batch``, one GIL acquisition per burst), picks a replica for each (power
of two choices on requests in flight, the handles' router), submits ``handle_http`` and then
waits for the replies of its whole batch (``waiter.wait_step``: one ``ray.wait`` and one
``ray.get`` for all that are ready) and answers the clients; while replies are outstanding it
looks for new requests at every reply and at least every 2 ms (they join the batch). So a
request costs no hand-off between Python threads and a burst of replies one wake-up. (With
several router threads, each waits for replies of its own batch while another takes requests;
measured on 2 cores, one thread did best: ``_ROUTER_THREADS``.) Only what may block goes to a
thread of its own: streams, admin requests and requests that wait for a replica to start. The
proxy's I/O threads never take the GIL."""

import json
import os
import secrets
import tempfile
import threading
import time

import mpiray as ray
from mpiray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from ..exceptions import BackPressureError, DeploymentUnavailableError, RayServeException
from .controller import CONTROLLER_NAME
from .router import get_router
from .waiter import add_to_batch, get_waiter, wait_step
from ..handle import new_request_id

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
_ROUTE_POLL_S = 1.0
_BATCH = 256          # requests taken from the proxy per hand-off at most
_ROUTER_THREADS = 1    # takes requests, waits for replies (more measured slower: smaller batches)
_POLL_S = 0.002       # a router thread with replies to wait for, while no other takes requests
_MAX_ATTEMPTS = 3
_IDEMPOTENT = ("GET", "HEAD", "OPTIONS")
_TEXT = [(b"content-type", b"text/plain; charset=utf-8")]

HTTP_OPTION_NAMES = {"host", "port", "request_timeout_s", "keep_alive_timeout_s",
                     "max_body_bytes", "header_timeout_s", "body_timeout_s", "auth_token",
                     "threads"}


def check_http_options(opts):
    """Validates ``http_options``; returns a plain dict (also accepts an object with
    attributes, e.g. Ray's HTTPOptions)."""
    if opts is None:
        return {}
    if not isinstance(opts, dict):
        opts = {k: getattr(opts, k) for k in HTTP_OPTION_NAMES if hasattr(opts, k)}
    unknown = set(opts) - HTTP_OPTION_NAMES
    if unknown:
        raise ValueError(f"http_options: unknown option(s) {sorted(unknown)}; known: "
                         f"{sorted(HTTP_OPTION_NAMES)}")
    out = dict(opts)
    if "port" in out and (isinstance(out["port"], bool) or not isinstance(out["port"], int)
                          or not 0 <= out["port"] <= 65535):
        raise ValueError(f"http_options['port'] must be an integer 0..65535, got {out['port']!r}")
    if "host" in out and (not isinstance(out["host"], str) or not out["host"]):
        raise ValueError(f"http_options['host'] must be an IP address string, got {out['host']!r}")
    for k in ("request_timeout_s", "keep_alive_timeout_s", "header_timeout_s", "body_timeout_s"):
        v = out.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise ValueError(f"http_options['{k}'] must be a positive number, got {v!r}")
    if out.get("auth_token") is not None and (not isinstance(out["auth_token"], str) or
                                              len(out["auth_token"]) < 16):
        raise ValueError("http_options['auth_token'] must be a string of at least 16 characters")
    return out


def state_dir():
    """Where a running proxy leaves its address and admin token for the CLI (0700, per user)."""
    d = os.environ.get("MPIRAY_SERVE_STATE_DIR") or os.path.join(
        tempfile.gettempdir(), f"mpiray-serve-{os.getuid()}")
    os.makedirs(d, mode=0o700, exist_ok=True)
    st = os.stat(d)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{d} must be a directory of this user with mode 0700 (it holds "
                              f"the admin tokens of running services)")
    return d


def state_file(port):
    return os.path.join(state_dir(), f"{port}.json")


class HttpProxy:
    """The proxy of this process (one per driver)."""

    def __init__(self, http_options):
        from mpiray import _serve_proxy
        o = dict(http_options)
        self.host = o.get("host", DEFAULT_HOST)
        self.request_timeout_s = o.get("request_timeout_s")
        self.token = o.get("auth_token")
        if self.host not in ("127.0.0.1", "::1", "localhost") and self.token is None and \
                os.environ.get("MPIRAY_SERVE_TOKEN"):
            self.token = os.environ["MPIRAY_SERVE_TOKEN"]
        host = "127.0.0.1" if self.host == "localhost" else self.host
        self.admin_token = secrets.token_hex(16)
        self._native = _serve_proxy.Proxy(
            host=host, port=o.get("port", DEFAULT_PORT), threads=o.get("threads", 2),
            max_body_bytes=o.get("max_body_bytes", 64 << 20),
            header_timeout_s=o.get("header_timeout_s", 10.0),
            body_timeout_s=o.get("body_timeout_s", 30.0),
            keep_alive_timeout_s=o.get("keep_alive_timeout_s", 90.0),
            token=self.token or "", admin_token=self.admin_token)
        self.port = self._native.port
        self.options = dict(o, host=self.host, port=self.port)
        self._ingress = {}         # app -> ingress deployment
        self._routes = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.shutdown_callback = None   # set by `mpiray serve run`: /-/serve/shutdown calls it
        self.deploy_callback = None     # set by `mpiray serve run`: /-/serve/deploy calls it
        self._write_state()
        self._routers = [threading.Thread(target=self._router_loop, name=f"serve-http-{i}",
                                          daemon=True) for i in range(_ROUTER_THREADS)]
        for t in self._routers:
            t.start()
        self._poller = threading.Thread(target=self._poll_routes, name="serve-routes",
                                        daemon=True)
        self._poller.start()

    # ------------------------------------------------------------------ life

    def _write_state(self):
        path = state_file(self.port)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"host": self.host, "port": self.port, "pid": os.getpid(),
                       "admin_token": self.admin_token,
                       "auth": self.token is not None}, f)
        os.replace(tmp, path)
        self._state_path = path

    def stop(self):
        if self._stop.is_set():
            return
        self._stop.set()
        self._native.stop()
        deadline = time.monotonic() + 5
        for t in self._routers:
            if t is not threading.current_thread():
                t.join(timeout=max(0.0, deadline - time.monotonic()))
        try:
            with open(self._state_path) as f:
                mine = json.load(f).get("pid") == os.getpid()
            if mine:
                os.unlink(self._state_path)
        except OSError:
            pass

    def stats(self):
        return self._native.stats()

    # ------------------------------------------------------------------ routes

    def update_routes(self, table=None):
        """Re-reads the applications' route prefixes from the controller (or uses ``table``:
        {prefix: (app, ingress)})."""
        if table is None:
            try:
                controller = ray.get_actor(CONTROLLER_NAME)
            except ValueError:
                table = {}
            else:
                table = ray.get(controller.get_routes.remote(), timeout=30)
        routes = sorted((p, a) for p, (a, _) in table.items())
        with self._lock:
            self._ingress = {a: d for a, d in table.values()}
            if routes != self._routes:
                self._routes = routes
                self._native.set_routes(routes)

    def _poll_routes(self):
        while not self._stop.wait(_ROUTE_POLL_S):
            try:
                if ray.is_initialized():
                    self.update_routes()
            except Exception:  # noqa: BLE001 - controller busy or gone: keep the last table
                pass

    # ------------------------------------------------------------------ requests

    def _router_loop(self):
        """A router thread. With nothing in flight it waits for requests; with requests in
        flight it waits for their replies, and, when no other router thread is waiting for
        requests, looks for new ones every 2 ms (taken into its own batch)."""
        native = self._native
        batch = {}
        while not self._stop.is_set():
            reqs = native.next_batch(_BATCH, 0 if batch else 0.5)
            for req in reqs:
                try:
                    self._dispatch(req, batch)
                except Exception as e:  # noqa: BLE001 - never lose a request silently
                    native.respond(req[0], 500, _TEXT, f"Internal proxy error: {e}\n".encode())
            if batch:
                wait_step(batch, None if native.waiting() > 0 else _POLL_S)

    def _dispatch(self, req, batch):
        rid, app, prefix, method, path, query, headers, body, client, version, admin = req
        if admin:   # may block (status, deploy): a thread of its own
            threading.Thread(target=self._admin, args=(rid, method, path, body),
                             daemon=True).start()
            return
        ingress = self._ingress.get(app)
        if ingress is None:
            return self._native.respond(rid, 503, _TEXT, f"Application '{app}' is not "
                                        f"running.\n".encode())
        model_id = ""
        for k, v in headers:
            if k == b"serve_multiplexed_model_id":
                model_id = v.decode("latin-1")
        call = _HttpCall(self, rid, app, ingress, method, path, model_id,
                         (method, path, query, headers, body, client, version, prefix))
        call.batch = batch
        self._submit(call)

    def _submit(self, call, block=False):
        """Sends ``call`` to a replica (again, after a replica died) and adds it to its router
        thread's batch. From router threads ``block`` is False: with no replica listed, a
        thread of its own waits for one (then the shared ref waiter waits for the reply)."""
        call.attempts += 1
        router = get_router(call.app, call.ingress)
        try:
            slot = router.choose(call.model_id, block=block)
        except (BackPressureError, DeploymentUnavailableError, RayServeException) as e:
            return self._native.respond(call.rid, 503, _TEXT, f"{e}\n".encode())
        if slot is None:
            call.attempts -= 1
            call.batch = None
            threading.Thread(target=self._submit, args=(call, True), daemon=True).start()
            return
        call.router, call.slot = router, slot
        call.ref = slot.actor.handle_http.remote(call.meta, call.payload)
        router.track(slot, call.ref)
        if call.batch is not None:
            add_to_batch(call.batch, call.ref, call.done, self.request_timeout_s)
        else:
            get_waiter().add(call.ref, call.done, self.request_timeout_s)

    def _answer(self, call, out, error):
        """The replica's reply (on a waiter thread: nothing here blocks)."""
        native = self._native
        call.router.release(call.ref)
        if error is None:
            status, rheaders, parts, done = out
            if done:
                native.respond(call.rid, status, rheaders, b"".join(parts) if len(parts) != 1
                               else parts[0])
            else:
                threading.Thread(target=self._stream, daemon=True, args=(
                    call.rid, call.meta["request_id"], call.slot, call.router, status,
                    rheaders, parts)).start()
            return
        method, path = call.method, call.path
        if isinstance(error, GetTimeoutError):
            self._timed_out(call.app, call.ingress, call.slot, call.ref)
            return native.respond(call.rid, 408, _TEXT, (
                f"Request {call.meta['request_id']} timed out after "
                f"{self.request_timeout_s}s.\n").encode())
        if isinstance(error, RayActorError) and not isinstance(error, RayTaskError):
            call.router.mark_dead(call.slot)
            if method in _IDEMPOTENT and call.attempts < _MAX_ATTEMPTS:
                return self._submit(call)    # safe to send again: another replica
            why = ("it is not idempotent, so it was not retried" if method not in
                   _IDEMPOTENT else f"{call.attempts} replicas died while handling it")
            return native.respond(call.rid, 503, _TEXT, (
                f"Service unavailable: the replica handling {method} {path} died "
                f"({why}). Request id {call.meta['request_id']}.\n").encode())
        native.respond(call.rid, 500, _TEXT, f"{error}\n".encode())

    def _stream(self, rid, request_id, slot, router, status, headers, parts):
        native = self._native
        if not native.start_stream(rid, status, headers):
            slot.actor.http_cancel.remote(request_id)
            return
        while True:
            for p in parts:
                if not native.send_chunk(rid, p):
                    slot.actor.http_cancel.remote(request_id)
                    return
            ref = slot.actor.http_next.remote(request_id)
            router.track(slot, ref)
            try:
                parts, done = ray.get(ref, timeout=self.request_timeout_s)
            except Exception:  # noqa: BLE001 - replica died or timed out mid-stream
                router.release(ref)
                try:
                    slot.actor.http_cancel.remote(request_id)
                except Exception:  # noqa: BLE001 - the replica is gone
                    pass
                # The client must see an error, not a short body that looks complete: the
                # connection is reset after what was sent (no terminating chunk).
                native.abort_stream(rid)
                return
            router.release(ref)
            if done:
                for p in parts:
                    native.send_chunk(rid, p)
                native.end_stream(rid)
                return

    def _timed_out(self, app, dep, slot, ref):
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001
            pass
        try:  # the controller checks the replica and replaces it when it does not answer
            ray.get_actor(CONTROLLER_NAME).report_dead.remote(app, dep, slot.tag)
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ admin (CLI)

    def _admin(self, rid, method, path, body):
        native = self._native
        js = [(b"content-type", b"application/json")]
        try:
            if path == "/-/serve/status" and method == "GET":
                from ..api import status
                st = status()
                out = {"proxy": {"host": self.host, "port": self.port, "pid": os.getpid()},
                       "applications": {n: _app_dict(a) for n, a in st.applications.items()}}
                return native.respond(rid, 200, js, json.dumps(out).encode())
            if path == "/-/serve/shutdown" and method == "POST":
                cb = self.shutdown_callback
                if cb is None:
                    return native.respond(rid, 409, _TEXT, b"This service was not started by "
                                          b"`mpiray serve run`: stop its driver instead.\n")
                native.respond(rid, 200, js, b'{"shutdown": true}')
                threading.Thread(target=cb, daemon=True).start()
                return
            if path == "/-/serve/deploy" and method == "POST":
                cb = self.deploy_callback
                if cb is None:
                    return native.respond(rid, 409, _TEXT, b"This service was not started by "
                                          b"`mpiray serve run`: it takes no config.\n")
                names = cb(json.loads(body or b"{}"))
                return native.respond(rid, 200, js, json.dumps({"deployed": names}).encode())
            return native.respond(rid, 404, _TEXT, f"No admin endpoint {method} {path}\n".encode())
        except Exception as e:  # noqa: BLE001
            return native.respond(rid, 500, _TEXT, f"{type(e).__name__}: {e}\n".encode())


class _HttpCall:
    """One HTTP request on its way through a replica (the waiter's callback is ``done``)."""

    __slots__ = ("proxy", "rid", "app", "ingress", "method", "path", "model_id", "payload",
                 "meta", "attempts", "router", "slot", "ref", "batch")

    def __init__(self, proxy, rid, app, ingress, method, path, model_id, payload):
        self.proxy, self.rid, self.app, self.ingress = proxy, rid, app, ingress
        self.method, self.path, self.model_id, self.payload = method, path, model_id, payload
        self.meta = {"request_id": new_request_id(), "method": "__call__",
                     "multiplexed_model_id": model_id}
        self.attempts = 0
        self.router = self.slot = self.ref = self.batch = None

    def done(self, out, error):
        self.proxy._answer(self, out, error)


def _app_dict(a):
    return {"status": a.status, "message": a.message, "route_prefix": a.route_prefix,
            "deployments": {n: {"status": d.status, "message": d.message,
                                "replica_states": d.replica_states}
                            for n, d in a.deployments.items()}}


_proxy = None
_proxy_lock = threading.Lock()
_hooks_installed = False


def get_proxy():
    return _proxy


def start_proxy(http_options):
    """Starts this driver's proxy (once); a second call with other options raises."""
    global _proxy
    opts = check_http_options(http_options)
    with _proxy_lock:
        if _proxy is not None:
            want = {k: v for k, v in opts.items() if k in ("host", "port")}
            have = {k: _proxy.options.get(k) for k in want}
            if want and want != have and not (want.get("port") == 0 and len(want) == 1):
                raise RayServeException(
                    f"The HTTP proxy already runs on {_proxy.host}:{_proxy.port}; it cannot "
                    f"move to {want} (serve.shutdown() first)")
            return _proxy
        _proxy = HttpProxy(opts)
        global _hooks_installed
        if not _hooks_installed:
            import atexit
            atexit.register(stop_proxy)
            _hooks_installed = True
        # SIGTERM (Slurm's time limit, `kill`): the runtime stops the process after its
        # checkpoint callbacks, without atexit; the proxy closes and its state file goes.
        # (Per session; stop_proxy does nothing when no proxy runs.)
        ray.register_checkpoint_callback(stop_proxy)
        return _proxy


def stop_proxy():
    global _proxy
    with _proxy_lock:
        p, _proxy = _proxy, None
    if p is not None:
        p.stop()
