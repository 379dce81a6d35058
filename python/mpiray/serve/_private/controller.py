"""The Serve controller: a named, detached async actor that owns the applications.

It starts replicas (mpiray actors, ``max_restarts=0``: the controller restarts them), waits
until every replica of every deployment has built its user object before an application is
RUNNING (a constructor that raises makes it DEPLOY_FAILED with the traceback, and the
replicas already started are stopped), checks replica health every
``health_check_period_s`` and replaces replicas that died or failed their check. A redeploy
with the same code and arguments only reconfigures (``user_config``) and rescales the live
replicas; different code starts new replicas and stops the old ones after they drained."""

import asyncio
import time
import traceback
import uuid

import mpiray as ray

from .autoscaler import POLL_S, AutoscalingPolicy
from .replica import ServeReplica

CONTROLLER_NAME = "SERVE_CONTROLLER_ACTOR"
_HEALTH_TICK_S = 0.1


class _Replica:
    def __init__(self, tag, actor):
        self.tag, self.actor = tag, actor
        self.state = "STARTING"
        self.last_check = time.monotonic()
        self.check_ref = None
        self.check_started = 0.0


class _Deployment:
    def __init__(self, app, spec):
        self.app, self.spec = app, spec
        self.name = spec["name"]
        self.replicas = []
        self.status = "UPDATING"
        self.message = ""
        self.version = 0

    @property
    def cfg(self):
        return self.spec["config"]


class _App:
    def __init__(self, name, route_prefix, ingress):
        self.name, self.route_prefix, self.ingress = name, route_prefix, ingress
        self.deployments = {}
        self.status = "DEPLOYING"
        self.message = ""
        self.deployed_at = time.time()


