"""``PolicySpec`` (Ray's ``ray.rllib.policy.policy.PolicySpec``)."""


class PolicySpec:
    """One entry of ``config.multi_agent(policies={...})``: optional spaces and config overrides
    (``{"lr": ..., "model_config": ...}``) for that policy's module."""

    def __init__(self, policy_class=None, observation_space=None, action_space=None, config=None):
        self.policy_class = policy_class
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config

    def __eq__(self, other):
        return isinstance(other, PolicySpec) and (self.policy_class, self.observation_space, self.action_space,
                                                  self.config) == (other.policy_class, other.observation_space,
                                                                   other.action_space, other.config)

    def __repr__(self):
        return (f"PolicySpec(observation_space={self.observation_space}, action_space={self.action_space}, "
                f"config={self.config})")
