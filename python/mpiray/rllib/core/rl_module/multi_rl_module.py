"""``ray.rllib.core.rl_module.multi_rl_module``."""

from .rl_module import MultiRLModule, MultiRLModuleSpec

__all__ = ["MultiRLModule", "MultiRLModuleSpec"]
