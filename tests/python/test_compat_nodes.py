"""Nodes and node options as Ray's tests use them (issue 10, part D): ``init(_node_ip_address=)``
and ``init(_memory=)``; worker processes joining a running session under their own host key
(SLURMD_NODENAME) become a node of their own and leave with their processes (what the
ray-compat harness's ``Cluster.add_node``/``remove_node`` do); a generator whose items are far
larger than the object store finishes (Ray's ``test_generator_oom``, scaled down); and the
ray-compat harness itself: internals counted apart, nodes added to a running cluster."""

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from conftest import assert_nothing_left, base_env, kill_processes_with_tag
from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(180)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_node_ip_address_option(run_script):
    world = run_script(PRELUDE + """
ctx = ray.init(num_cpus=1, _node_ip_address="10.0.0.111")

@ray.remote
def ip():
    return ray.util.get_node_ip_address()

out = {"driver": ray.util.get_node_ip_address(), "task": ray.get(ip.remote()),
       "ctx": [ctx["node_ip_address"], ctx["raylet_ip_address"]]}
ray.shutdown()
out["after"] = os.environ.get("MPIRAY_NODE_IP_ADDRESS")
errors = []
for bad in ("not an address", 42, ""):
    try:
        ray.init(num_cpus=1, _node_ip_address=bad)
        errors.append("accepted")
        ray.shutdown()
    except (TypeError, ValueError) as e:
        errors.append(type(e).__name__ + ":" + ("_node_ip_address" in str(e)).__str__())
out["errors"] = errors
ray.init(num_cpus=1, _node_ip_address="localhost")
out["localhost"] = ray.util.get_node_ip_address()
ray.shutdown()
print("RESULT " + json.dumps(out))
""", timeout=120)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["driver"] == "10.0.0.111", out
    assert out["task"] == "10.0.0.111", out  # a local worker of the driver's node
    assert out["ctx"] == ["10.0.0.111", "10.0.0.111"], out
    assert out["after"] is None, out  # shutdown takes the override back
    assert out["errors"] == ["ValueError:True", "TypeError:True", "TypeError:True"], out
    assert out["localhost"] == "127.0.0.1", out


def test_memory_init_option(run_script):
    world = run_script(PRELUDE + """
GiB = 1024 ** 3
ray.init(num_cpus=2, _memory=GiB)

@ray.remote(memory=600 * 1024 ** 2, num_cpus=0.01)
def hold(seconds):
    time.sleep(seconds)
    return "held"

@ray.remote(memory=600 * 1024 ** 2, num_cpus=0.01)
class Foo:
    def m(self):
        return 2

out = {"total": ray.cluster_resources().get("memory")}
first = hold.remote(4)
time.sleep(1)
foo = Foo.remote()
ready, _ = ray.wait([foo.m.remote()], timeout=1.5)
out["actor_while_held"] = len(ready)   # 600 MiB + 600 MiB > 1 GiB: it waits
out["first"] = ray.get(first)
out["actor_after"] = ray.get(foo.m.remote(), timeout=30)
ray.shutdown()
try:
    ray.init(num_cpus=1, _memory=-5)
    out["negative"] = "accepted"
except ValueError as e:
    out["negative"] = "_memory" in str(e)
print("RESULT " + json.dumps(out))
""", timeout=120)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["total"] == 1024 ** 3, out
    assert out["actor_while_held"] == 0, out
    assert out["first"] == "held" and out["actor_after"] == 2, out
    assert out["negative"] is True, out


def test_processes_joining_under_their_own_host_key_form_a_node(run_script):
    world = run_script(PRELUDE + """
import subprocess
from mpiray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ctx = ray.init(num_workers=0)   # the driver's node has no CPU
env = dict(os.environ, MPIRAY_JOIN=ctx["session_dir"], SLURMD_NODENAME="added-node")
procs = [subprocess.Popen([sys.executable, "-m", "mpiray._worker"], env=env) for _ in range(2)]
deadline = time.time() + 60
while not any(n["NodeManagerHostname"] == "added-node" and n["Resources"].get("CPU") == 2
              for n in ray.nodes()):
    assert time.time() < deadline, ray.nodes()
    time.sleep(0.05)
added = [n for n in ray.nodes() if n["NodeManagerHostname"] == "added-node"][0]

@ray.remote
def where():
    return ray.get_runtime_context().get_node_id()

out = {"nodes": len(ray.nodes()), "cpus": ray.cluster_resources().get("CPU"),
       "ran_on_added": set(ray.get([where.remote() for _ in range(4)])) == {added["NodeID"]}}
for p in procs:
    p.kill()
    p.wait()
deadline = time.time() + 30
while any(n["NodeManagerHostname"] == "added-node" for n in ray.nodes()):
    assert time.time() < deadline, ray.nodes()
    time.sleep(0.05)
out["after_removal"] = [len(ray.nodes()), ray.cluster_resources().get("CPU", 0)]
try:
    ray.get(where.remote(), timeout=30)
    out["no_cpu_left"] = "ran"
except ray.exceptions.InfeasibleError:
    out["no_cpu_left"] = "infeasible"   # mpiray fails at once where no node can run it
procs = [subprocess.Popen([sys.executable, "-m", "mpiray._worker"], env=env)]
deadline = time.time() + 60
while ray.cluster_resources().get("CPU", 0) < 1:
    assert time.time() < deadline, ray.nodes()
    time.sleep(0.05)
ran_on = ray.get(where.remote(), timeout=60)
out["runs_on_new_node"] = ran_on in [n["NodeID"] for n in ray.nodes() if n["NodeManagerHostname"] == "added-node"]
ray.shutdown()
for p in procs:
    p.wait(timeout=30)
print("RESULT " + json.dumps(out))
""", timeout=150)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["nodes"] == 2 and out["cpus"] == 2, out
    assert out["ran_on_added"] is True, out
    assert out["after_removal"] == [1, 0], out
    assert out["no_cpu_left"] == "infeasible", out
    assert out["runs_on_new_node"] is True, out


