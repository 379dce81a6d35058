"""``ray.rllib.policy``: only ``PolicySpec`` (the new API stack's policies are RLModules)."""

from .policy import PolicySpec

__all__ = ["PolicySpec"]
