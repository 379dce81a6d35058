"""Trial resources: ``PlacementGroupFactory`` (Ray's) and the dict form of
``with_resources``/``resources_per_trial``."""


class PlacementGroupFactory:
    """Bundles of resources for a trial: the trial's actor runs in bundle 0, the other
    bundles are for the tasks and actors it starts (``strategy``: PACK, SPREAD, STRICT_PACK,
    STRICT_SPREAD)."""

    def __init__(self, bundles, strategy="PACK", *args, **kwargs):
        if not bundles or not all(isinstance(b, dict) for b in bundles):
            raise ValueError("PlacementGroupFactory needs a non-empty list of resource dicts")
        if strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ValueError(f"Invalid placement group strategy {strategy!r}")
        for b in bundles:
            for k, v in b.items():
                if not isinstance(v, (int, float)) or v < 0:
                    raise ValueError(f"Invalid resource amount {k}={v!r} in bundle {b}")
        self._bundles = [{k: float(v) for k, v in b.items() if v} for b in bundles]
        self._strategy = strategy
        self._head_empty = not self._bundles[0]

    @property
    def bundles(self):
        return [dict(b) for b in self._bundles]

    @property
    def strategy(self):
        return self._strategy

    @property
    def head_bundle_is_empty(self):
        return self._head_empty

    @property
    def head_cpus(self):
        return self._bundles[0].get("CPU", 0.0)

    @property
    def required_resources(self):
        total = {}
        for b in self._bundles:
            for k, v in b.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def __call__(self, *args, **kwargs):
        from ..util.placement_group import placement_group
        return placement_group(self.bundles, strategy=self._strategy)

    def __eq__(self, other):
        return isinstance(other, PlacementGroupFactory) and other._bundles == self._bundles \
            and other._strategy == self._strategy

    def __hash__(self):
        return hash((tuple(tuple(sorted(b.items())) for b in self._bundles), self._strategy))

    def __repr__(self):
        return f"<PlacementGroupFactory (_bound=<BoundArguments (bundles={self._bundles}, strategy='{self._strategy}')>)>"


_KEYS = {"cpu": "CPU", "gpu": "GPU", "memory": "memory", "CPU": "CPU", "GPU": "GPU"}


def resources_to_pgf(resources):
    """A PlacementGroupFactory from a dict (``cpu``, ``gpu``, ``memory``, custom names, and
    Ray's ``extra_cpu``/``extra_gpu``), a PlacementGroupFactory, or None (1 CPU)."""
    if resources is None:
        return PlacementGroupFactory([{"CPU": 1.0}])
    if isinstance(resources, PlacementGroupFactory):
        return resources
    if not isinstance(resources, dict):
        raise ValueError(f"Resources must be a dict or a PlacementGroupFactory, got {resources!r}")
    head, extra = {}, {}
    for k, v in resources.items():
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"Invalid resource amount {k}={v!r}")
        if k in ("extra_cpu", "extra_gpu"):
            extra["CPU" if k == "extra_cpu" else "GPU"] = float(v)
        elif k == "custom_resources":
            head.update({ck: float(cv) for ck, cv in v.items()})
        else:
            head[_KEYS.get(k, k)] = float(v)
    if "CPU" not in head:
        head["CPU"] = 1.0 if not head.get("GPU") else 1.0
    bundles = [head] + ([extra] if extra else [])
    return PlacementGroupFactory(bundles)
