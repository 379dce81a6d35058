"""PPO under ``mpirun`` on 3 virtual nodes (``MPIRAY_RANKS_PER_NODE=2``): the env runners
spread over the nodes, the learner is an actor on a node of its own choosing, so weights and
rollouts cross nodes through the stores and UCX; the run learns and leaves nothing behind."""

import json

import pytest

SCRIPT = r'''
import json
import mpiray as ray
from mpiray.rllib.algorithms.ppo import PPOConfig
from mpiray.rllib.core.rl_module.default_model_config import DefaultModelConfig

ray.init()
config = (PPOConfig().environment("CartPole-v1")
          .env_runners(num_env_runners=3, num_envs_per_env_runner=8)
          .learners(num_learners=1)
          .training(lr=3e-4, num_epochs=6, vf_loss_coeff=0.01, train_batch_size_per_learner=3000,
                    minibatch_size=128)
          .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=[32], fcnet_activation="linear"))
          .debugging(seed=0))
algo = config.build_algo()
returns = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(10)]
runner_nodes = algo.env_runner_group.foreach_env_runner(lambda r: ray.get_runtime_context().get_node_id())
learner_nodes = algo.learner_group.foreach_learner(lambda l: ray.get_runtime_context().get_node_id())
driver_node = ray.get_runtime_context().get_node_id()
algo.stop()
print("RESULT " + json.dumps({"returns": returns, "runner_nodes": runner_nodes, "learner_nodes": learner_nodes,
                              "driver_node": driver_node, "nodes": len(ray.nodes())}))
ray.shutdown()
'''


@pytest.mark.timeout(600)
def test_ppo_runners_spread_over_virtual_nodes(run_mpi):
    world = run_mpi(SCRIPT, n=5, env={"MPIRAY_RANKS_PER_NODE": "2"}, timeout=560)
    assert world.returncode == 0, world
    line = [l for l in world.stdout.splitlines() if l.startswith("RESULT ")]
    assert line, world
    r = json.loads(line[0][len("RESULT "):])
    assert r["nodes"] == 3
    assert len(set(r["runner_nodes"])) == 3, r           # one runner per node (SPREAD)
    assert r["returns"][-1] > 2 * r["returns"][0], r     # it learned across the nodes
