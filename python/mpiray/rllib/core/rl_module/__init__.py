"""RLModules (``ray.rllib.core.rl_module``)."""

from .default_model_config import DefaultModelConfig
from .rl_module import MultiRLModule, MultiRLModuleSpec, RLModule, RLModuleSpec, TorchRLModule

__all__ = ["DefaultModelConfig", "RLModule", "RLModuleSpec", "TorchRLModule", "MultiRLModule",
           "MultiRLModuleSpec"]
