"""Deployment options and their validation (names of ``ray.serve.config``)."""

import math
from dataclasses import dataclass, asdict, fields
from typing import Optional

DEFAULT_MAX_ONGOING_REQUESTS = 5
DEFAULT_HEALTH_CHECK_PERIOD_S = 10.0
DEFAULT_HEALTH_CHECK_TIMEOUT_S = 30.0
DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT_S = 20.0
DEFAULT_GRACEFUL_SHUTDOWN_WAIT_LOOP_S = 2.0

ALLOWED_RAY_ACTOR_OPTIONS = {"accelerator_type", "memory", "num_cpus", "num_gpus", "resources",
                             "runtime_env", "label_selector", "fallback_strategy"}


@dataclass
class AutoscalingConfig:
    """Ray's autoscaling settings. A deployment starts ``initial_replicas`` (else
    ``min_replicas``, at least 1) replicas; the controller then scales between
    ``min_replicas`` and ``max_replicas`` from the replicas' load (see
    ``_private/autoscaler.py``); ``metrics_interval_s`` is accepted for compatibility (the
    controller polls every 0.5 s)."""

    min_replicas: int = 1
    max_replicas: int = 1
    initial_replicas: Optional[int] = None
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    metrics_interval_s: float = 10.0
    look_back_period_s: float = 30.0
    smoothing_factor: float = 1.0
    upscaling_factor: Optional[float] = None
    downscaling_factor: Optional[float] = None

    @classmethod
    def from_any(cls, value):
        if isinstance(value, AutoscalingConfig):
            cfg = cls(**asdict(value))
        elif isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"autoscaling_config: unknown field(s) {sorted(unknown)}; "
                                 f"known: {sorted(known)}")
            cfg = cls(**value)
        else:
            raise TypeError(f"autoscaling_config must be a dict or AutoscalingConfig, got "
                            f"{type(value).__name__}")
        cfg.validate()
        return cfg

    def validate(self):
        def _int(name, lo):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"autoscaling_config.{name} must be an integer >= {lo}, got {v!r}")
        _int("min_replicas", 0)
        _int("max_replicas", 1)
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"autoscaling_config: min_replicas ({self.min_replicas}) must not "
                             f"exceed max_replicas ({self.max_replicas})")
        if self.initial_replicas is not None:
            _int("initial_replicas", 0)
            if not self.min_replicas <= self.initial_replicas <= self.max_replicas:
                raise ValueError("autoscaling_config.initial_replicas must lie between "
                                 "min_replicas and max_replicas")
        for name in ("target_ongoing_requests", "upscale_delay_s", "downscale_delay_s",
                     "metrics_interval_s", "look_back_period_s", "smoothing_factor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"autoscaling_config.{name} must be a number >= 0, got {v!r}")
        if self.target_ongoing_requests <= 0:
            raise ValueError("autoscaling_config.target_ongoing_requests must be > 0")

    def start_replicas(self):
        n = self.initial_replicas if self.initial_replicas is not None else self.min_replicas
        return max(1, n)


def _positive_number(name, v, allow_zero=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 \
            or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"number, got {v!r}")


def validate_options(opts):
    """Checks the options of ``@serve.deployment``/``.options()``; returns them normalised.
    Raises ValueError/TypeError naming the option."""
    out = dict(opts)
    if "name" in out:
        name = out["name"]
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty string, got {name!r}")
        if "#" in name:
            raise ValueError(f"name {name!r} must not contain '#'")
    if "num_replicas" in out and out["num_replicas"] is not None:
        n = out["num_replicas"]
        if n == "auto":
            pass
        elif isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"num_replicas must be an int or 'auto', got {n!r}")
        elif n < 1:
            raise ValueError(f"num_replicas must be >= 1, got {n}")
    if out.get("autoscaling_config") is not None:
        if isinstance(out.get("num_replicas"), int) and "num_replicas" in out:
            raise ValueError("Manually setting num_replicas is not allowed when "
                             "autoscaling_config is provided.")
        out["autoscaling_config"] = AutoscalingConfig.from_any(out["autoscaling_config"])
    if "ray_actor_options" in out and out["ray_actor_options"] is not None:
        rao = out["ray_actor_options"]
        if not isinstance(rao, dict):
            raise TypeError(f"ray_actor_options must be a dict, got {type(rao).__name__}")
        bad = set(rao) - ALLOWED_RAY_ACTOR_OPTIONS
        if bad:
            raise ValueError(f"Specifying {sorted(bad)} in ray_actor_options is not allowed. "
                             f"Allowed options: {sorted(ALLOWED_RAY_ACTOR_OPTIONS)}")
        for k in ("num_cpus", "num_gpus", "memory"):
            if k in rao:
                _positive_number(f"ray_actor_options['{k}']", rao[k], allow_zero=True)
    if "max_ongoing_requests" in out:
        v = out["max_ongoing_requests"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"max_ongoing_requests must be an integer >= 1, got {v!r}")
    if "max_queued_requests" in out:
        v = out["max_queued_requests"]
        if isinstance(v, bool) or not isinstance(v, int) or (v < 1 and v != -1):
            raise ValueError(f"max_queued_requests must be -1 (no limit) or an integer >= 1, "
                             f"got {v!r}")
    for k in ("health_check_period_s", "health_check_timeout_s", "graceful_shutdown_timeout_s",
              "graceful_shutdown_wait_loop_s"):
        if k in out:
            _positive_number(k, out[k], allow_zero=(k == "graceful_shutdown_timeout_s"))
    if "user_config" in out and out["user_config"] is not None:
        import json
        try:
            json.dumps(out["user_config"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"user_config must be JSON-serializable: {e}") from None
    return out
