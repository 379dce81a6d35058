"""``MultiAgentEnv`` (Ray's ``ray.rllib.env.multi_agent_env``): several agents in one env.

``reset()`` returns ``(obs, infos)`` and ``step(action_dict)`` returns ``(obs, rewards,
terminateds, truncateds, infos)``, each a dict keyed by agent id; ``terminateds["__all__"]``
/ ``truncateds["__all__"]`` end the episode. Only the agents present in ``obs`` act next.
Spaces per agent: ``observation_spaces`` / ``action_spaces`` dicts (or ``observation_space``
/ ``action_space`` as a ``gymnasium.spaces.Dict`` keyed by agent id, or one space for all).
"""

import gymnasium as gym


class MultiAgentEnv(gym.Env):
    """Base class of multi-agent environments."""

    observation_spaces = None
    action_spaces = None
    agents = []
    possible_agents = []

    def __init__(self):
        super().__init__()
        if not hasattr(self, "observation_space"):
            self.observation_space = None
        if not hasattr(self, "action_space"):
            self.action_space = None

    def reset(self, *, seed=None, options=None):
        raise NotImplementedError

    def step(self, action_dict):
        raise NotImplementedError

    def get_observation_space(self, agent_id):
        if self.observation_spaces is not None:
            return self.observation_spaces[agent_id]
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict) and agent_id in space.spaces:
            return space[agent_id]
        return space

    def get_action_space(self, agent_id):
        if self.action_spaces is not None:
            return self.action_spaces[agent_id]
        space = self.action_space
        if isinstance(space, gym.spaces.Dict) and agent_id in space.spaces:
            return space[agent_id]
        return space

    @property
    def num_agents(self):
        return len(self.agents)

    @property
    def max_num_agents(self):
        return len(self.possible_agents)

    def get_agent_ids(self):
        return set(self.possible_agents or self.agents)

    def render(self):
        return None


def make_multi_agent(env_name_or_creator):
    """A ``MultiAgentEnv`` class made of ``config["num_agents"]`` independent copies of a
    single-agent env (Ray's helper): agent ``i`` is env ``i``."""

    class _MultiEnv(MultiAgentEnv):
        def __init__(self, config=None):
            super().__init__()
            config = dict(config or {})
            n = int(config.pop("num_agents", 1))
            if isinstance(env_name_or_creator, str):
                self.envs = [gym.make(env_name_or_creator, **config) for _ in range(n)]
            else:
                self.envs = [env_name_or_creator(config) for _ in range(n)]
            self.agents = self.possible_agents = list(range(n))
            self.observation_spaces = {i: self.envs[i].observation_space for i in self.agents}
            self.action_spaces = {i: self.envs[i].action_space for i in self.agents}
            self._done = set()

        def reset(self, *, seed=None, options=None):
            self._done = set()
            obs, infos = {}, {}
            for i, e in enumerate(self.envs):
                obs[i], infos[i] = e.reset(seed=None if seed is None else seed + i, options=options)
            return obs, infos

        def step(self, action_dict):
            obs, rew, term, trunc, info = {}, {}, {}, {}, {}
            for i, a in action_dict.items():
                obs[i], rew[i], term[i], trunc[i], info[i] = self.envs[i].step(a)
                if term[i] or trunc[i]:
                    self._done.add(i)
                    obs.pop(i)
            term["__all__"] = len(self._done) == len(self.envs) and all(term.get(i, True) for i in term)
            trunc["__all__"] = len(self._done) == len(self.envs) and not term["__all__"]
            return obs, rew, term, trunc, info

    return _MultiEnv
