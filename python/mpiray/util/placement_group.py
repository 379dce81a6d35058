"""Placement groups, as in ``ray.util.placement_group``: bundles of resources reserved
together (all or none) with a strategy (PACK, SPREAD, STRICT_PACK, STRICT_SPREAD); tasks and
actors are then scheduled into a bundle with ``PlacementGroupSchedulingStrategy``.

A group that can never be placed on the cluster (e.g. more STRICT_SPREAD bundles than nodes)
is reported: ``ray.get(pg.ready())`` and ``pg.wait()`` raise ``InfeasibleError`` naming the
bundles and the nodes, instead of waiting forever (unless the cluster can grow: autoscale).
"""

import numbers

from .. import _core  # noqa: F401  (the extension module, found through mpiray.__path__)

# Ray's public list of strategy names.
VALID_PLACEMENT_GROUP_STRATEGIES = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}


def _strategies():
    """Ray's strategy names -> the runtime's values (_core.PlacementStrategy)."""
    return {name: int(value) for name, value in _core.PlacementStrategy.__members__.items()}


class PlacementGroupID:
    def __init__(self, binary):
        self._binary = bytes(binary)

    def binary(self):
        return self._binary

    def hex(self):
        return self._binary[::-1].hex()

    def __eq__(self, other):
        return isinstance(other, PlacementGroupID) and other._binary == self._binary

    def __hash__(self):
        return hash(self._binary)

    def __repr__(self):
        return f"PlacementGroupID({self.hex()})"


class PlacementGroup:
    """A handle to a placement group (picklable: pass it to tasks and actors)."""

    def __init__(self, id, ready_ref, bundles, strategy, name=""):
        self.id = id if isinstance(id, PlacementGroupID) else PlacementGroupID(id)
        self._ready = ready_ref
        self._bundles = [dict(b) for b in bundles]
        self._strategy = strategy
        self._name = name

    def ready(self):
        """An ObjectRef that becomes ready (True) once every bundle is reserved."""
        return self._ready

    def wait(self, timeout_seconds=30):
        """True once the group is reserved, False if still pending after the timeout; raises
        if it can never be placed or was removed."""
        from .. import _api
        ready, _ = _api.wait([self._ready], timeout=timeout_seconds)
        if not ready:
            return False
        _api.get(self._ready)
        return True

    @property
    def bundle_specs(self):
        return [dict(b) for b in self._bundles]

    @property
    def bundle_count(self):
        return len(self._bundles)

    @property
    def is_empty(self):
        return False

    def __repr__(self):
        return f"PlacementGroup({self.id.hex()}, {self._strategy}, {self._bundles})"

    # Two handles of one group (e.g. one that went through pickle) are equal, as in Ray.
    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self):
        return hash(self.id)


def _check_bundles(bundles):
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise ValueError("placement_group() needs a non-empty list of bundles, e.g. "
                         f"[{{'CPU': 1}}, {{'CPU': 1}}]; got {bundles!r}")
    out = []
    for i, b in enumerate(bundles):
        if not isinstance(b, dict) or not b:
            raise ValueError(f"bundle {i} must be a non-empty dict of resources, got {b!r}")
        clean = {}
        for k, v in b.items():
            if k == "bundle":
                raise ValueError(f"bundle {i}: 'bundle' is a reserved resource name (placement "
                                 "groups use it for their own bookkeeping, as in Ray)")
            if not isinstance(k, str) or not isinstance(v, numbers.Real) or isinstance(v, bool) or v < 0:
                raise ValueError(f"bundle {i}: resource {k!r} must map to a non-negative number, got {v!r}")
            clean[k] = float(v)
        if all(v == 0 for v in clean.values()):
            raise ValueError(f"bundle {i} is empty: every bundle needs a positive amount of some resource")
        out.append(clean)
    return out


def placement_group(bundles, strategy="PACK", name="", lifetime=None, **_ignored):
    """Reserve ``bundles`` (a list of resource dicts) with ``strategy``; returns at once."""
    clean = _check_bundles(bundles)
    strategies = _strategies()
    if strategy not in strategies:
        raise ValueError(f"Invalid placement group strategy {strategy!r}; use one of "
                         f"{', '.join(strategies)}")
    if lifetime not in (None, "detached"):
        raise ValueError(f"placement group lifetime must be None or 'detached', got {lifetime!r}")
    pg_id, ready = _core.create_placement_group(name or "", strategies[strategy], clean)
    return PlacementGroup(pg_id, ready, clean, strategy, name or "")


def remove_placement_group(placement_group):
    """Release the group's resources; actors in it die, its tasks that have not started fail."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group() takes a PlacementGroup, got "
                        f"{type(placement_group).__name__}")
    _core.remove_placement_group(placement_group.id.binary())


def _node_hex(node):
    return None if node is None else format(node, "032x")


def placement_group_table(placement_group=None):
    """Ray's table: {id hex: {placement_group_id, name, bundles, bundles_to_node_id, strategy,
    state}} for every group of the job, or the entry of one group (driver only)."""
    table = {}
    for g in _core.placement_group_table():
        gid = PlacementGroupID(g["id"])
        table[gid.hex()] = {
            "placement_group_id": gid.hex(),
            "name": g["name"],
            "bundles": {i: b for i, b in enumerate(g["bundles"])},
            "bundles_to_node_id": {i: _node_hex(n) for i, n in enumerate(g["nodes"])},
            "strategy": g["strategy"],
            "state": g["state"],
            "stats": {"scheduling_state": g["state"], "error": g["error"]},
        }
    if placement_group is not None:
        return table.get(placement_group.id.hex(), {})
    return table


def get_placement_group(placement_group_name):
    """The live group called ``placement_group_name`` (ValueError if none)."""
    for g in _core.placement_group_table():
        if g["name"] == placement_group_name and g["state"] not in ("REMOVED", "INFEASIBLE"):
            return _Named(g)
    raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")


class _Named(PlacementGroup):
    """A group found by name: its ready state comes from the head's table."""

    def __init__(self, g):
        super().__init__(g["id"], None, g["bundles"], g["strategy"], g["name"])

    def ready(self):
        raise NotImplementedError("ready() of a group found by name: use wait()")

    def wait(self, timeout_seconds=30):
        import time
        deadline = time.monotonic() + timeout_seconds
        while True:
            state = placement_group_table(self).get("state")
            if state == "CREATED":
                return True
            if state in ("REMOVED", "INFEASIBLE", None) or time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def get_current_placement_group():
    """The placement group the calling task or actor was placed in (None in the driver and in
    work outside groups)."""
    from .. import _api
    current = getattr(_api._task_pg, "value", None)
    return current[0] if current is not None else None
