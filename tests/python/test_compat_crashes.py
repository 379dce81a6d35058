"""Crashes and hangs Ray programs ran into (issue 10): huge max_concurrency, bursts on async
actors, work submitted right after a worker died, get of a failed and a pending ref,
placement groups that capture their child tasks. Every script defines its remote functions
and classes in ``__main__``, as users do."""

import pytest

from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(150)


def test_huge_max_concurrency_keeps_the_worker(run_script):
    world = run_script(PRELUDE + """
import asyncio
ray.init(num_cpus=1)

@ray.remote(max_concurrency=100000)
class Threaded:
    def pid(self):
        time.sleep(0.01)
        return os.getpid()

@ray.remote(max_concurrency=100000)
class Async:
    async def pid(self):
        await asyncio.sleep(0.01)
        return os.getpid()

t = Threaded.remote()
a = Async.remote()
pids = ray.get([t.pid.remote() for _ in range(200)] + [a.pid.remote() for _ in range(200)],
               timeout=60)
print("RESULT " + json.dumps({"pids": sorted(set(pids))}))
""", timeout=120)
    assert world.returncode == 0, world
    assert len(last_json(world.stdout)["pids"]) == 1, world  # the one worker hosts both, alive
    assert "system_error" not in world.stderr and "left the cluster" not in world.stderr, world


def test_async_actor_burst_does_not_starve_heartbeats(run_script):
    # 4,000 overlapping calls on an async actor with max_concurrency=8000; with a 3 s
    # heartbeat timeout a worker whose messages starve behind the burst would be declared dead.
    world = run_script(PRELUDE + """
import asyncio
ray.init(num_cpus=1)

@ray.remote(max_concurrency=8000)
class Burst:
    async def f(self, i):
        await asyncio.sleep(0.5)
        return i
    def pid(self):
        return os.getpid()

b = Burst.remote()
pid = ray.get(b.pid.remote())
out = ray.get([b.f.remote(i) for i in range(4000)], timeout=100)
time.sleep(4)  # past the heartbeat timeout: the worker is still there and still answers
print("RESULT " + json.dumps({"ok": out == list(range(4000)),
                              "same": ray.get(b.pid.remote(), timeout=30) == pid}))
""", env={"MPIRAY_HEARTBEAT_TIMEOUT_MS": "3000"}, timeout=140)
    assert world.returncode == 0, world
    assert last_json(world.stdout) == {"ok": True, "same": True}, world
    assert "no heartbeat" not in world.stderr, world


def test_work_submitted_right_after_a_worker_death_waits_for_its_replacement(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=1)

@ray.remote(max_retries=0)
def die():
    os._exit(1)

@ray.remote
def pid():
    return os.getpid()

@ray.remote
class Actor:
    def pid(self):
        return os.getpid()

first = ray.get(pid.remote())
try:
    ray.get(die.remote(), timeout=30)
except ray.exceptions.WorkerCrashedError:
    pass
# At once, before the replacement worker has joined: neither may be "infeasible".
task = pid.remote()
actor = Actor.remote()
free = Actor.options(num_cpus=0).remote()
got = ray.get([task, actor.pid.remote(), free.pid.remote()], timeout=60)
print("RESULT " + json.dumps({"new_worker": got[0] != first, "one": len(set(got)) == 1}))
""", timeout=120)
    assert world.returncode == 0, world
    assert last_json(world.stdout) == {"new_worker": True, "one": True}, world


def test_zero_cpu_work_runs_on_a_cluster_without_cpus(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=0)

@ray.remote(num_cpus=0)
def free():
    return 1

@ray.remote
class Actor:            # actors need no CPU to be placed (as Ray)
    def one(self):
        return 1

@ray.remote
def needs_cpu():
    return 1

out = ray.get([free.remote(), Actor.remote().one.remote()], timeout=30)
try:
    needs_cpu.remote()
    infeasible = False
except ray.exceptions.InfeasibleError:   # ours: named at submission; Ray waits forever
    infeasible = True
print("RESULT " + json.dumps({"out": out, "infeasible": infeasible,
                              "cpus": ray.cluster_resources().get("CPU", 0)}))
""", timeout=90)
    assert world.returncode == 0, world
    assert last_json(world.stdout) == {"out": [1, 1], "infeasible": True, "cpus": 0}, world


def test_get_raises_the_first_error_without_waiting_for_pending_refs(run_script):
    world = run_script(PRELUDE + """
ray.init(num_cpus=3)

@ray.remote
def slow():
    time.sleep(60)
    return 1

@ray.remote
def fails():
    raise KeyError("boom")

@ray.remote
def inner():                      # the same from inside a task (a worker's get)
    s, f = slow.remote(), fails.remote()
    t0 = time.monotonic()
    try:
        ray.get([s, f])
    except KeyError:
        return time.monotonic() - t0

s, f = slow.remote(), fails.remote()
t0 = time.monotonic()
try:
    ray.get([s, f], timeout=50)
    raised = None
except KeyError as e:
    raised = type(e).__name__
driver_s = time.monotonic() - t0
worker_s = ray.get(inner.remote(), timeout=50)
print("RESULT " + json.dumps({"raised": raised is not None, "driver_s": driver_s,
                              "worker_s": worker_s}))
""", timeout=120)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["raised"], world
    assert out["driver_s"] < 20 and out["worker_s"] < 20, world


def test_placement_group_captures_child_tasks_and_lends_the_blocked_parents_cpu(run_script):
    world = run_script(PRELUDE + """
from mpiray.util.placement_group import placement_group, get_current_placement_group
from mpiray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
ray.init(num_cpus=1)
pg = placement_group([{"CPU": 1}])      # the cluster's only CPU
ray.get(pg.ready(), timeout=30)

@ray.remote
def leaf(i):
    g = get_current_placement_group()
    return g.id.hex() if g is not None else None

@ray.remote
def fib(n):                             # nested blocked parents, all inside the one bundle
    if n < 2:
        return n
    return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))

@ray.remote
def parent():
    return ray.get([leaf.remote(i) for i in range(3)]), ray.get(fib.remote(6))

@ray.remote
class Holder:
    def run(self):
        return ray.get(leaf.remote(0))

capture = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
leaves, f = ray.get(parent.options(scheduling_strategy=capture).remote(), timeout=60)
h = Holder.options(scheduling_strategy=capture).remote()
print("RESULT " + json.dumps({"leaves": leaves, "fib": f, "actor": ray.get(h.run.remote(), timeout=60),
                              "pg": pg.id.hex(), "driver": get_current_placement_group() is None}))
""", timeout=120)
    assert world.returncode == 0, world
    out = last_json(world.stdout)
    assert out["leaves"] == [out["pg"]] * 3 and out["actor"] == out["pg"], world
    assert out["fib"] == 8 and out["driver"], world
