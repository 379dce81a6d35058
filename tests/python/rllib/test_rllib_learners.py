"""Several learner actors: gradients averaged every step through mpiray.util.collective or
torch.distributed (gloo), so the replicas stay identical and the run learns; both backends
give the same run."""

import numpy as np
import pytest

from mpiray.rllib.algorithms.impala import IMPALAConfig
from mpiray.rllib.algorithms.ppo import PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig

from rllib_helpers import ret, train_until

pytestmark = pytest.mark.usefixtures("ray_cluster")


def two_learner_ppo(backend):
    return (PPOConfig().environment("CartPole-v1")
            # the runners reserve no CPU so that two learner actors fit the 2-CPU test cluster
            .env_runners(num_env_runners=2, num_envs_per_env_runner=8, num_cpus_per_env_runner=0)
            .learners(num_learners=2, learner_collective_backend=backend)
            .training(lr=3e-4, num_epochs=6, vf_loss_coeff=0.01, train_batch_size_per_learner=2000,
                      minibatch_size=128)
            .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear"))
            .debugging(seed=0))


@pytest.mark.timeout(600)
def test_two_learners_stay_identical_and_learn_with_either_backend():
    curves = {}
    for backend in ("mpiray", "torch"):
        algo = two_learner_ppo(backend).build_algo()
        try:
            assert algo.learner_group.collective_backend == backend
            hosts = algo.learner_group.foreach_learner(lambda l: l.ping())
            assert [h["rank"] for h in hosts] == [0, 1] and len({h["pid"] for h in hosts}) == 2
            results = train_until(algo, lambda r: False, 8)
            ws = algo.learner_group.foreach_learner(lambda l: l.get_weights()["default_policy"])
            for k in ws[0]:
                np.testing.assert_array_equal(ws[0][k], ws[1][k])
            # each learner trained on its runner's rollouts, straight from the store
            assert results[-1]["learners"]["__all_modules__"]["num_env_steps_trained"] > 3500
            assert ret(results[-1]) > 2 * ret(results[0]), [ret(r) for r in results]
            curves[backend] = [ret(r) for r in results]
        finally:
            algo.stop()
    np.testing.assert_allclose(curves["mpiray"], curves["torch"], rtol=1e-4)


@pytest.mark.timeout(300)
def test_impala_with_a_remote_learner_trains_while_sampling():
    config = (IMPALAConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=2, num_envs_per_env_runner=8, rollout_fragment_length=50,
                           num_cpus_per_env_runner=0)
              .learners(num_learners=1)       # IMPALA's default: one learner actor
              .training(lr=5e-4, train_batch_size_per_learner=800, vf_loss_coeff=0.5, entropy_coeff=0.0)
              .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[64]))
              .reporting(min_time_s_per_iteration=2)
              .debugging(seed=0))
    algo = config.build_algo()
    try:
        assert not algo.learner_group.is_local
        results = train_until(algo, lambda r: ret(r) >= 100, 20)
        assert ret(results[-1]) >= 100, [ret(r) for r in results]
    finally:
        algo.stop()
