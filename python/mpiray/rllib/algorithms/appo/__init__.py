"""APPO (``ray.rllib.algorithms.appo``)."""

from .appo import APPO, APPOConfig

__all__ = ["APPO", "APPOConfig"]
