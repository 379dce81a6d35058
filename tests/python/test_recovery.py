"""Fault tolerance seen from Python: restarted actors, objects rebuilt from lineage, lost put
objects, replaced local workers. Each test runs a real cluster (plain ``python`` with local
workers, or ``mpirun --enable-recovery``) and SIGKILLs worker processes."""

import json

from test_lifecycle import PRELUDE, last_json

KILLER = PRELUDE + """
import signal

def wait_gone(pid):
    os.kill(pid, signal.SIGKILL)
    # Until the head notices, a reader on this machine could still map the dead node's files.
    for _ in range(1000):
        if all(p["pid"] != pid for p in ray._api._snapshot()["processes"]):
            return
        time.sleep(0.01)
    raise RuntimeError(f"the head never noticed that {pid} died")
"""

ACTORS = KILLER + """
ray.init(num_cpus=4)

@ray.remote(max_restarts=1, max_task_retries=-1)
class Phoenix:
    def __init__(self, start):
        self.value = start
        self.pid = os.getpid()
    def add(self, x):
        self.value += x
        return self.value
    def pid_(self):
        return self.pid
    def die_once(self, marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.value

out = {}
p = Phoenix.remote(10)
out["first"] = ray.get(p.add.remote(1))
pid1 = ray.get(p.pid_.remote())
marker = os.path.join(os.environ["MPIRAY_SESSION_ROOT"], "..", "marker-" + str(os.getpid()))
r1 = p.die_once.remote(marker)
r2 = p.add.remote(5)
out["retried"] = ray.get([r1, r2], timeout=60)        # re-sent to the new instance, in order
out["new_pid"] = ray.get(p.pid_.remote()) != pid1
os.remove(marker)
try:                                                   # no restarts left now
    ray.get(p.die_once.options(max_task_retries=0).remote(marker), timeout=60)
    out["final"] = "no error"
except ray.exceptions.ActorDiedError:
    out["final"] = "ActorDiedError"
os.remove(marker)
try:
    ray.get(p.add.remote(1), timeout=60)
    out["after_final"] = "no error"
except ray.exceptions.ActorDiedError:
    out["after_final"] = "ActorDiedError"

@ray.remote(max_restarts=1)
class Plain:
    def __init__(self):
        self.n = 0
    def incr(self):
        self.n += 1
        return self.n

k = Plain.remote()
out["k"] = [ray.get(k.incr.remote()), ray.get(k.incr.remote())]
ray.kill(k, no_restart=False)                          # restarted: state starts over
out["k_after_restart"] = ray.get(k.incr.remote(), timeout=60)
ray.kill(k)                                            # no_restart=True: gone
try:
    ray.get(k.incr.remote(), timeout=60)
    out["k_final"] = "no error"
except ray.exceptions.ActorDiedError:
    out["k_final"] = "ActorDiedError"
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_actor_restarts_and_retried_calls(run_script):
    world = run_script(ACTORS, timeout=120)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["first"] == 11
    assert r["retried"] == [10, 15]   # the constructor ran again, then both calls
    assert r["new_pid"] is True
    assert r["final"] == "ActorDiedError"
    assert r["after_final"] == "ActorDiedError"
    assert r["k"] == [1, 2]
    assert r["k_after_restart"] == 1
    assert r["k_final"] == "ActorDiedError"


ACTOR_RESOURCES = KILLER + """
ray.init(num_cpus=2)

@ray.remote(num_cpus=1)
class Holder:
    def pid(self):
        return os.getpid()

@ray.remote(num_cpus=2)
def whole():
    return "ran"

out = {}
a, b = Holder.remote(), Holder.remote()
pids = ray.get([a.pid.remote(), b.pid.remote()])
out["before"] = ray.available_resources().get("CPU", 0)
wait_gone(pids[0])                                     # a's worker dies: a's CPU comes back
try:
    ray.get(a.pid.remote(), timeout=60)
    out["a"] = "no error"
except ray.exceptions.ActorDiedError:
    out["a"] = "ActorDiedError"
c = Holder.remote()                                    # a replacement with the same resources
out["c_alive"] = ray.get(c.pid.remote(), timeout=60) > 0
ray.kill(b)
ray.kill(c)
ready, _ = ray.wait([whole.remote()], timeout=60)      # every CPU of the cluster is free again
out["whole"] = ray.get(ready[0]) if ready else "never scheduled"
deadline = time.time() + 30
while time.time() < deadline and ray.available_resources().get("CPU", 0) < 2:
    time.sleep(0.1)
