"""Ray's process model on request (MPIRAY_ACTOR_PROCESSES=dedicated, the default of the
`import ray` alias): every actor in a worker process started for it, which ends with it.
What Ray programs rely on: pids of their own, the pid gone after the actor, atexit handlers on a
clean end (not after kill), sys.exit()/os._exit() in one actor ending only that actor (restart
and call retries as after a crash), sys.exit() in a task as a worker crash, a process title
per call, tasks never run in an actor's process. Under mpirun the ranks are fixed: actors share
them as without the setting."""

import sys

import pytest

from test_compat_api_alias import _run
from test_lifecycle import PRELUDE, last_json

pytestmark = pytest.mark.timeout(180)

DEDICATED = {"MPIRAY_ACTOR_PROCESSES": "dedicated"}

LIFECYCLE = PRELUDE + """
import atexit, tempfile
ray.init(num_cpus=2)
out = {}

@ray.remote
def task_pid():
    time.sleep(0.05)
    return os.getpid()

@ray.remote
class A:
    def __init__(self, path=None):
        if path:
            atexit.register(lambda: open(path, "w").write("atexit ran"))
    def pid(self):
        return os.getpid()
    def leave(self):
        ray.actor.exit_actor()

def gone(pid, limit=15):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.05)
    return False

a, b = A.remote(), A.remote()
pa, pb = ray.get([a.pid.remote(), b.pid.remote()])
tasks = set(ray.get([task_pid.remote() for _ in range(20)]))
out["actor_pids_distinct"] = pa != pb
out["tasks_elsewhere"] = not ({pa, pb} & tasks)
out["driver_not_host"] = os.getpid() not in (pa, pb)
out["cpus"] = ray.cluster_resources()["CPU"]     # actor processes add no CPUs
a = None
out["out_of_scope_pid_gone"] = gone(pa)
out["other_alive"] = ray.get(b.pid.remote()) == pb

ends = {}
for how in ("out_of_scope", "exit_actor", "kill"):
    path = tempfile.mktemp()
    h = A.remote(path)
    pid = ray.get(h.pid.remote())
    if how == "out_of_scope":
        del h
    elif how == "exit_actor":
        ray.wait([h.leave.remote()])
    else:
        ray.kill(h)
    ends[how] = [gone(pid), os.path.exists(path) and open(path).read()]
out["ends"] = ends

many = [A.remote() for _ in range(6)]
out["six_pids"] = len(set(ray.get([m.pid.remote() for m in many])))
del many
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_actor_gets_a_process_that_ends_with_it(run_script):
    world = run_script(LIFECYCLE, env=DEDICATED, timeout=150)
    assert world.returncode == 0, world.stderr[-3000:]
    out = last_json(world.stdout)
    assert out["actor_pids_distinct"] and out["tasks_elsewhere"] and out["driver_not_host"], out
    assert out["cpus"] == 2, out
    assert out["out_of_scope_pid_gone"] and out["other_alive"], out
    # atexit runs on a clean end (out of scope, exit_actor), not after kill(), as in Ray.
    assert out["ends"] == {"out_of_scope": [True, "atexit ran"], "exit_actor": [True, "atexit ran"],
                           "kill": [True, False]}, out
    assert out["six_pids"] == 6, out


CRASHES = PRELUDE + """
import signal
ray.init(num_cpus=2)
out = {}

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def next(self):
        self.n += 1
        return self.n - 1

@ray.remote(max_restarts=2, max_task_retries=2)
class Flaky:
    def pid(self):
        return os.getpid()
    def run(self, counter, exits, how):
        c = ray.get(counter.next.remote())
        if c < exits:
            sys.exit(1) if how == "sys.exit" else os._exit(0)
        return c
    def title(self):
        import setproctitle
        return setproctitle.getproctitle()

for how in ("sys.exit", "os._exit"):
    counter = Counter.remote()
    f = Flaky.remote()
    first = ray.get(f.pid.remote())
    # Two crashes: the actor restarts twice (new processes), the call is retried twice.
    out[how] = [ray.get(f.run.remote(counter, 2, how), timeout=60),
                ray.get(counter.next.remote()), ray.get(f.pid.remote()) != first]

