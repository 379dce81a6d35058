"""Ray Serve's config file (``serve deploy``/``serve run config.yaml``): applications with
``name``, ``route_prefix``, ``import_path``, ``args`` and per-deployment overrides; top-level
``http_options``. Unknown fields are errors that name them."""

import importlib
import os
import sys

from ..deployment import Application, Deployment

_TOP = {"applications", "http_options", "proxy_location", "grpc_options", "logging_config"}
_APP = {"name", "route_prefix", "import_path", "args", "deployments", "runtime_env",
        "logging_config", "external_scaler_enabled"}
_DEP = {"name", "num_replicas", "ray_actor_options", "user_config", "max_ongoing_requests",
        "max_queued_requests", "autoscaling_config", "graceful_shutdown_wait_loop_s",
        "graceful_shutdown_timeout_s", "health_check_period_s", "health_check_timeout_s",
        "version"}


def load(path):
    """A config file's contents as a dict (YAML; JSON is YAML too)."""
    import yaml
    with open(path) as f:
        cfg = yaml.safe_load(f) or {}
    check(cfg, where=path)
    return cfg


def check(cfg, where="config"):
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: the top level must be a mapping")
    bad = set(cfg) - _TOP
    if bad:
        raise ValueError(f"{where}: unknown field(s) {sorted(bad)}; known: {sorted(_TOP)}")
    apps = cfg.get("applications") or []
    if not isinstance(apps, list):
        raise ValueError(f"{where}: 'applications' must be a list")
    names, prefixes = set(), set()
    for i, a in enumerate(apps):
        if not isinstance(a, dict):
            raise ValueError(f"{where}: applications[{i}] must be a mapping")
        bad = set(a) - _APP
        if bad:
            raise ValueError(f"{where}: applications[{i}] has unknown field(s) {sorted(bad)}; "
                             f"known: {sorted(_APP)}")
        if not isinstance(a.get("import_path"), str) or ":" not in a["import_path"] and \
                "." not in a["import_path"]:
            raise ValueError(f"{where}: applications[{i}].import_path must be 'module:attribute'")
        name = a.get("name", "default")
        if name in names:
            raise ValueError(f"{where}: two applications are named {name!r}")
        names.add(name)
        prefix = a.get("route_prefix", "/")
        if prefix is not None and prefix in prefixes:
            raise ValueError(f"{where}: two applications use route_prefix {prefix!r}")
        prefixes.add(prefix)
        for j, d in enumerate(a.get("deployments") or []):
            if not isinstance(d, dict) or "name" not in d:
                raise ValueError(f"{where}: applications[{i}].deployments[{j}] needs a 'name'")
            bad = set(d) - _DEP
            if bad:
                raise ValueError(f"{where}: deployment {d['name']!r} has unknown field(s) "
                                 f"{sorted(bad)}; known: {sorted(_DEP)}")


def import_target(import_path, args=None):
    """``module:attr`` (or ``module.attr``) -> an Application (a builder function is called
    with ``args``). The current directory is importable, as for ``python -m``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if ":" in import_path:
        mod, attr = import_path.split(":", 1)
    else:
        mod, attr = import_path.rsplit(".", 1)
    try:
        module = importlib.import_module(mod)
    except ImportError as e:
        raise ImportError(f"cannot import module {mod!r} of import_path {import_path!r}: {e}") \
            from e
    target = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AttributeError(f"module {mod!r} has no attribute {attr!r} "
                                 f"(import_path {import_path!r})") from None
    if isinstance(target, Deployment):
        target = target.bind()
    if not isinstance(target, Application):
        if callable(target):
            target = target(args or {})
        if isinstance(target, Deployment):
            target = target.bind()
        if not isinstance(target, Application):
            raise TypeError(f"{import_path!r} is not an application (a bound deployment: "
                            f"Model.bind(...)) nor a function returning one")
    return target


def apply_overrides(app, overrides):
    """A copy of the application graph with deployments' options overridden by name."""
    left = dict(overrides)

    def conv(v):
        if isinstance(v, Application):
            return visit(v)
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, tuple):
            return tuple(conv(x) for x in v)
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    memo = {}

    def visit(node):
        if id(node) in memo:
            return memo[id(node)]
        dep = node._bound_deployment
        ov = overrides.get(dep.name)
        if ov:
            left.pop(dep.name, None)
            dep = dep.options(**{k: v for k, v in ov.items() if k != "name"})
        new = Application(dep, tuple(conv(a) for a in node._args),
                          {k: conv(v) for k, v in node._kwargs.items()})
        memo[id(node)] = new
        return new

    out = visit(app)
    if left:
        raise ValueError(f"the config overrides deployment(s) {sorted(left)} that the "
                         f"application does not have")
    return out


def deploy(cfg):
    """Deploys every application of a config (already checked); returns their names."""
    from ..api import run
    names = []
    for a in cfg.get("applications") or []:
        app = import_target(a["import_path"], a.get("args"))
        app = apply_overrides(app, {d["name"]: d for d in a.get("deployments") or []})
        name = a.get("name", "default")
        run(app, name=name, route_prefix=a.get("route_prefix", "/"))
        names.append(name)
    return names
