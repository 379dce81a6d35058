"""``Deployment`` (what ``@serve.deployment`` makes) and ``Application`` (what ``.bind()``
makes: a deployment with its constructor arguments, which may hold other applications)."""

import hashlib
import inspect

import cloudpickle

from .config import (DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S, DEFAULT_HEALTH_CHECK_PERIOD_S,
                     DEFAULT_HEALTH_CHECK_TIMEOUT_S, DEFAULT_MAX_ONGOING_REQUESTS,
                     AutoscalingConfig, validate_options)

_OPTION_NAMES = ("name", "version", "num_replicas", "ray_actor_options", "user_config",
                 "max_ongoing_requests", "max_queued_requests", "autoscaling_config",
                 "graceful_shutdown_wait_loop_s", "graceful_shutdown_timeout_s",
                 "health_check_period_s", "health_check_timeout_s")


class Deployment:
    """A class or function made servable; configure with ``.options()``, bind arguments with
    ``.bind()``."""

    def __init__(self, func_or_class, options):
        self._target = func_or_class
        self._opts = validate_options(options)
        if "name" not in self._opts:
            self._opts["name"] = func_or_class.__name__

    @property
    def name(self):
        return self._opts["name"]

    @property
    def func_or_class(self):
        return self._target

    @property
    def num_replicas(self):
        return self._opts.get("num_replicas", 1)

    @property
    def user_config(self):
        return self._opts.get("user_config")

    @property
    def max_ongoing_requests(self):
        return self._opts.get("max_ongoing_requests", DEFAULT_MAX_ONGOING_REQUESTS)

    @property
    def max_queued_requests(self):
        return self._opts.get("max_queued_requests", -1)

    @property
    def ray_actor_options(self):
        return self._opts.get("ray_actor_options")

    def options(self, **kwargs):
        """A copy with some options changed (same names as ``@serve.deployment``)."""
        unknown = set(kwargs) - set(_OPTION_NAMES) - {"func_or_class"}
        if unknown:
            raise TypeError(f"Deployment.options() got unknown option(s) {sorted(unknown)}; "
                            f"known: {sorted(_OPTION_NAMES)}")
        target = kwargs.pop("func_or_class", self._target)
        merged = dict(self._opts)
        if "autoscaling_config" in kwargs and "num_replicas" not in kwargs:
            merged.pop("num_replicas", None)
        if "num_replicas" in kwargs and kwargs["num_replicas"] != "auto":
            merged.pop("autoscaling_config", None)
        merged.update(kwargs)
        return Deployment(target, merged)

    def bind(self, *args, **kwargs):
        return Application(self, args, kwargs)

    def __call__(self, *args, **kwargs):
        raise RuntimeError("Deployments cannot be constructed directly. Use "
                           "`deployment.bind()` and `serve.run()` instead.")

    def __repr__(self):
        return f"Deployment(name={self.name})"

    # -------------------------------------------------------------- resolved config

    def _config(self):
        o = self._opts
        auto = o.get("autoscaling_config")
        if o.get("num_replicas") == "auto" and auto is None:
            auto = AutoscalingConfig(min_replicas=1, max_replicas=100)
        n = auto.start_replicas() if auto is not None else (o.get("num_replicas") or 1)
        rao = dict(o.get("ray_actor_options") or {})
        rao.setdefault("num_cpus", 1)
        return {
            "num_replicas": n,
            "ray_actor_options": rao,
            "user_config": o.get("user_config"),
            "max_ongoing_requests": o.get("max_ongoing_requests", DEFAULT_MAX_ONGOING_REQUESTS),
            "max_queued_requests": o.get("max_queued_requests", -1),
            "health_check_period_s": o.get("health_check_period_s", DEFAULT_HEALTH_CHECK_PERIOD_S),
            "health_check_timeout_s": o.get("health_check_timeout_s", DEFAULT_HEALTH_CHECK_TIMEOUT_S),
            "graceful_shutdown_timeout_s": o.get("graceful_shutdown_timeout_s",
                                                 DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S),
            "autoscaling_config": None if auto is None else vars(auto).copy(),
        }


