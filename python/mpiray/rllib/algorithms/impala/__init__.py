"""IMPALA (``ray.rllib.algorithms.impala``)."""

from .impala import IMPALA, IMPALAConfig

Impala = IMPALA
ImpalaConfig = IMPALAConfig

__all__ = ["IMPALA", "IMPALAConfig", "Impala", "ImpalaConfig"]
