"""Per-node resources (MPIRAY_NODE_RESOURCES, docs/python.md): a heterogeneous job whose nodes
offer different resources, set in each process's environment.

* under mpirun with two app contexts (``-x MPIRAY_NODE_RESOURCES=...`` each), as a Slurm
  heterogeneous job or an MPMD launch would: each virtual node has its own CPU count and custom
  resources, and tasks that ask for one run where it is;
* a worker that joins a running driver under its own host key with its own resources (what
  ``Cluster.add_node(resources=...)`` of Ray's test utilities does);
* a bad value stops start-up with an error naming the variable.
"""

import json
import sys

import pytest

from conftest import JOIN_NODE, MPIRUN

pytestmark = pytest.mark.timeout(120)

REPORT = """
import json, os, sys
import mpiray as ray

ray.init()

@ray.remote(resources={"fpga": 1})
def on_fpga():
    return ray.get_runtime_context().get_node_id()

@ray.remote(resources={"head": 1})
def on_head():
    return ray.get_runtime_context().get_node_id()

nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
out = {
    "nodes": nodes,
    "fpga_ran_on": sorted(set(ray.get([on_fpga.remote() for _ in range(6)]))),
    "head_ran_on": sorted(set(ray.get([on_head.remote() for _ in range(3)]))),
    "total": ray.cluster_resources(),
}
try:  # more than any node has: refused at once (no autoscaler to grow the job)
    on_fpga.options(resources={"fpga": 3}).remote()
    out["too_big"] = "submitted"
except ray.exceptions.InfeasibleError as e:
    out["too_big"] = str(e)
print("REPORT " + json.dumps(out), flush=True)
"""


def _report(world):
    lines = [l for l in world.stdout.splitlines() if l.startswith("REPORT ")]
    assert lines, world
    return json.loads(lines[-1][len("REPORT "):])


def _node_with(nodes, resource):
    found = [nid for nid, res in nodes.items() if res.get(resource)]
    assert len(found) == 1, nodes
    return found[0]


def _two_nodes(world):
    """The report of a run with a {"head": 1} node and an {"fpga": 2} node, each task kind
    having run on its own node: (report, nodes, fpga node, head node)."""
    assert world.returncode == 0, world
    r = _report(world)
    nodes = r["nodes"]
    assert len(nodes) == 2, nodes
    fpga_node, head_node = _node_with(nodes, "fpga"), _node_with(nodes, "head")
    assert fpga_node != head_node
    assert nodes[fpga_node]["fpga"] == 2 and "head" not in nodes[fpga_node], nodes
    assert r["fpga_ran_on"] == [fpga_node], r
    assert r["head_ran_on"] == [head_node], r
    return r, nodes, fpga_node, head_node


def test_mpmd_launch_gives_each_node_its_own_resources(run_mpi):
    # Two app contexts: ranks 0-1 (the head and one worker) and ranks 2-3, two virtual nodes.
    # run_mpi's launcher appends `python script.py` to a prefix; the first app context names
    # the same script (relative: the launcher runs in the script's folder).
    world = run_mpi.launcher.run(
        [str(MPIRUN), "-x", "MPIRAY_RANKS_PER_NODE=2", "-n", "2",
         "-x", "MPIRAY_NODE_RESOURCES=head=1", sys.executable, "script.py", ":",
         "-x", "MPIRAY_RANKS_PER_NODE=2", "-n", "2", "-x", "MPIRAY_NODE_RESOURCES=fpga=2,CPU=3"],
        REPORT, timeout=90)
    r, nodes, fpga_node, head_node = _two_nodes(world)
    assert nodes[fpga_node]["CPU"] == 3, nodes
    assert nodes[head_node]["head"] == 1 and nodes[head_node]["CPU"] == 1, nodes
    assert "fpga" not in nodes[head_node], nodes
    assert r["total"]["CPU"] == 4 and r["total"]["fpga"] == 2, r
    assert "fpga: 3" in r["too_big"] and "fpga: 2" in r["too_big"], r


def test_joining_worker_brings_its_own_resources(run_script):
    # The driver's node: one local worker and {"head": 1}; a second node joins with {"fpga": 2}.
    script = """
import mpiray as ray
info = ray.init(num_cpus=None)
""" + JOIN_NODE + """
worker = join("joined-node", "fpga=2,CPU=1")
""" + REPORT.replace("ray.init()\n", "") + """
ray.shutdown()
worker.wait(timeout=30)
"""
    world = run_script(script, env={"MPIRAY_NUM_WORKERS": "1", "MPIRAY_NODE_RESOURCES": "head=1"},
                       timeout=90)
    _two_nodes(world)


@pytest.mark.parametrize("value", ["fpga", "fpga=-1", "memory=lots"])
def test_bad_value_names_the_variable(run_script, value):
    world = run_script("import mpiray as ray\nray.init()\nprint('STARTED')\n",
                       env={"MPIRAY_NUM_WORKERS": "1", "MPIRAY_NODE_RESOURCES": value}, timeout=60)
    assert world.returncode != 0, world
    assert "STARTED" not in world.stdout, world
    assert "MPIRAY_NODE_RESOURCES" in world.stderr, world
