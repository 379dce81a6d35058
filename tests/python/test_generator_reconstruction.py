"""Items of a ``num_returns="dynamic"`` generator are returns of their task (as in Ray): when
the node holding them dies, the task runs again (lineage) and they come back; a rerun whose
generator yields fewer items makes the missing ones errors instead of leaving them pending.

Two nodes of one host: the driver's (one worker, MPIRAY_NODE_RESOURCES=CPU=0, so no task runs
there; it hosts the bookkeeping actor) and a joined worker under its own host key that offers
the only CPU. That node is SIGKILLed and another joins in its place.
"""

import pytest

from conftest import JOIN_NODE
from test_lifecycle import last_json

pytestmark = pytest.mark.timeout(120)

PRELUDE = """
import json
import numpy as np
import mpiray as ray

info = ray.init()

""" + JOIN_NODE + """
@ray.remote(num_cpus=0)
class Counter:
    def __init__(self):
        self.n = 0
    def inc(self):
        self.n += 1
        return self.n

@ray.remote
def first(x):
    return int(x[0])
"""


def test_lost_items_are_rebuilt_by_running_the_task_again(run_script):
    world = run_script(PRELUDE + """
@ray.remote(num_returns="dynamic")
def gen(counter, n):
    ray.get(counter.inc.remote())
    for i in range(n):
        yield np.full(300_000, i, dtype=np.int8)   # in the node's store, not inline

counter = Counter.remote()
b = join("node-b")
g = ray.get(gen.remote(counter, 6))
refs = list(g)
before = [ray.get(first.remote(r)) for r in refs]
kill(b, "node-b")
c = join("node-c")
after = [ray.get(first.remote(r)) for r in refs]   # each one lost, made again by a rerun
direct = [int(ray.get(r)[0]) for r in refs]
out = {"before": before, "after": after, "direct": direct, "runs": ray.get(counter.inc.remote()) - 1}
print("RESULT " + json.dumps(out))
ray.shutdown()
c.wait(timeout=30)
""", env={"MPIRAY_NUM_WORKERS": "1", "MPIRAY_NODE_RESOURCES": "CPU=0"}, timeout=100)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["before"] == list(range(6)), out
    assert out["after"] == list(range(6)), out
    assert out["direct"] == list(range(6)), out
    assert out["runs"] == 2, out   # the first run and one rerun for all six items


def test_rerun_that_yields_fewer_items_fails_the_missing_ones(run_script):
    world = run_script(PRELUDE + """
@ray.remote(num_returns="dynamic")
def shrinking(counter):
    n = 4 if ray.get(counter.inc.remote()) == 1 else 2   # not deterministic
    for i in range(n):
        yield np.full(300_000, i, dtype=np.int8)

counter = Counter.remote()
b = join("node-b")
refs = list(ray.get(shrinking.remote(counter)))
kill(b, "node-b")
c = join("node-c")
out = {"values": [], "errors": []}
for r in refs:
    try:
        out["values"].append(int(ray.get(r, timeout=60)[0]))
    except ray.exceptions.GetTimeoutError:
        out["errors"].append("timeout")
    except ray.exceptions.RayError as e:
        out["errors"].append(type(e).__name__ + ": " + str(e))
print("RESULT " + json.dumps(out))
ray.shutdown()
c.wait(timeout=30)
""", env={"MPIRAY_NUM_WORKERS": "1", "MPIRAY_NODE_RESOURCES": "CPU=0"}, timeout=100)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["values"] == [0, 1], out
    assert len(out["errors"]) == 2, out
    for e in out["errors"]:
        assert "RayTaskError" in e and "not deterministic" in e, out
