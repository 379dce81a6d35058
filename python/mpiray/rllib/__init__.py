"""mpiray.rllib: RLlib's algorithms (new API stack) on mpiray (``from mpiray.rllib.algorithms.ppo
import PPOConfig`` where a script has ``from ray.rllib.algorithms.ppo import PPOConfig``).

Env runners are actors spread over the nodes; CartPole, Pendulum, MountainCar(Continuous) and
Acrobot run as mpiray's Kokkos batched envs when ``num_envs_per_env_runner > 1``; learners are
torch modules in this process or in learner actors whose gradients are all-reduced; weights
reach the runners as one object in the store per iteration. See docs/rllib.md.
"""

from .._extras import require as _require

_require("rllib", "torch", "gymnasium")  # a missing one names the extra: pip install "mpiray[rllib]"

from .algorithms.algorithm import Algorithm
from .algorithms.algorithm_config import AlgorithmConfig
from .algorithms.registry import register_with_tune as _register_with_tune
from .core.rl_module.default_model_config import DefaultModelConfig
from .env.multi_agent_env import MultiAgentEnv
from .policy.policy import PolicySpec

_register_with_tune()

__all__ = ["Algorithm", "AlgorithmConfig", "DefaultModelConfig", "MultiAgentEnv", "PolicySpec"]
