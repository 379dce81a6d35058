"""RLlib's algorithms (``ray.rllib.algorithms``): PPO, DQN, IMPALA, APPO."""

from .algorithm import Algorithm
from .algorithm_config import AlgorithmConfig
from .registry import ALGORITHMS, get_algorithm_class


def __getattr__(name):
    # PPO, PPOConfig, DQN, ... imported on first use
    for algo in ("PPO", "DQN", "IMPALA", "APPO"):
        if name in (algo, algo + "Config"):
            import importlib
            mod = importlib.import_module(f".{algo.lower()}", __name__)
            return getattr(mod, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Algorithm", "AlgorithmConfig", "ALGORITHMS", "get_algorithm_class", "PPO", "PPOConfig", "DQN",
           "DQNConfig", "IMPALA", "IMPALAConfig", "APPO", "APPOConfig"]
