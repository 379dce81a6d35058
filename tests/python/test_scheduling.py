"""Placement groups and scheduling strategies from Python (ray.util.placement_group,
ray.util.scheduling_strategies) on real clusters whose workers are each their own node."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)

NODES = {"MPIRAY_RANKS_PER_NODE": "1", "MPIRAY_NUM_WORKERS": "3"}

PG = PRELUDE + """
from mpiray.util.placement_group import (placement_group, placement_group_table,
                                         remove_placement_group, get_placement_group)
from mpiray.util.scheduling_strategies import (PlacementGroupSchedulingStrategy,
                                               NodeAffinitySchedulingStrategy)
ray.init()
node_of = {}

@ray.remote
def where():
    return os.getpid()

@ray.remote
class Holder:
    def pid(self):
        return os.getpid()

def node(pid):
    for p in ray._api._snapshot()["processes"]:
        if p["pid"] == pid:
            return p["node"]

out = {}
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD", name="trio")
out["ready"] = ray.get(pg.ready(), timeout=30)
out["wait"] = pg.wait(10)
row = placement_group_table(pg)
out["state"] = row["state"]
bundle_nodes = [int(row["bundles_to_node_id"][i], 16) for i in range(3)]
out["distinct"] = len(set(bundle_nodes))
out["in_bundle"] = [node(ray.get(where.options(
    scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote())) == bundle_nodes[i]
    for i in range(3)]
h = Holder.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, 1)).remote()
out["actor_in_bundle"] = node(ray.get(h.pid.remote())) == bundle_nodes[1]
out["by_name"] = get_placement_group("trio").wait(5)
# Every CPU is reserved: a plain task must wait until the group goes.
plain = where.remote()
ready, _ = ray.wait([plain], timeout=1.0)
out["plain_waits"] = not ready
remove_placement_group(pg)
out["plain_after_remove"] = node(ray.get(plain, timeout=30)) is not None
try:
    ray.get(h.pid.remote(), timeout=30)
    out["actor_after_remove"] = "alive"
except ray.exceptions.ActorDiedError as e:
    out["actor_after_remove"] = "placement group" in str(e)
out["state_after"] = placement_group_table(pg)["state"]
# Impossible groups are reported.
try:
    placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD").wait(10)
    out["infeasible"] = "no error"
except ray.exceptions.InfeasibleError as e:
    out["infeasible"] = "can never be placed" in str(e)
# A pending group becomes ready when room appears.
blocker = placement_group([{"CPU": 1}] * 3, strategy="SPREAD")
assert blocker.wait(10)
waiting = placement_group([{"CPU": 1}], strategy="PACK")
out["pending_before"] = waiting.wait(0.5)
remove_placement_group(blocker)
out["ready_after"] = waiting.wait(10)
remove_placement_group(waiting)
# Bad input.
errors = []
for bad in ([], [{}], [{"CPU": -1}], "CPU"):
    try:
        placement_group(bad)
    except ValueError:
        errors.append(True)
try:
    placement_group([{"CPU": 1}], strategy="TIGHT")
except ValueError as e:
    errors.append("STRICT_PACK" in str(e))
out["bad_input"] = errors
# SPREAD reaches every node; node affinity sticks.
worker_nodes = sorted({n["NodeID"] for n in ray.nodes() if n["Workers"]})
@ray.remote
def slow():
    time.sleep(0.2)
    return os.getpid()
out["spread_nodes"] = len({node(p) for p in ray.get([slow.options(scheduling_strategy="SPREAD").remote() for _ in range(6)])})
@ray.remote(num_cpus=1)
class Where:
    def pid(self):
        return os.getpid()
spread_actors = [Where.options(scheduling_strategy="SPREAD").remote() for _ in range(3)]
out["spread_actor_nodes"] = len({node(p) for p in ray.get([a.pid.remote() for a in spread_actors])})
for a in spread_actors:
    ray.kill(a)
target = worker_nodes[-1]
soft_actor = Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(target, soft=True)).remote()
out["actor_affinity"] = node(ray.get(soft_actor.pid.remote())) == int(target, 16)
ray.kill(soft_actor)
out["affinity"] = all(node(ray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(target, soft=s)).remote())) == int(target, 16) for s in (False, True, False, True))
try:
    where.options(scheduling_strategy="FASTEST").remote()
    out["bad_strategy"] = "accepted"
