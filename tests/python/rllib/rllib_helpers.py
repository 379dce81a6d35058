"""Shared helpers of the RLlib tests."""

import math
import os
import time

# MPIRAY_RLLIB_FULL=1 (make test-rllib-full): the thresholds for every learning test.
# Otherwise the three slowest tests (PPO CartPole, DQN, PPO Pendulum) stop at lower thresholds
# that still prove learning, so that `make test` stays short on 2 busy cores.
FULL = os.environ.get("MPIRAY_RLLIB_FULL") == "1"


def target(full, bounded):
    """The threshold a learning test must reach."""
    return full if FULL else bounded


def train_until(algo, done, max_iters, log=None):
    """Train until ``done(result)`` or ``max_iters``; returns the results."""
    out = []
    t0 = time.monotonic()
    for _ in range(max_iters):
        r = algo.train()
        out.append(r)
        if log is not None:
            e = r["env_runners"]
            log.append((round(time.monotonic() - t0, 1), e["num_env_steps_sampled_lifetime"],
                        e["episode_return_mean"]))
        if done(r):
            break
    return out


def ret(r):
    v = r["env_runners"]["episode_return_mean"]
    return -math.inf if v != v else v