class ServeController:
    def __init__(self):
        self._apps = {}
        self._health_task = None
        self._lock = None

    def _ensure_background(self):
        if self._lock is None:
            self._lock = asyncio.Lock()
        if self._health_task is None:
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    # ------------------------------------------------------------------ replicas

    def _start_replica(self, dep, rank=0):
        cfg = dep.cfg
        tag = uuid.uuid4().hex[:8]
        opts = dict(cfg["ray_actor_options"])
        actor_opts = {"num_cpus": opts.pop("num_cpus", 1), "lifetime": "detached",
                      "max_restarts": 0,
                      "max_concurrency": cfg["max_ongoing_requests"] + max(16, cfg["max_ongoing_requests"]),
                      "name": f"SERVE_REPLICA::{dep.app}#{dep.name}#{tag}"}
        for k in ("num_gpus", "memory", "resources", "runtime_env"):
            if k in opts:
                actor_opts[k] = opts[k]
        start_error = None
        try:
            actor = ray.remote(ServeReplica).options(**actor_opts).remote(
                dep.app, dep.name, tag, dep.spec["def_bytes"], dep.spec["args_bytes"],
                dep.spec["is_function"], cfg["max_ongoing_requests"], cfg.get("user_config"),
                rank, cfg["num_replicas"])
        except Exception as e:  # noqa: BLE001 - infeasible resources, bad runtime_env, ...
            actor, start_error = None, e
        rep = _Replica(tag, actor)
        rep.start_error = start_error
        if start_error is not None:
            rep.state = "DEAD"
        rep.resources = {k: v for k, v in actor_opts.items()
                         if k in ("num_cpus", "num_gpus", "memory", "resources")}
        return rep

    async def _init_replicas(self, replicas):
        """Waits for the replicas' constructors; returns the first failure's message or None."""
        refs = [r.actor.initialize.remote() if r.actor is not None else None for r in replicas]
        error = None
        for r, ref in zip(replicas, refs):
            try:
                if ref is None:
                    raise r.start_error
                tb = await ref
            except Exception as e:  # noqa: BLE001 - the replica died or could not be placed
                r.state = "DEAD"
                tb = (f"replica {r.tag} could not be started: {e} (it asks for "
                      f"{r.resources})")
            else:
                if tb is not None:
                    tb = f"A replica's constructor raised:\n{tb}"
            if tb is None:
                r.state = "RUNNING"
                r.last_check = time.monotonic()
            elif error is None:
                error = tb
        return error

    def _stop(self, replicas):
        for r in replicas:
            if r.state == "DEAD":  # never started: nothing to kill
                continue
            r.state = "STOPPING"
            try:
                ray.kill(r.actor)
            except Exception:  # noqa: BLE001 - already dead
                pass

    async def _drain_and_stop(self, replicas, timeout_s):
        refs = []
        for r in replicas:
            r.state = "STOPPING"
            refs.append(r.actor.prepare_for_shutdown.remote(timeout_s))
        for ref in refs:
            try:
                await asyncio.wait_for(asyncio.ensure_future(_await(ref)), timeout_s + 5)
            except Exception:  # noqa: BLE001 - dead or stuck: killed below either way
                pass
        self._stop(replicas)

    # ------------------------------------------------------------------ applications

    async def deploy_app(self, name, route_prefix, specs, ingress):
        """Deploys (or updates) an application; returns its status dict when it is RUNNING or
        DEPLOY_FAILED."""
        self._ensure_background()
        async with self._lock:
            for other in self._apps.values():
                if other.name != name and route_prefix is not None and \
                        other.route_prefix == route_prefix:
                    raise ValueError(f"route_prefix {route_prefix!r} is already used by "
                                     f"application {other.name!r}")
            old = self._apps.get(name)
            app = _App(name, route_prefix, ingress)
            to_drain, started = [], []
            error = None
            for spec in specs:  # dependencies first
                dep = _Deployment(name, spec)
                prev = old.deployments.get(spec["name"]) if old else None
                want = spec["config"]["num_replicas"]
                if prev is not None and prev.spec["code_hash"] == spec["code_hash"] and \
                        prev.status != "DEPLOY_FAILED":
                    live = [r for r in prev.replicas if r.state == "RUNNING"]
                    ac = spec["config"].get("autoscaling_config")
                    if ac:   # an autoscaled deployment keeps the count it had reached
                        want = max(ac["min_replicas"], min(ac["max_replicas"], len(live)))
                        spec["config"]["num_replicas"] = want
                        dep.policy = getattr(prev, "policy", None)
                    keep, extra = live[:want], live[want:]
                    to_drain += extra
                    dep.replicas = keep
                    dep.version = prev.version + 1
                    new_cfg, old_cfg = spec["config"], prev.cfg
                    if new_cfg.get("user_config") != old_cfg.get("user_config") and keep:
                        try:
                            await asyncio.gather(*[_await(r.actor.reconfigure.remote(
                                new_cfg.get("user_config"))) for r in keep])
                        except Exception as e:  # noqa: BLE001
                            error = f"reconfigure of deployment '{dep.name}' failed: {e}"
                    fresh = [self._start_replica(dep, len(keep) + i)
                             for i in range(want - len(keep))]
                else:
                    if prev is not None:
                        to_drain += [r for r in prev.replicas if r.state != "STOPPING"]
                    fresh = [self._start_replica(dep, i) for i in range(want)]
                started += fresh
                dep.replicas += fresh
                app.deployments[dep.name] = dep
                if error is None:
                    error = await self._init_replicas(fresh)
                    if error is not None:
                        dep.status, dep.message = "DEPLOY_FAILED", error
                if error is not None:
                    break
                dep.status = "HEALTHY"
            if error is not None:
                self._stop(started)
                for d in app.deployments.values():
                    d.replicas = [r for r in d.replicas if r not in started]
                    if d.status != "DEPLOY_FAILED":
                        d.status = "UPDATING" if old else "UNHEALTHY"
                app.status = "DEPLOY_FAILED"
                app.message = f"Deploying application '{name}' failed:\n{error}"
                if old is not None:
                    # Keep serving with the previous version's replicas that were not reused.
                    for dn, prev in old.deployments.items():
                        d = app.deployments.get(dn)
                        if d is None:
                            app.deployments[dn] = prev
                        elif not d.replicas:
                            d.replicas = [r for r in prev.replicas if r.state == "RUNNING"]
                self._apps[name] = app
                return self._app_status(app)
            if old is not None:
                # every replica of the previous version that the new one does not use, also
                # replacements the health checks started while this update ran
                kept = {id(r) for d in app.deployments.values() for r in d.replicas}
                drained = {id(r) for r in to_drain}
                to_drain += [r for d in old.deployments.values() for r in d.replicas
                             if id(r) not in kept and id(r) not in drained
                             and r.state in ("RUNNING", "STARTING")]
            app.status = "RUNNING"
            self._apps[name] = app
        if to_drain:
            grace = max((d.cfg["graceful_shutdown_timeout_s"] for d in app.deployments.values()),
                        default=20.0)
            asyncio.get_running_loop().create_task(self._drain_and_stop(to_drain, grace))
        return self._app_status(app)

    async def delete_app(self, name):
        self._ensure_background()
        async with self._lock:
            app = self._apps.pop(name, None)
        if app is None:
            return False
        app.status = "DELETING"
        reps = [r for d in app.deployments.values() for r in d.replicas]
        grace = max((d.cfg["graceful_shutdown_timeout_s"] for d in app.deployments.values()),
                    default=20.0)
        await self._drain_and_stop(reps, grace)
        return True

    async def shutdown(self):
        for name in list(self._apps):
            await self.delete_app(name)
        if self._health_task is not None:
            # Dropped, not only cancelled: the task refers to this instance, so keeping it
            # would leave a cycle that only the garbage collector frees, at a random moment
            # in the worker (a dead async actor freed by the collector while the worker starts
            # another async actor's event loop can deadlock the worker: a core issue).
            self._health_task.cancel()
            self._health_task = None
        return True

    # ------------------------------------------------------------------ queries

    async def get_replicas(self, app_name, dep_name):
        app = self._apps.get(app_name)
        if app is None:
            return {"error": f"Application '{app_name}' does not exist. Applications: "
                             f"{sorted(self._apps)}"}
        if dep_name is None:
            dep_name = app.ingress
        dep = app.deployments.get(dep_name)
        if dep is None:
            return {"error": f"Deployment '{dep_name}' does not exist in application "
                             f"'{app_name}'. Deployments: {sorted(app.deployments)}"}
        return {"deployment": dep.name, "version": dep.version,
                "replicas": [(r.tag, r.actor) for r in dep.replicas if r.state == "RUNNING"],
                "max_ongoing_requests": dep.cfg["max_ongoing_requests"],
                "max_queued_requests": dep.cfg["max_queued_requests"],
                "app_status": app.status}

    async def get_routes(self):
        """{route_prefix: (app, ingress deployment)} of the applications reachable over HTTP."""
        return {a.route_prefix: (a.name, a.ingress) for a in self._apps.values()
                if a.route_prefix is not None}

    async def get_ingress(self, app_name):
        app = self._apps.get(app_name)
        return None if app is None else app.ingress

    def _app_status(self, app):
        deps = {}
        for d in app.deployments.values():
            states = {}
            for r in d.replicas:
                states[r.state] = states.get(r.state, 0) + 1
            deps[d.name] = {"status": d.status, "message": d.message, "replica_states": states,
                            "status_trigger": ""}
        return {"status": app.status, "message": app.message, "deployments": deps,
                "last_deployed_time_s": app.deployed_at, "route_prefix": app.route_prefix}

    async def status(self):
        return {name: self._app_status(app) for name, app in self._apps.items()}

    async def list_apps(self):
        return sorted(self._apps)

    async def ping(self):
        import os
        return os.getpid()

    # ------------------------------------------------------------------ health

    async def _health_loop(self):
        while True:
            try:
                await self._check_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep checking; print for the worker log
                traceback.print_exc()
            await asyncio.sleep(_HEALTH_TICK_S)

    async def _check_all(self):
        now = time.monotonic()
        for app in list(self._apps.values()):
            if app.status not in ("RUNNING", "UNHEALTHY"):
                continue
            for dep in list(app.deployments.values()):
                period = dep.cfg["health_check_period_s"]
                timeout = dep.cfg["health_check_timeout_s"]
                for r in list(dep.replicas):
                    if r.state != "RUNNING":
                        continue
                    if r.check_ref is None:
                        if now - r.last_check >= period:
                            r.check_ref = r.actor.check_health.remote()
                            r.check_started = now
                        continue
                    ready, _ = ray.wait([r.check_ref], timeout=0)
                    failed = None
                    if ready:
                        try:
                            ray.get(r.check_ref)
                        except Exception as e:  # noqa: BLE001
                            failed = f"health check failed: {e}"
                        r.check_ref = None
                        r.last_check = now
                    elif now - r.check_started > timeout:
                        failed = f"health check did not answer in {timeout}s"
                        r.check_ref = None
                    if failed is not None:
                        await self._replace(app, dep, r, failed)
                await self._reconcile(app, dep)
                if dep.cfg.get("autoscaling_config"):
                    self._autoscale(app, dep, now)

    async def _replace(self, app, dep, r, reason):
        """Stops a replica that died or failed its check; _reconcile starts its successor."""
        if r not in dep.replicas:
            return
        dep.message = f"replica {r.tag} replaced: {reason.splitlines()[0][:300]}"
        self._stop([r])
        dep.replicas.remove(r)
        dep.status = "UPDATING"
        await self._reconcile(app, dep)

    async def _reconcile(self, app, dep):
        """Starts replicas until the deployment has num_replicas again (after a failure, the
        next try waits a second)."""
        if getattr(dep, "busy", False):
            return
        dep.busy = True
        try:
            await self._reconcile_now(app, dep)
        finally:
            dep.busy = False

    async def _reconcile_now(self, app, dep):
        want = dep.cfg["num_replicas"]
        have = len([r for r in dep.replicas if r.state in ("RUNNING", "STARTING")])
        if have >= want or time.monotonic() < getattr(dep, "retry_at", 0.0):
            return
        fresh = [self._start_replica(dep, have + i) for i in range(want - have)]
        dep.replicas += fresh
        error = await self._init_replicas(fresh)
        if error is not None:
            bad = [r for r in fresh if r.state != "RUNNING"]
            self._stop(bad)
            dep.replicas = [r for r in dep.replicas if r not in bad]
            dep.retry_at = time.monotonic() + 1.0
            dep.status = "UNHEALTHY"
            dep.message = f"a replacement replica failed to start:\n{error}"
            app.status = "UNHEALTHY"
            return
        dep.version += 1
        dep.status = "HEALTHY"
        if all(d.status == "HEALTHY" for d in app.deployments.values()):
            app.status = "RUNNING"

    # ------------------------------------------------------------------ autoscaling

    def _autoscale(self, app, dep, now):
        """Polls the replicas' load every POLL_S and applies the deployment's policy."""
        if app.status != "RUNNING" or getattr(dep, "busy", False):
            return
        if getattr(dep, "policy", None) is None:
            dep.policy = AutoscalingPolicy(dep.cfg["autoscaling_config"])
        refs = getattr(dep, "poll_refs", None)
        if refs is None:
            running = [r for r in dep.replicas if r.state == "RUNNING"]
            if running and now - getattr(dep, "polled_at", 0.0) >= POLL_S:
                dep.poll_refs = [r.actor.get_metadata.remote() for r in running]
                dep.polled_at = now
            return
        ready, pending = ray.wait(refs, num_returns=len(refs), timeout=0)
        if pending and now - dep.polled_at < 2.0:
            return
        total = 0
        for ref in ready:
            try:
                total += ray.get(ref)["load"]
            except Exception:  # noqa: BLE001 - a dying replica counts as idle
                pass
        dep.poll_refs = None
        dep.policy.record(now, total)
        current = len([r for r in dep.replicas if r.state in ("RUNNING", "STARTING")])
        target = dep.policy.decide(now, current)
        if target != current:
            self._scale(app, dep, current, target)

    def _scale(self, app, dep, current, target):
        dep.cfg["num_replicas"] = target
        if target > current:
            dep.status = "UPSCALING"
            dep.message = f"autoscaling up from {current} to {target} replicas"
            asyncio.get_running_loop().create_task(self._reconcile(app, dep))
            return
        victims = [r for r in dep.replicas if r.state in ("RUNNING", "STARTING")][target:]
        dep.replicas = [r for r in dep.replicas if r not in victims]
        dep.version += 1
        dep.message = f"autoscaled down from {current} to {target} replicas"
        asyncio.get_running_loop().create_task(
            self._drain_and_stop(victims, dep.cfg["graceful_shutdown_timeout_s"]))

    async def report_demand(self, app_name, dep_name):
        """A router has requests and the deployment has no replica (scaled to zero)."""
        self._ensure_background()
        app = self._apps.get(app_name)
        dep = app.deployments.get(dep_name) if app else None
        if dep is None or not dep.cfg.get("autoscaling_config"):
            return False
        have = len([r for r in dep.replicas if r.state in ("RUNNING", "STARTING")])
        if have == 0 and not getattr(dep, "busy", False):
            self._scale(app, dep, 0, max(1, dep.cfg["autoscaling_config"]["min_replicas"]))
        return True

    async def report_dead(self, app_name, dep_name, tag):
        """A handle saw a replica die: replace it now instead of at the next health check."""
        app = self._apps.get(app_name)
        dep = app.deployments.get(dep_name) if app else None
        if dep is None:
            return False
        for r in list(dep.replicas):
            if r.tag == tag and r.state == "RUNNING":
                try:
                    await asyncio.wait_for(_await(r.actor.check_health.remote()), 2.0)
                    return False  # it answers: not dead
                except Exception as e:  # noqa: BLE001
                    await self._replace(app, dep, r, f"reported dead by a handle: {e}")
                    return True
        return False


async def _await(ref):
    return await ref