def test_generator_items_beyond_the_object_store(run_script):
    # Ray's test_generator_oom at 1/10 of its size against a store 20x smaller: 100 returns of
    # 10 MB (1 GB) through a 150 MB store, as a list and as a generator: both finish (spilled).
    world = run_script(PRELUDE + """
import numpy as np
ray.init(num_cpus=1, object_store_memory=150 * 1000 ** 2)

@ray.remote(max_retries=0)
def large_values(n):
    return [np.full((10_000_000, 1), i % 100, dtype=np.int8) for i in range(n)]

@ray.remote(max_retries=0)
def large_values_generator(n):
    for i in range(n):
        yield np.full((10_000_000, 1), i % 100, dtype=np.int8)

t = time.time()
refs = large_values.options(num_returns=100).remote(100)
out = {"list": [int(ray.get(refs[0])[0, 0]), int(ray.get(refs[99])[-1, 0])]}
del refs
refs = large_values_generator.options(num_returns=100).remote(100)
out["generator"] = [int(ray.get(refs[0])[0, 0]), int(ray.get(refs[57])[5, 0]), int(ray.get(refs[99]).sum() // 10_000_000)]
out["seconds"] = time.time() - t
ray.shutdown()
print("RESULT " + json.dumps(out))
""", timeout=170)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["list"] == [0, 99], out
    assert out["generator"] == [0, 57, 99], out


PROBE = '''
from unittest.mock import patch

import pytest

import ray


def test_public(ray_start_regular):
    assert ray.get(ray.put(41)) + 1 == 42


def test_public_failure(ray_start_regular):
    assert ray.get(ray.put(1)) == 2


def test_internal_attribute(ray_start_regular):
    ray.worker.global_worker.core_worker.object_exists(None)


def test_internal_in_a_task(ray_start_regular):
    @ray.remote
    def f():
        import ray._raylet
        return ray._raylet.GcsClient()

    ray.get(f.remote())


def test_internal_patched():
    with patch("ray._private.worker") as worker:
        worker._global_node.node_ip_address = "10.0.0.1"
        assert ray.util.get_node_ip_address() == "10.0.0.1"


def test_internal_fixture(error_pubsub):
    pass


def test_nodes_added_and_removed(ray_start_cluster):
    cluster = ray_start_cluster
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    assert len(ray.nodes()) == 2
    node = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    assert len(ray.nodes()) == 3 and ray.cluster_resources()["CPU"] == 4

    @ray.remote(num_cpus=2)
    def where():
        return ray.get_runtime_context().get_node_id()

    assert ray.get(where.remote()) == node.node_id
    cluster.remove_node(node, allow_graceful=False)
    assert len(ray.nodes()) == 2 and ray.cluster_resources()["CPU"] == 2
'''


def test_ray_compat_harness(tmp_path):
    """scripts/ray-compat on a test file of ours: the public-API tests pass or fail, the ones
    failing on a Ray internal are counted apart and named, and a Cluster gets real nodes."""
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_probe.py").write_text(textwrap.dedent(PROBE))
    session_root, shm_dir = tmp_path / "session", tmp_path / "shm"
    session_root.mkdir()
    shm_dir.mkdir()
    tag = uuid.uuid4().hex
    env = base_env(tag, session_root, shm_dir)
    out_json = tmp_path / "out.json"
    try:
        proc = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "ray-compat"), "--tests-dir",
                               str(tests), "test_probe.py", "--details", "--timeout", "60",
                               "--json", str(out_json)],
                              env=env, capture_output=True, text=True, timeout=170)
    except subprocess.TimeoutExpired as e:
        kill_processes_with_tag(tag)
        raise AssertionError(f"ray-compat did not finish:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out_json.read_text())
    f = result["files"]["test_probe.py"]
    assert f["collected"] == 7, f
    assert f.get("passed") == 2 and f.get("failed") == 1, f
    assert f.get("internal") == 4 and f["public"] == 3, f
    assert set(f["internal_tests"]) == {"test_internal_attribute", "test_internal_in_a_task",
                                        "test_internal_patched", "test_internal_fixture"}, f
    assert "ray._private.worker" in f["internal_tests"]["test_internal_patched"], f
    assert list(f["not_passed"]) == ["test_public_failure"], f
    assert result["pass_rate"] == round(2 / 3, 3), result
    assert_nothing_left(tag, session_root, shm_dir, 10.0)


def test_system_config_refused_when_connecting():
    """As Ray: a cluster one connects to keeps the settings it started with."""
    import mpiray
    with pytest.raises(ValueError, match="_system_config"):
        mpiray.init(address="auto", _system_config={"object_timeout_milliseconds": 200})
    assert not mpiray.is_initialized()