f = Flaky.remote()
out["titles"] = [ray.get(f.title.remote()), ray.get(f.title.options(name="custom").remote())]

@ray.remote(max_retries=0)
def exits():
    sys.exit(3)

@ray.remote(max_retries=0)
def sleeper():
    time.sleep(60)

try:
    ray.get(exits.remote(), timeout=60)
    out["task_exit"] = "no error"
except ray.exceptions.WorkerCrashedError:
    out["task_exit"] = "WorkerCrashedError"
except Exception as e:
    out["task_exit"] = type(e).__name__

c = Counter.remote()
ray.get(c.next.remote())
s = sleeper.remote()
time.sleep(0.5)
ray.cancel(s, force=True)
try:
    ray.get(s, timeout=30)
except Exception as e:
    out["forced"] = type(e).__name__
out["actor_after_force_cancel"] = ray.get(c.next.remote(), timeout=30)

@ray.remote
def square(x):
    return x * x
out["tasks_after"] = sum(ray.get([square.remote(i) for i in range(10)], timeout=60))
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_exits_end_only_their_own_process(run_script):
    world = run_script(CRASHES, env=DEDICATED, timeout=150)
    assert world.returncode == 0, world.stderr[-3000:]
    out = last_json(world.stdout)
    # The third run of the call returns (count 2); the counter, in a process of its own, lived.
    assert out["sys.exit"] == [2, 3, True], out
    assert out["os._exit"] == [2, 3, True], out
    assert out["titles"] == ["ray::Flaky.title", "ray::custom"], out
    assert out["task_exit"] == "WorkerCrashedError", out
    assert out["forced"] == "TaskCancelledError", out
    assert out["actor_after_force_cancel"] == 1, out
    assert out["tasks_after"] == 285, out


SHARED_UNDER_MPIRUN = PRELUDE + """
ray.init()

@ray.remote
class A:
    def pid(self):
        return os.getpid()

@ray.remote
def task_pid():
    time.sleep(0.05)
    return os.getpid()

actors = [A.remote() for _ in range(4)]
pids = set(ray.get([a.pid.remote() for a in actors]))
ranks = set(ray.get([task_pid.remote() for _ in range(40)]))
print("RESULT " + json.dumps({"actor_pids": len(pids), "within_ranks": pids <= ranks}))
ray.shutdown()
"""


def test_under_mpirun_actors_share_the_ranks(run_mpi):
    world = run_mpi(SHARED_UNDER_MPIRUN, n=3, env=DEDICATED, timeout=90)
    assert world.returncode == 0, world.stderr[-3000:]
    out = last_json(world.stdout)
    assert out["actor_pids"] <= 2 and out["within_ranks"], out


def test_bad_setting_is_named(run_script):
    world = run_script(PRELUDE + "ray.init(num_cpus=1)\n", env={"MPIRAY_ACTOR_PROCESSES": "each"})
    assert world.returncode != 0
    assert "MPIRAY_ACTOR_PROCESSES must be 'dedicated'" in world.stderr, world.stderr[-2000:]


def test_the_ray_alias_gives_each_actor_a_process(tmp_path):
    program = """
import os, ray
@ray.remote
class A:
    def pid(self):
        return os.getpid()
ray.init(num_cpus=1)
print("pids", len({ray.get(A.remote().pid.remote()) for _ in range(3)} | {os.getpid()}))
ray.shutdown()
"""
    proc = _run([sys.executable, "-m", "mpiray"], tmp_path, program)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pids 4" in proc.stdout, proc.stdout


