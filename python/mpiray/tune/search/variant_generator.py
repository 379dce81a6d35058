"""Turn a param_space (nested dicts with Domains and grid_search) into trial configs."""

import copy
import itertools

from .sample import Domain, Function, _Spec


def _is_grid(v):
    return isinstance(v, dict) and len(v) == 1 and "grid_search" in v


def _walk(spec, path=()):
    """(path, value) of every Domain or grid_search leaf."""
    if _is_grid(spec):
        yield path, spec
        return
    if isinstance(spec, Domain):
        yield path, spec
        return
    if isinstance(spec, dict):
        for k, v in spec.items():
            yield from _walk(v, path + (k,))
    elif isinstance(spec, (list, tuple)):
        for i, v in enumerate(spec):
            yield from _walk(v, path + (i,))


def _set(cfg, path, value):
    for p in path[:-1]:
        cfg = cfg[p]
    cfg[path[-1]] = value


def _get(cfg, path):
    for p in path:
        cfg = cfg[p]
    return cfg


def _plain_copy(spec):
    """Deep copy of containers; leaves (including Domains) shared."""
    if isinstance(spec, dict):
        return {k: _plain_copy(v) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_plain_copy(v) for v in spec]
    if isinstance(spec, tuple):
        return [_plain_copy(v) for v in spec] if False else tuple(_plain_copy(v) for v in spec)
    return spec


def count_grid(spec):
    n = 1
    for _, v in _walk(spec):
        if _is_grid(v):
            n *= len(v["grid_search"])
    return n


def has_unresolved(spec):
    return any(True for _ in _walk(spec))


def generate_variants(spec, rng, constant_grid_search=False):
    """Yield (resolved_vars {path: value}, config) for every grid combination of ``spec``,
    with random domains sampled from ``rng`` (``sample_from`` functions see the config
    resolved so far)."""
    spec = _to_mutable(spec)
    leaves = list(_walk(spec))
    grids = [(p, v["grid_search"]) for p, v in leaves if _is_grid(v)]
    domains = [(p, v) for p, v in leaves if isinstance(v, Domain)]
    plain = [(p, v) for p, v in domains if not isinstance(v, Function)]
    funcs = [(p, v) for p, v in domains if isinstance(v, Function)]
    const_samples = None
    if constant_grid_search and grids:
        const_samples = {p: d.sample(None, 1, rng) for p, d in plain}
    for combo in itertools.product(*[g for _, g in grids]) if grids else [()]:
        cfg = _plain_copy(spec)
        resolved = {}
        for (p, _), value in zip(grids, combo):
            # a grid value may itself contain domains (nested search spaces)
            _set(cfg, p, _plain_copy(value))
            resolved[p] = value
        for p, d in plain:
            v = const_samples[p] if const_samples is not None else d.sample(None, 1, rng)
            _set(cfg, p, v)
            resolved[p] = v
        # nested domains brought in by grid values
        for p, d in list(_walk(cfg)):
            if isinstance(d, Domain) and not isinstance(d, Function):
                v = d.sample(None, 1, rng)
                _set(cfg, p, v)
                resolved[p] = v
        pending = [(p, d) for p, d in _walk(cfg) if isinstance(d, Function)]
        for _ in range(len(pending) + 1):
            if not pending:
                break
            still = []
            for p, d in pending:
                try:
                    v = d.sample(_Spec({"config": cfg}), 1, rng)
                except (AttributeError, KeyError, TypeError) as e:
                    still.append((p, d, e))
                    continue
                if isinstance(v, Domain):
                    v = v.sample(None, 1, rng)
                _set(cfg, p, v)
                resolved[p] = v
            if len(still) == len(pending):
                p, d, e = still[0]
                raise ValueError(f"Could not resolve sample_from at {'/'.join(map(str, p))}: "
                                 f"{type(e).__name__}: {e}")
            pending = [(p, d) for p, d, _ in still]
        yield resolved, cfg


def _to_mutable(spec):
    if isinstance(spec, dict) and not _is_grid(spec):
        return {k: _to_mutable(v) for k, v in spec.items()}
    return spec


def format_vars(resolved):
    """Ray's experiment tag part: ``a=1,b=0.0123`` (last path element, short floats)."""
    out = []
    for path, v in sorted(resolved.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if isinstance(v, (dict, list)):
            continue
        key = str(path[-1]) if path else ""
        if isinstance(v, float):
            s = f"{v:.4g}"
        else:
            s = str(v)
        out.append(f"{key}={s}")
    return ",".join(out)


def flatten_dict(d, prefix="", delimiter="/"):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{delimiter}{k}" if prefix else str(k)
        if isinstance(v, dict) and v and not _is_grid(v):
            out.update(flatten_dict(v, key, delimiter))
        else:
            out[key] = v
    return out


def unflatten_dict(d, delimiter="/"):
    out = {}
    for k, v in d.items():
        parts = str(k).split(delimiter)
        cur = out
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = v
    return out


def merge_dicts(base, override):
    out = copy.copy(base) if isinstance(base, dict) else {}
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and not _is_grid(out.get(k)):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = v
    return out
