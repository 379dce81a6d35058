"""Learners (``ray.rllib.core.learner``)."""

from .learner import Learner
from .learner_group import LearnerGroup

__all__ = ["Learner", "LearnerGroup"]