except ValueError as e:
    out["bad_strategy"] = "SPREAD" in str(e)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_placement_groups_and_strategies(run_script):
    world = run_script(PG, env=NODES, timeout=90)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["ready"] is True and r["wait"] is True and r["state"] == "CREATED"
    assert r["distinct"] == 3
    assert r["in_bundle"] == [True, True, True]
    assert r["actor_in_bundle"] is True
    assert r["by_name"] is True
    assert r["plain_waits"] is True and r["plain_after_remove"] is True
    assert r["actor_after_remove"] is True
    assert r["state_after"] == "REMOVED"
    assert r["infeasible"] is True
    assert r["pending_before"] is False and r["ready_after"] is True
    assert r["bad_input"] == [True, True, True, True, True]
    assert r["spread_nodes"] == 3
    assert r["spread_actor_nodes"] == 3      # SPREAD actors: one per node
    assert r["actor_affinity"] is True
    assert r["affinity"] is True
    assert r["bad_strategy"] is True


def test_placement_group_under_mpirun(run_mpi):
    world = run_mpi(PRELUDE + """
from mpiray.util.placement_group import placement_group, remove_placement_group
from mpiray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
ray.init()

@ray.remote(num_cpus=1)
def where():
    return os.getpid()

pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
assert pg.wait(30)
pids = ray.get([where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
                for i in range(2) for _ in range(3)])
print("RESULT " + json.dumps({"procs": len(set(pids))}))
remove_placement_group(pg)
ray.shutdown()
""", n=3, env={"MPIRAY_RANKS_PER_NODE": "1"})
    assert world.returncode == 0, world
    assert last_json(world.stdout)["procs"] == 2


GPUS = PRELUDE + """
ray.init()

@ray.remote(num_gpus=1)
def whole():
    time.sleep(0.5)   # overlap with the other one
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

@ray.remote(num_gpus=0.5)
def half():
    time.sleep(0.5)
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

@ray.remote(num_gpus=2)
def both():
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

@ray.remote
def cpu_only():
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

@ray.remote(num_gpus=1)
class Trainer:
    def ids(self):
        return (ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES"),
                ray.get_runtime_context().get_accelerator_ids())

out = {}
out["whole"] = ray.get([whole.remote(), whole.remote()])
out["half"] = ray.get([half.remote() for _ in range(4)])
out["both"] = ray.get(both.remote())
out["cpu"] = ray.get(cpu_only.remote())
t = Trainer.remote()
out["actor"] = [ray.get(t.ids.remote()) for _ in range(2)]
out["driver"] = ray.get_gpu_ids()
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_gpu_ids_and_cuda_visible_devices(run_script):
    # Two GPUs on the node (declared: no device is touched), four workers.
    world = run_script(GPUS, env={"MPIRAY_NUM_GPUS": "2", "MPIRAY_NUM_WORKERS": "4"}, timeout=60)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    # Concurrent whole-GPU tasks get different devices, each in CUDA_VISIBLE_DEVICES.
    assert sorted(ids[0] for ids, _ in r["whole"]) == [0, 1]
    assert all(env == str(ids[0]) for ids, env in r["whole"])
    # Four half-GPU tasks at once: two per device.
    assert sorted(ids[0] for ids, _ in r["half"]) == [0, 0, 1, 1]
    assert r["both"] == [[0, 1], "0,1"]
    assert r["cpu"] == [[], None]
    # An actor keeps its device for every call.
    (ids1, env1, acc1), (ids2, env2, acc2) = r["actor"]
    assert ids1 == ids2 and len(ids1) == 1 and env1 == env2 == str(ids1[0])
    assert acc1 == {"GPU": [str(ids1[0])]}
    assert r["driver"] == []


def test_gpu_ids_are_the_nodes_physical_devices(run_script):
    # A node given GPUs 4 and 6 (as Slurm does with CUDA_VISIBLE_DEVICES): tasks see those ids.
    world = run_script(PRELUDE + """
ray.init()

@ray.remote(num_gpus=1)
def one():
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

@ray.remote(num_gpus=2)
def two():
    return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

print("RESULT " + json.dumps({"gpus": ray.cluster_resources().get("GPU"),
                              "one": ray.get(one.remote()), "two": ray.get(two.remote())}))
ray.shutdown()
""", env={"CUDA_VISIBLE_DEVICES": "4,6", "MPIRAY_NUM_WORKERS": "2"}, timeout=60)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["gpus"] == 2.0
    assert r["one"][0][0] in (4, 6) and r["one"][1] == str(r["one"][0][0])
    assert r["two"] == [[4, 6], "4,6"]
