"""Serve's public functions (``ray.serve.api`` names)."""

import inspect
import os
import time

import mpiray as ray

from .deployment import Deployment, build_specs
from .exceptions import RayServeException
from .handle import DeploymentHandle
from .schema import _status_from_dict
from ._private.controller import CONTROLLER_NAME, ServeController
from ._private.router import clear_routers, get_controller
from ._private.http_proxy import check_http_options, get_proxy, start_proxy, stop_proxy


def deployment(_func_or_class=None, name=None, version=None, num_replicas=None,
               ray_actor_options=None, user_config=None, max_ongoing_requests=None,
               max_queued_requests=None, autoscaling_config=None,
               graceful_shutdown_wait_loop_s=None, graceful_shutdown_timeout_s=None,
               health_check_period_s=None, health_check_timeout_s=None, **unsupported):
    """``@serve.deployment`` or ``@serve.deployment(num_replicas=2, ...)`` on a class or a
    function. Options left out keep Ray's defaults."""
    if unsupported:
        raise TypeError(f"serve.deployment() got option(s) mpiray.serve does not support: "
                        f"{sorted(unsupported)}")
    given = {k: v for k, v in dict(
        name=name, version=version, num_replicas=num_replicas,
        ray_actor_options=ray_actor_options, user_config=user_config,
        max_ongoing_requests=max_ongoing_requests, max_queued_requests=max_queued_requests,
        autoscaling_config=autoscaling_config,
        graceful_shutdown_wait_loop_s=graceful_shutdown_wait_loop_s,
        graceful_shutdown_timeout_s=graceful_shutdown_timeout_s,
        health_check_period_s=health_check_period_s,
        health_check_timeout_s=health_check_timeout_s).items() if v is not None}

    def decorate(target):
        if not (inspect.isclass(target) or inspect.isfunction(target)):
            raise TypeError(f"@serve.deployment must decorate a class or a function, got "
                            f"{type(target).__name__}")
        return Deployment(target, given)

    if _func_or_class is not None:
        if not callable(_func_or_class):
            raise TypeError("serve.deployment takes its options as keywords: "
                            "@serve.deployment(num_replicas=2)")
        return decorate(_func_or_class)
    return decorate


def _get_or_start_controller():
    if not ray.is_initialized():
        ray.init()
    try:
        return ray.get_actor(CONTROLLER_NAME)
    except ValueError:
        pass
    return ray.remote(ServeController).options(
        name=CONTROLLER_NAME, lifetime="detached", num_cpus=0, max_concurrency=64,
        get_if_exists=True).remote()


def _is_driver():
    rank = ray.get_runtime_context().get_rank()
    return rank in (0, None)


def _default_http_options():
    port = os.environ.get("MPIRAY_SERVE_PORT")
    return {} if port is None else {"port": int(port)}


def start(http_options=None, detached=False, proxy_location=None, **kwargs):
    """Starts the controller and, in the driver, the native HTTP proxy:
    ``http_options={"host": "127.0.0.1", "port": 8000, "request_timeout_s": None,
    "auth_token": None, "max_body_bytes": 64 MiB, ...}`` (see docs/serve.md). The proxy binds
    loopback unless another host is asked for."""
    if kwargs:
        raise TypeError(f"serve.start() got unknown argument(s) {sorted(kwargs)}")
    opts = check_http_options(http_options)
    _get_or_start_controller()
    if _is_driver() and proxy_location not in ("Disabled", "NoServer"):
        merged = dict(_default_http_options(), **opts)
        proxy = start_proxy(merged)
        proxy.update_routes()
        return proxy
    return None