class Application:
    """A bound deployment: ``serve.run(app)`` deploys it and every application bound into its
    arguments (they arrive in the constructor as ``DeploymentHandle``s)."""

    def __init__(self, deployment, args, kwargs):
        self._bound_deployment = deployment
        self._args, self._kwargs = args, kwargs

    def __repr__(self):
        return f"Application({self._bound_deployment.name})"


def _code_version(dep, target, def_bytes, args_bytes, cfg):
    """What decides between reconfiguring live replicas and starting new ones: the
    ``version`` option if given (as in Ray), else the source text of the class or function
    (pickles of classes defined in ``__main__`` are not byte-stable), plus the constructor
    arguments and the options that a running replica cannot change."""
    version = dep._opts.get("version")
    if version is not None:
        code = f"version:{version}".encode()
    else:
        try:
            code = (f"{getattr(target, '__module__', '')}.{target.__qualname__}\n".encode()
                    + inspect.getsource(target).encode())
        except (OSError, TypeError):
            code = def_bytes
    return hashlib.sha256(b"\0".join([
        code, args_bytes, repr(sorted(cfg["ray_actor_options"].items())).encode(),
        str(cfg["max_ongoing_requests"]).encode()])).hexdigest()


def build_specs(app, app_name):
    """The deployments of an application graph, dependencies first, as plain dicts for the
    controller. Two different deployments with one name get suffixes (``_1``...)."""
    from .handle import DeploymentHandle

    specs, names = [], {}

    def name_for(node):
        key = id(node)
        if key in names:
            return names[key]
        base = node._bound_deployment.name
        taken = set(names.values())
        name, i = base, 1
        while name in taken:
            name, i = f"{base}_{i}", i + 1
        names[key] = name
        return name

    def convert(value, path):
        if isinstance(value, Application):
            return DeploymentHandle(visit(value, path), app_name)
        if isinstance(value, Deployment):
            raise TypeError(f"a Deployment ({value.name}) was passed to .bind() without being "
                            f"bound: pass {value.name}.bind(...)")
        if isinstance(value, list):
            return [convert(v, path) for v in value]
        if isinstance(value, tuple):
            return tuple(convert(v, path) for v in value)
        if isinstance(value, dict):
            return {k: convert(v, path) for k, v in value.items()}
        return value

    done = {}

    def visit(node, path):
        if id(node) in done:
            return done[id(node)]
        if id(node) in path:
            raise ValueError("the application graph has a cycle")
        name = name_for(node)
        path = path | {id(node)}
        args = convert(list(node._args), path)
        kwargs = convert(dict(node._kwargs), path)
        dep = node._bound_deployment
        target = dep.func_or_class
        is_function = not inspect.isclass(target)
        if is_function and (args or kwargs):
            raise TypeError(f"function deployment '{name}' takes no .bind() arguments")
        try:
            def_bytes = cloudpickle.dumps(target)
            args_bytes = cloudpickle.dumps((tuple(args), kwargs))
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"deployment '{name}': its code or .bind() arguments cannot be "
                            f"serialized: {e}") from e
        cfg = dep._config()
        code_hash = _code_version(dep, target, def_bytes, args_bytes, cfg)
        specs.append({"name": name, "def_bytes": def_bytes, "args_bytes": args_bytes,
                      "is_function": is_function, "config": cfg, "code_hash": code_hash})
        done[id(node)] = name
        return name

    if not isinstance(app, Application):
        if isinstance(app, Deployment):
            raise TypeError(f"serve.run() needs a bound application: pass {app.name}.bind()")
        raise TypeError(f"serve.run() needs an Application (deployment.bind(...)), got "
                        f"{type(app).__name__}")
    ingress = visit(app, frozenset())
    return specs, ingress
