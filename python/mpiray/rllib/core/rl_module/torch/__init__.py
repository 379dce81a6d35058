"""Torch RLModules (``ray.rllib.core.rl_module.torch``)."""

from ..rl_module import RLModule as TorchRLModule
from .default_modules import DefaultActorCriticRLModule, DefaultDQNRLModule

__all__ = ["TorchRLModule", "DefaultActorCriticRLModule", "DefaultDQNRLModule"]
