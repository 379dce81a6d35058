"""Environments and env runners (``ray.rllib.env``)."""

from .env_context import EnvContext
from .multi_agent_env import MultiAgentEnv, make_multi_agent
from .utils import EnvError

__all__ = ["EnvContext", "MultiAgentEnv", "make_multi_agent", "EnvError"]
