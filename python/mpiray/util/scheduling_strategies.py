"""Scheduling strategies, as in ``ray.util.scheduling_strategies``.

``scheduling_strategy=`` on a task or actor also takes the strings ``"DEFAULT"`` (pack by data
locality and free workers) and ``"SPREAD"`` (round-robin over nodes).
"""


class PlacementGroupSchedulingStrategy:
    """Run in bundle ``placement_group_bundle_index`` of ``placement_group`` (-1: any bundle),
    on the resources the group reserved there."""

    def __init__(self, placement_group, placement_group_bundle_index=-1,
                 placement_group_capture_child_tasks=None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self):
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"{self.placement_group_bundle_index})")


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (``ray.nodes()[i]["NodeID"]``). With ``soft=True`` another
    node is used when that one is gone or full; without, the task runs there or fails."""

    def __init__(self, node_id, soft, _spill_on_unavailable=False, _fail_on_unavailable=False):
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self):
        return f"NodeAffinitySchedulingStrategy({self.node_id!r}, soft={self.soft})"
