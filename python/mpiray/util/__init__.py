"""Utilities on top of the core API, as ``ray.util``."""

from .placement_group import (  # noqa: F401
    PlacementGroup, get_current_placement_group, get_placement_group, placement_group,
    placement_group_table, remove_placement_group,
)
from . import scheduling_strategies  # noqa: F401
