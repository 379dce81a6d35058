"""ray.nodes(), cluster_resources(), available_resources() and placement_group_table() answer
inside tasks and actors as on the driver (Ray programs call them there, e.g. a
multiprocessing.Pool sized by the cluster inside a task); under mpirun the question crosses
processes (kClusterQuery to the head)."""

import pytest

pytestmark = pytest.mark.timeout(120)

SCRIPT = """
import json
import mpiray as ray

ray.init(num_cpus=3, resources={"Custom": 2})

@ray.remote(num_cpus=1)
def inside():
    return {"cluster": ray.cluster_resources(), "available": ray.available_resources(),
            "nodes": len(ray.nodes()), "alive": all(n["Alive"] for n in ray.nodes()),
            "groups": len(ray.util.placement_group_table())}

@ray.remote(num_cpus=1, resources={"Custom": 1})
class A:
    def ask(self):
        return ray.available_resources()

pg = ray.util.placement_group([{"CPU": 1}])
ray.get(pg.ready())
info = ray.get(inside.remote())
a = A.remote()
held = ray.get(a.ask.remote())
out = {"cluster": info["cluster"], "available": info["available"], "nodes": info["nodes"],
       "alive": info["alive"], "groups": info["groups"], "driver_nodes": len(ray.nodes()),
       "actor_sees": held, "driver_cluster": ray.cluster_resources()}
print("RESULT " + json.dumps(out))
"""


def _check(out):
    assert out["cluster"]["CPU"] == out["driver_cluster"]["CPU"], out
    assert out["cluster"]["Custom"] == 2, out
    # the task's own CPU and the group's bundle are taken while it asks
    assert out["available"]["CPU"] <= out["cluster"]["CPU"] - 2, out
    assert out["nodes"] == out["driver_nodes"] >= 1 and out["alive"], out
    assert out["groups"] == 1, out
    assert out["actor_sees"]["Custom"] == 1, out


def test_cluster_information_inside_tasks_and_actors(run_script):
    from test_lifecycle import last_json
    world = run_script(SCRIPT)
    assert world.returncode == 0, world
    _check(last_json(world.stdout))


def test_cluster_information_inside_tasks_under_mpirun(run_mpi):
    from test_lifecycle import last_json
    world = run_mpi(SCRIPT.replace("ray.init(num_cpus=3, resources={\"Custom\": 2})",
                                   "ray.init(resources={\"Custom\": 2})"), n=4, timeout=90)
    assert world.returncode == 0, world
    _check(last_json(world.stdout))
