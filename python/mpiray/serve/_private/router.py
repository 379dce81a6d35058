"""Routing of handle requests to replicas (one router per deployment and process).

Power of two choices: two random live replicas, the one with fewer requests in flight from
this process wins. A request for a multiplexed model goes to the replica that last served that
model while it has room. A request counts as in flight from dispatch until its result was taken
or seen ready. The replica itself never runs more than ``max_ongoing_requests`` at once; when
every replica is at that count, further requests wait in the replicas' queues, up to
``max_queued_requests`` of them from this process (then ``BackPressureError``)."""

import random
import threading
import time

import mpiray as ray

from ..exceptions import DeploymentUnavailableError, RayServeException, BackPressureError
from .controller import CONTROLLER_NAME

_REFRESH_S = 2.0          # replica list re-read at most this often while routing
_WAIT_FOR_REPLICA_S = 30.0


class _ReplicaSlot:
    __slots__ = ("tag", "actor", "inflight")

    def __init__(self, tag, actor):
        self.tag, self.actor, self.inflight = tag, actor, 0


def get_controller():
    try:
        return ray.get_actor(CONTROLLER_NAME)
    except ValueError:
        raise RayServeException("Serve is not running: call serve.run(...) first") from None


class Router:
    def __init__(self, app_name, deployment_name):
        self.app, self.dep = app_name, deployment_name
        self.lock = threading.Lock()
        self.replicas = []
        self.max_ongoing, self.max_queued = 5, -1
        self.refreshed_at = 0.0
        self.version = None
        self.models = {}          # model id -> replica tag that last loaded it
        self.pending = {}         # ObjectRef -> (slot, request id)
        self.dead = set()         # tags of replicas seen dead (the controller may list them
                                  # until it noticed; never route to them again)
        self._ctrl = None         # the controller's handle (looked up once)
        self._refreshing = False

    def _controller(self):
        c = self._ctrl
        if c is None:
            c = self._ctrl = get_controller()
        return c

    def refresh(self):
        try:
            ref = self._controller().get_replicas.remote(self.app, self.dep)
        except Exception:  # noqa: BLE001 - a cached handle of a controller that is gone
            self._ctrl = None
            ref = self._controller().get_replicas.remote(self.app, self.dep)
        self._apply(ray.get(ref, timeout=30))

    def _refresh_soon(self):
        """Re-reads the replica list in the background (the current list keeps serving)."""
        with self.lock:
            if self._refreshing:
                return
            self._refreshing = True
            self.refreshed_at = time.monotonic()

        def done(info, error):
            self._refreshing = False
            if error is None:
                try:
                    self._apply(info)
                except RayServeException:  # the app is gone: the next choice asks again
                    with self.lock:        # (and raises the controller's words)
                        self.replicas = []
                    self.refreshed_at = 0.0
            else:
                self._ctrl = None
                self.refreshed_at = 0.0
        try:
            ref = self._controller().get_replicas.remote(self.app, self.dep)
        except Exception:  # noqa: BLE001 - no controller: the next blocking refresh says so
            self._refreshing = False
            self._ctrl = None
            return
        from .waiter import get_waiter
        get_waiter().add(ref, done, timeout_s=30)

    def _apply(self, info):
        if "error" in info:
            raise RayServeException(info["error"])
        with self.lock:
            old = {s.tag: s for s in self.replicas}
            listed = {tag for tag, _ in info["replicas"]}
            self.dead &= listed   # forget replicas the controller dropped
            self.replicas = [old.get(tag) or _ReplicaSlot(tag, actor)
                             for tag, actor in info["replicas"] if tag not in self.dead]
            self.max_ongoing = info["max_ongoing_requests"]
            self.max_queued = info["max_queued_requests"]
            self.version = info["version"]
            self.refreshed_at = time.monotonic()
            self.app_status = info["app_status"]

    def _sweep(self):
        """Releases requests whose results are ready (nobody may have fetched them yet)."""
        with self.lock:
            refs = list(self.pending)
        if not refs:
            return
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in ready:
            self.release(ref)

    def choose(self, model_id="", block=True):
        """A replica for the next request. The replica list is re-read in the background while
        there are replicas; with none listed, ``block`` waits for one (up to 30 s), else None
        comes back at once."""
        deadline = time.monotonic() + _WAIT_FOR_REPLICA_S
        while True:
            live = self.replicas
            if live:
                if time.monotonic() - self.refreshed_at > _REFRESH_S:
                    self._refresh_soon()
                self.demand_sent = False
                break
            if not block:
                return None
            self.refresh()
            if not self.replicas:
                self.refreshed_at = 0.0
            with self.lock:
                live = list(self.replicas)
            if live:
                self.demand_sent = False
                break
            if getattr(self, "app_status", None) == "DEPLOY_FAILED":
                raise DeploymentUnavailableError(
                    f"Application '{self.app}' failed to deploy (DEPLOY_FAILED); its "
                    f"deployment '{self.dep}' has no replica. See serve.status() for the error")
            if not getattr(self, "demand_sent", False):
                self.demand_sent = True   # scaled to zero: ask for a replica
                try:
                    self._controller().report_demand.remote(self.app, self.dep)
                except Exception:  # noqa: BLE001
                    pass
            if time.monotonic() > deadline:
                raise DeploymentUnavailableError(
                    f"Deployment '{self.dep}' of application '{self.app}' has no running "
                    f"replica (waited {_WAIT_FOR_REPLICA_S:.0f}s); see serve.status()")
            time.sleep(0.1)
        for attempt in range(2):
            with self.lock:
                if model_id and model_id in self.models:
                    slot = next((s for s in live if s.tag == self.models[model_id]), None)
                    if slot is not None and slot.inflight < self.max_ongoing:
                        return slot
                pick = random.sample(live, 2) if len(live) >= 2 else live
                slot = min(pick, key=lambda s: s.inflight)
                if slot.inflight < self.max_ongoing:
                    if model_id:
                        self.models[model_id] = slot.tag
                    return slot
            if attempt == 0:
                self._sweep()
        with self.lock:
            slot = min(live, key=lambda s: s.inflight)
            queued = sum(max(0, s.inflight - self.max_ongoing + 1) for s in live)
            if self.max_queued != -1 and queued > self.max_queued:
                raise BackPressureError(num_queued_requests=queued - 1,
                                        max_queued_requests=self.max_queued)
            if model_id:
                self.models[model_id] = slot.tag
            return slot

    def track(self, slot, ref):
        with self.lock:
            slot.inflight += 1
            self.pending[ref] = slot
            many = len(self.pending) > 2 * self.max_ongoing * max(1, len(self.replicas)) + 64
        if many:  # results nobody fetched (fire-and-forget calls): let their refs go
            self._sweep()

    def release(self, ref):
        with self.lock:
            slot = self.pending.pop(ref, None)
            if slot is not None:
                slot.inflight -= 1

    def mark_dead(self, slot):
        with self.lock:
            self.dead.add(slot.tag)
            self.replicas = [s for s in self.replicas if s is not slot]
            for ref in [r for r, s in self.pending.items() if s is slot]:
                del self.pending[ref]
            self.models = {m: t for m, t in self.models.items() if t != slot.tag}
            self.refreshed_at = 0.0  # re-read before the next choice
        try:
            self._controller().report_dead.remote(self.app, self.dep, slot.tag)
        except Exception:  # noqa: BLE001 - the controller's health checks will find it
            pass


_routers = {}
_routers_lock = threading.Lock()


def get_router(app_name, deployment_name):
    key = (app_name, deployment_name)
    with _routers_lock:
        r = _routers.get(key)
        if r is None:
            r = _routers[key] = Router(app_name, deployment_name)
        return r


def clear_routers(app_name=None):
    with _routers_lock:
        for key in [k for k in _routers if app_name is None or k[0] == app_name]:
            del _routers[key]
