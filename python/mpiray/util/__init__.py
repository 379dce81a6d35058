"""Ray's ``ray.util`` utilities on mpiray.

* ``placement_group``, ``remove_placement_group``, ``placement_group_table``
  (``mpiray.util.placement_group``) and ``mpiray.util.scheduling_strategies``.
* ``ActorPool`` (``mpiray.util.actor_pool``): schedule work over a fixed set of actors.
* ``mpiray.util.queue``: ``Queue``, ``Empty``, ``Full``: a FIFO queue shared by the driver,
  tasks and actors.
* ``mpiray.util.state``: ``list_tasks``, ``list_actors``, ``list_objects``, ``list_nodes``,
  ``summarize_tasks/actors/objects`` (driver only).
* ``mpiray.util.multiprocessing``: ``Pool``, a drop-in for ``multiprocessing.Pool`` that runs
  on actors.

``queue`` and ``multiprocessing`` are loaded on first use (``mpiray.util.queue.Queue`` works
without importing them first).
"""

import importlib

from .actor_pool import ActorPool
from .placement_group import (  # noqa: F401
    PlacementGroup, get_current_placement_group, get_placement_group, placement_group,
    placement_group_table, remove_placement_group,
)
from . import scheduling_strategies  # noqa: F401

__all__ = ["ActorPool", "queue", "multiprocessing", "state", "joblib", "placement_group", "remove_placement_group",
           "placement_group_table", "get_placement_group", "get_current_placement_group",
           "PlacementGroup", "scheduling_strategies", "get_node_ip_address"]

def get_node_ip_address(address=None):
    """The IP address of this node (Ray's ``ray.util.get_node_ip_address``): the one given to
    ``init(_node_ip_address=...)`` (the driver's node: the driver and its local workers; or
    ``MPIRAY_NODE_IP_ADDRESS`` set for a process), else the address of the interface that
    routes towards ``address`` (default: outwards), else 127.0.0.1."""
    import os
    import socket
    given = os.environ.get("MPIRAY_NODE_IP_ADDRESS")
    if given:
        return given
    host = "10.255.255.255"
    if address:
        host = str(address).rsplit(":", 1)[0] if str(address).count(":") == 1 else str(address)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 1))  # no packet is sent: picks the route's interface
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


_LAZY = ("queue", "multiprocessing", "state", "joblib", "annotations")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