def run(target, blocking=False, name="default", route_prefix="/", logging_config=None,
        _local_testing_mode=False, **kwargs):
    """Deploys an application (or updates the one of that name) and returns the handle of its
    ingress deployment once every replica runs. A constructor that raises fails the
    deployment: ``RuntimeError`` with the traceback, and ``serve.status()`` shows
    DEPLOY_FAILED."""
    if kwargs:
        raise TypeError(f"serve.run() got unknown argument(s) {sorted(kwargs)}")
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if route_prefix is not None and (not isinstance(route_prefix, str) or
                                     not route_prefix.startswith("/")):
        raise ValueError(f"route_prefix must be None or a string starting with '/', got "
                         f"{route_prefix!r}")
    specs, ingress = build_specs(target, name)
    controller = _get_or_start_controller()
    status = ray.get(controller.deploy_app.remote(name, route_prefix, specs, ingress))
    clear_routers(name)  # this process's handles re-read the replicas of the new version
    if _is_driver():
        proxy = get_proxy()
        if proxy is None and route_prefix is not None:
            proxy = start_proxy(_default_http_options())
        if proxy is not None:
            proxy.update_routes()
    if status["status"] == "DEPLOY_FAILED":
        raise RuntimeError(status["message"])
    handle = DeploymentHandle(ingress, name)
    if blocking:
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    return handle


def status():
    """The applications, their deployments and replicas (Ray's ``ServeStatus``)."""
    from .schema import ServeStatus
    if not ray.is_initialized():
        return ServeStatus()
    try:
        controller = ray.get_actor(CONTROLLER_NAME)
    except ValueError:
        return ServeStatus()
    return _status_from_dict(ray.get(controller.status.remote()))


def delete(name, _blocking=True):
    """Deletes an application: its replicas finish their requests (up to
    ``graceful_shutdown_timeout_s``) and stop."""
    controller = get_controller()
    ray.get(controller.delete_app.remote(name))
    clear_routers()
    proxy = get_proxy()
    if proxy is not None:
        proxy.update_routes()


def shutdown():
    """Deletes every application, stops the HTTP proxy and the controller."""
    clear_routers()
    stop_proxy()
    if not ray.is_initialized():
        return
    try:
        controller = ray.get_actor(CONTROLLER_NAME)
    except ValueError:
        return
    try:
        ray.get(controller.shutdown.remote(), timeout=120)
    finally:
        ray.kill(controller)


def get_app_handle(name):
    """The ingress handle of a running application."""
    controller = get_controller()
    ingress = ray.get(controller.get_ingress.remote(name))
    if ingress is None:
        raise RayServeException(f"Application '{name}' does not exist.")
    return DeploymentHandle(ingress, name)


def get_deployment_handle(deployment_name, app_name=None, _check_exists=True,
                          _record_telemetry=True):
    """A handle to one deployment of an application (inside a replica, its own application
    by default)."""
    from .context import _get_internal_replica_context
    if app_name is None:
        ctx = _get_internal_replica_context()
        app_name = ctx.app_name if ctx is not None else "default"
    if _check_exists:
        controller = get_controller()
        info = ray.get(controller.get_replicas.remote(app_name, deployment_name))
        if "error" in info:
            raise RayServeException(info["error"])
    return DeploymentHandle(deployment_name, app_name)


def ingress(app):
    """``@serve.ingress(fastapi_app)`` on a deployment class: HTTP requests go through the
    ASGI app (FastAPI or Starlette); routes declared on the class's methods get the replica's
    instance as ``self``."""
    if not callable(app):
        raise TypeError(f"serve.ingress() takes an ASGI app (FastAPI, Starlette), got "
                        f"{type(app).__name__}")

    def decorate(cls):
        if not inspect.isclass(cls):
            raise TypeError("@serve.ingress(app) must decorate a class (put it under "
                            "@serve.deployment)")
        if isinstance(cls, Deployment):
            raise TypeError("@serve.ingress(app) goes below @serve.deployment")
        _make_state_picklable()
        cls._serve_asgi_app = app
        return cls

    return decorate


def _rebuild_state(values):
    from starlette.datastructures import State
    return State(values)


def _make_state_picklable():
    """Starlette's ``State`` (``app.state``) recurses forever when unpickled (its __getattr__
    reads its own dict before it exists); the app travels to the replicas pickled, so it is
    pickled as its plain dict."""
    try:
        from starlette.datastructures import State
    except ImportError:
        return
    import copyreg
    copyreg.pickle(State, lambda st: (_rebuild_state, (dict(st._state),)))
