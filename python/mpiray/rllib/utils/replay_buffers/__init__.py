"""Replay buffers (``ray.rllib.utils.replay_buffers``): transitions in numpy ring buffers."""

from .replay_buffer import PrioritizedReplayBuffer, ReplayBuffer, rollout_to_transitions

EpisodeReplayBuffer = ReplayBuffer
PrioritizedEpisodeReplayBuffer = PrioritizedReplayBuffer

__all__ = ["ReplayBuffer", "PrioritizedReplayBuffer", "EpisodeReplayBuffer", "PrioritizedEpisodeReplayBuffer",
           "rollout_to_transitions"]
