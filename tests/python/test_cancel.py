"""ray.cancel: queued actor calls, and recursive cancel of a task's children."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(120)

CANCEL = PRELUDE + """
ray.init(resources={"gate": 1})

@ray.remote
class Slow:
    def work(self, s):
        time.sleep(s)
        return s

@ray.remote(resources={"gate": 1})
def hold_gate(s):
    time.sleep(s)
    return "held"

@ray.remote(resources={"gate": 1})
def needs_gate():
    return "child ran"

@ray.remote
def parent():
    return ray.get(needs_gate.remote())   # queued: the gate is held

out = {}
a = Slow.remote()
first = a.work.remote(1.0)
second = a.work.remote(0.1)
third = a.work.remote(0.2)
time.sleep(0.3)
ray.cancel(second)
try:
    ray.get(second, timeout=30)
    out["second"] = "ran"
except ray.exceptions.TaskCancelledError:
    out["second"] = "cancelled"
out["first_third"] = ray.get([first, third], timeout=30)
fourth = a.work.remote(0.5)
try:
    ray.cancel(fourth, force=True)
    out["force_actor"] = "accepted"
except ValueError as e:
    out["force_actor"] = "force=True" in str(e)
ray.get(fourth)

gate = hold_gate.remote(20)
time.sleep(0.3)
t0 = time.monotonic()
p = parent.remote()
time.sleep(0.5)
ray.cancel(p, recursive=True)
try:
    ray.get(p, timeout=30)
    out["parent"] = "ran"
except (ray.exceptions.TaskCancelledError, ray.exceptions.RayTaskError) as e:
    out["parent"] = "cancelled" if "cancelled" in str(e).lower() else str(e)
out["fast"] = time.monotonic() - t0 < 5
ray.cancel(gate)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_cancel_actor_calls_and_children(run_script):
    world = run_script(CANCEL, env={"MPIRAY_NUM_WORKERS": "2"}, timeout=90)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["second"] == "cancelled"
    assert r["first_third"] == [1.0, 0.2]
    assert r["force_actor"] is True
    assert r["parent"] == "cancelled"
    assert r["fast"] is True