def test_a_process_that_cannot_start_fails_its_actor(run_script, tmp_path):
    # Every process started for an actor dies at interpreter start-up (before joining): the
    # actor fails with ActorDiedError naming the exit status, nothing waits forever, and the
    # local workers (started before) still run tasks.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os\nif os.environ.get('MPIRAY_ACTOR_PROCESS') == '1':\n    os._exit(7)\n")
    from conftest import PYTHON_DIR
    script = PRELUDE + """
ray.init(num_cpus=1)

@ray.remote
class A:
    def f(self):
        return 1

@ray.remote
def g():
    return 2

out = {}
try:
    ray.get(A.remote().f.remote(), timeout=60)
    out["actor"] = "ran"
except ray.exceptions.ActorDiedError as e:
    out["actor"] = "exited with status 7" in str(e)
out["task"] = ray.get(g.remote(), timeout=60)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""
    world = run_script(script, env=dict(DEDICATED, PYTHONPATH=f"{site}:{PYTHON_DIR}"), timeout=120)
    assert world.returncode == 0, world.stderr[-3000:]
    assert last_json(world.stdout) == {"actor": True, "task": 2}, world.stdout


def test_actor_processes_of_a_node_go_with_its_workers(run_script):
    # An actor on a node that joined (same machine) gets a process of its own started on that
    # node; killing the node's worker ends the node: that process goes too and the actor dies.
    from conftest import JOIN_NODE
    script = PRELUDE + "info = ray.init(num_cpus=1)\n" + JOIN_NODE + """
p = join("n2", "CPU=1,n2=1")

@ray.remote(resources={"n2": 1})
class OnN2:
    def pid(self):
        return os.getpid()
    def node(self):
        return ray.get_runtime_context().get_node_id()

a = OnN2.remote()
out = {"pid": ray.get(a.pid.remote()), "worker_pid": p.pid}
n2 = [n["NodeID"] for n in ray.nodes() if n["NodeManagerHostname"] == "n2"][0]
out["on_n2"] = ray.get(a.node.remote()) == n2
kill(p, "n2")
try:
    ray.get(a.pid.remote(), timeout=30)
    out["after"] = "answered"
except ray.exceptions.RayActorError:
    out["after"] = "RayActorError"
deadline = time.time() + 15
while time.time() < deadline:
    try:
        os.kill(out["pid"], 0)
    except OSError:
        out["pid_gone"] = True
        break
    time.sleep(0.05)
print("RESULT " + json.dumps(out))
ray.shutdown()
"""
    world = run_script(script, env=DEDICATED, timeout=120)
    assert world.returncode == 0, world.stderr[-3000:]
    out = last_json(world.stdout)
    assert out["pid"] != out["worker_pid"] and out["on_n2"], out
    assert out["after"] == "RayActorError" and out.get("pid_gone"), out


BUDGET = PRELUDE + """
ray.init(num_cpus=1)

class Oops(Exception):
    pass

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0
    def next(self):
        self.n += 1
        return self.n - 1
    def get(self):
        return self.n

@ray.remote(max_restarts=1)
class Trouble:
    @ray.method(retry_exceptions=[Oops])
    def act(self, counter, actions):
        c = ray.get(counter.next.remote())
        a = actions[c] if c < len(actions) else "return"
        if a == "raise":
            raise Oops()
        if a == "exit":
            sys.exit(1)
        return c

out = {}
for actions in (["exit", "raise", "raise"], ["raise", "exit", "raise"], ["raise", "raise", "exit"],
                ["raise", "raise"]):
    counter, t = Counter.remote(), Trouble.remote()
    try:
        r = ray.get(t.act.options(max_task_retries=2).remote(counter, actions), timeout=60)
    except Oops:
        r = "Oops"
    except ray.exceptions.ActorUnavailableError:
        r = "ActorUnavailableError"
    out[",".join(actions)] = [r, ray.get(counter.get.remote())]
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_a_call_has_one_retry_budget_for_errors_and_crashes(run_script):
    # As Ray: max_task_retries=2 allows three runs in all, whether a run raised a retryable
    # error (run again on the same instance) or crashed the actor (re-sent to its restart);
    # out of retries while the actor restarts: ActorUnavailableError.
    world = run_script(BUDGET, env=DEDICATED, timeout=120)
    assert world.returncode == 0, world.stderr[-3000:]
    assert last_json(world.stdout) == {
        "exit,raise,raise": ["Oops", 3], "raise,exit,raise": ["Oops", 3],
        "raise,raise,exit": ["ActorUnavailableError", 3], "raise,raise": [2, 3]}, world.stdout