out["after"] = ray.available_resources().get("CPU", 0)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_dead_actor_process_gives_its_resources_back(run_script):
    world = run_script(ACTOR_RESOURCES, timeout=180)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["before"] == 0
    assert r["a"] == "ActorDiedError"
    assert r["c_alive"] is True
    assert r["whole"] == "ran"
    assert r["after"] == 2


LINEAGE = KILLER + """
import numpy as np
ray.init(num_cpus=4)

@ray.remote
def produce(seed, log):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    return np.random.default_rng(seed).integers(0, 1 << 30, size=1 << 18)   # 2 MiB

@ray.remote
def double(a):
    return a * 2

@ray.remote
def put_inside():
    return [ray.put(np.arange(1 << 18)), os.getpid()]

def pids(log):
    return [int(x) for x in open(log).read().split()]

root = os.environ["MPIRAY_SESSION_ROOT"] + "-" + str(os.getpid())
out = {}
# The only copy of an object dies with its node: the task runs again.
a = produce.remote(1, root + "-a")
ray.wait([a], timeout=60)
wait_gone(pids(root + "-a")[0])
out["a_equal"] = bool((ray.get(a, timeout=60) == np.random.default_rng(1).integers(0, 1 << 30, size=1 << 18)).all())
out["a_runs"] = len(pids(root + "-a"))
# A chain whose first link was freed.
b = double.remote(produce.remote(2, root + "-b"))
ray.wait([b], timeout=60)
wait_gone(pids(root + "-b")[0])
expect = np.random.default_rng(2).integers(0, 1 << 30, size=1 << 18) * 2
out["b_equal"] = bool((ray.get(b, timeout=60) == expect).all())
out["b_runs"] = len(pids(root + "-b"))
# A large argument passed by value (stored for the call, let go by the driver) is kept by the
# lineage: the task can run again.
@ray.remote
def scaled(a, log):
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\\n")
    return a * 3

c = scaled.remote(np.arange(1 << 20), root + "-c")     # an 8 MiB argument
ray.wait([c], timeout=60)
wait_gone(pids(root + "-c")[0])
out["c_equal"] = bool((ray.get(c, timeout=60) == np.arange(1 << 20) * 3).all())
out["c_runs"] = len(pids(root + "-c"))
# A put object has no lineage: an error, not a hang.
inner, pid = ray.get(put_inside.remote())
ray.wait([inner], timeout=60)
wait_gone(pid)
try:
    ray.get(inner, timeout=60)
    out["put"] = "no error"
except ray.exceptions.ObjectLostError as e:
    out["put"] = "ObjectLostError" if "put()" in str(e) else str(e)
for suffix in ("-a", "-b", "-c"):
    os.remove(root + suffix)
# Dead local workers are replaced: the cluster gets its 4 workers back.
def workers():
    return sum(len(n["Workers"]) for n in ray.nodes())
for _ in range(500):
    if workers() == 4:
        break
    time.sleep(0.02)
out["workers"] = workers()
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_lineage_rebuilds_lost_objects(run_script):
    world = run_script(LINEAGE, env={"MPIRAY_RANKS_PER_NODE": "1"}, timeout=120)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r["a_equal"] and r["a_runs"] == 2
    assert r["b_equal"] and r["b_runs"] == 2
    assert r["c_equal"] and r["c_runs"] == 2
    assert r["put"] == "ObjectLostError"
    assert r["workers"] == 4


MPI_RESTART = KILLER + """
ray.init()

@ray.remote(max_restarts=-1, max_task_retries=-1)
class Counter:
    def __init__(self):
        self.n = 0
    def incr(self):
        self.n += 1
        return self.n
    def where(self):
        return os.getpid()

c = Counter.remote()
ray.get([c.incr.remote() for _ in range(5)])
wait_gone(ray.get(c.where.remote()))
out = {"after": ray.get(c.incr.remote(), timeout=60),
       "restarts": ray._api._snapshot()["actor_restarts"]}
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_actor_restarts_under_mpirun_recovery(run_mpi):
    world = run_mpi(MPI_RESTART, n=4, recovery=True, timeout=90)
    assert world.returncode == 0, world
    r = last_json(world.stdout)
    assert r == {"after": 1, "restarts": 1}
