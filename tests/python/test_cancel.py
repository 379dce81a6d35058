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


def test_what_a_cancel_leaves_on_a_thread_ends_with_the_call_it_cancelled(run_script):
    """A cancel racing with the end of its call (its KeyboardInterrupt landing in run_task's
    cleanup) left the thread's waits interrupted: every later get of that thread failed with
    'cancelled while it waited'. The runtime clears it when the call ends."""
    world = run_script(PRELUDE + """
import threading
from mpiray import _core
ray.init(num_cpus=1)

@ray.remote
class A:
    def leave_interrupted(self):
        # What such a cancel leaves: this thread's waits interrupted, the Python side not told.
        _core.interrupt_waits(threading.get_ident(), True)
        return threading.get_ident()

    def fetch(self, refs):
        return threading.get_ident(), ray.get(refs[0]) + 1

a = A.remote()
value = [ray.put(41)]
t1 = ray.get(a.leave_interrupted.remote())
try:
    t2, got = ray.get(a.fetch.remote(value))
except Exception as e:
    t2, got = None, type(e).__name__ + ": " + str(e)[:200]
print("RESULT " + json.dumps({"same_thread": t1 == t2, "got": got}))
ray.shutdown()
""")
    assert world.returncode == 0, world.stderr
    out = last_json(world.stdout)
    assert out["got"] == 42, out
    assert out["same_thread"], out
