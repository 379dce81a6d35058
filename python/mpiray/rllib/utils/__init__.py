"""RLlib's utility names (``ray.rllib.utils``)."""
