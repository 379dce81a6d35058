"""mpiray under ``mpirun -n N python script.py`` (N in 3..5): rank 0 is the driver, ranks >= 1
are workers that never return from ray.init(). Also MPIRAY_RANKS_PER_NODE=2 (virtual nodes,
objects cross them), worker output on the driver's console, worker crashes with
--enable-recovery, an uncaught exception in the driver, C++ functions. ``run_mpi`` checks that
no process and no file is left after each world."""

import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import ITEST_LIB, assert_nothing_left

pytestmark = pytest.mark.timeout(120)

PRELUDE = """
import json, os, sys, time
import mpiray as ray
RANK = int(os.environ["OMPI_COMM_WORLD_RANK"])
"""


def result(world):
    lines = [l for l in world.stdout.splitlines() if l.startswith("RESULT ")]
    assert len(lines) == 1, world
    return json.loads(lines[0][len("RESULT "):])


def test_only_rank0_returns_from_init(run_mpi):
    world = run_mpi(PRELUDE + """
open(f"before_init_{RANK}", "w").close()
ctx = ray.init()
open(f"after_init_{RANK}", "w").close()   # only the driver gets here

@ray.remote
def who():
    c = ray.get_runtime_context()
    return c.rank, os.environ["OMPI_COMM_WORLD_RANK"], os.getpid()

@ray.remote
class Acc:
    def __init__(self):
        self.items = []
    def add(self, x):
        self.items.append(x)
        return list(self.items)

res = ray.get([who.remote() for _ in range(30)])
a = Acc.remote()
for i in range(3):
    a.add.remote(i)
print("RESULT " + json.dumps({
    "driver_rank": ctx.rank,
    "ranks": sorted({r[0] for r in res}),
    "mpi_ranks": sorted({int(r[1]) for r in res}),
    "same": all(r[0] == int(r[1]) for r in res),
    "workers": ray.nodes()[0]["Workers"],
    "cpus": ray.cluster_resources()["CPU"],
    "acc": ray.get(a.add.remote(3)),
}))
ray.shutdown()
""", n=3)
    assert world.returncode == 0, world
    r = result(world)
    assert r["driver_rank"] == 0
    assert r["ranks"] == [1, 2] and r["mpi_ranks"] == [1, 2] and r["same"]
    assert r["workers"] == [1, 2] and r["cpus"] == 2.0
    assert r["acc"] == [0, 1, 2, 3]
    files = sorted(p.name for p in world.workdir.iterdir() if "init_" in p.name)
    assert files == ["after_init_0", "before_init_0", "before_init_1", "before_init_2"]


CROSS_NODE = PRELUDE + """
import numpy as np
ray.init()
nodes = ray.nodes()

@ray.remote
def where(arr=None):
    c = ray.get_runtime_context()
    return c.get_node_id(), c.rank, None if arr is None else float(arr.sum())

@ray.remote
def make(n, seed):
    return np.random.default_rng(seed).random(n)

@ray.remote
def total(arrs):   # refs nested in a list: fetched from wherever they are
    return float(sum(a.sum() for a in ray.get(arrs)))

@ray.remote
class Box:
    def __init__(self):
        self.data = None
    def keep(self, arr):
        self.data = arr
        return ray.get_runtime_context().get_node_id()
    def sum(self):
        return float(self.data.sum())

def on(i):
    return {"resources": {f"node:{i}": 0.01}}

big = ray.put(np.ones(500_000))                    # 4 MB on node 0 (the driver's)
placed = [ray.get(where.options(**on(i)).remote(big)) for i in range(len(nodes))]
made = make.options(**on(2)).remote(400_000, 7)     # produced on node 2
local = ray.get(made)
consumed = ray.get(where.options(**on(1)).remote(made))  # node 2 -> node 1
box = Box.options(**on(2)).remote()
box_node = ray.get(box.keep.remote(big))               # node 0 -> node 2 (actor)
arrs = [make.options(**on(i % 3)).remote(100_000, i) for i in range(6)]
expect = float(sum(np.random.default_rng(i).random(100_000).sum() for i in range(6)))
print("RESULT " + json.dumps({
    "nodes": [[n["NodeID"], n["Workers"], n["Resources"].get("CPU")] for n in nodes],
    "node_keys": sorted(k for k in ray.cluster_resources() if k.startswith("node:")),
    "placed": placed,
    "made_ok": bool(np.array_equal(local, np.random.default_rng(7).random(400_000))),
    "zero_copy": bool(np.shares_memory(local, ray.get(made))) and not local.flags.writeable,
    "consumed": consumed,
    "box_node": box_node,
    "box_sum": ray.get(box.sum.remote()),
    "total": [ray.get(total.options(**on(1)).remote(arrs)), expect],
}))
ray.shutdown()
"""


def test_ranks_per_node_objects_cross_virtual_nodes(run_mpi):
    world = run_mpi(CROSS_NODE, n=5, env={"MPIRAY_RANKS_PER_NODE": "2"})
    assert world.returncode == 0, world
    r = result(world)
    ids = [n[0] for n in r["nodes"]]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert [n[1] for n in r["nodes"]] == [[1], [2, 3], [4]]  # ranks {0,1}, {2,3}, {4}
    assert r["node_keys"] == ["node:0", "node:1", "node:2"]
    for i, (node_id, rank, s) in enumerate(r["placed"]):
        assert node_id == ids[i], (i, r["placed"])
        assert rank in r["nodes"][i][1]
        assert s == 500_000.0  # read from another node's store where i > 0
    assert r["made_ok"] and r["zero_copy"]
    assert r["consumed"][0] == ids[1] and r["consumed"][1] in (2, 3)
    assert r["box_node"] == ids[2] and r["box_sum"] == 500_000.0
    assert r["total"][0] == pytest.approx(r["total"][1])


OUTPUT = PRELUDE + """
ray.init(log_to_driver=sys.argv[1] == "1")

@ray.remote
def printer():
    for i in range(200):
        print(f"LINE {i}")
    print("ERR LINE", file=sys.stderr)
    return os.getpid(), ray.get_runtime_context().rank

@ray.remote
def named():
    print("from the named task")

@ray.remote
class Speaker:
    def speak(self):
        print("from the actor")

pid, rank = ray.get(printer.remote())
ray.get(named.options(name="renamed_task").remote())
s = Speaker.remote()
ray.get(s.speak.remote())
print("RESULT " + json.dumps([pid, rank]))
ray.shutdown()
"""


def test_worker_output_on_driver_console_in_order(run_mpi):
    world = run_mpi(OUTPUT, n=3, args=["1"])
    assert world.returncode == 0, world
    pid, rank = result(world)
    assert rank in (1, 2)
    pattern = re.compile(r"^\((\S+) pid=(\d+), rank=(\d+)\) LINE (\d+)$")
    lines = [l for l in world.stdout.splitlines() if " LINE " in l and "ERR" not in l]
    assert len(lines) == 200
    for i, line in enumerate(lines):
        m = pattern.match(line)
        assert m, line
        assert (m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))) == ("printer", pid, rank, i)
    console = world.stdout + world.stderr
    assert f"(printer pid={pid}, rank={rank}) ERR LINE" in console
    assert re.search(r"^\(renamed_task pid=\d+, rank=[12]\) from the named task$", console, re.M)
    assert re.search(r"^\(Speaker pid=\d+, rank=[12]\) from the actor$", console, re.M)
    # Nothing printed by a worker comes without its prefix.
    for l in console.splitlines():
        if "LINE" in l or "from the" in l:
            assert l.startswith("("), l


def test_log_to_driver_false_suppresses_worker_output(run_mpi):
    world = run_mpi(OUTPUT, n=3, args=["0"])
    assert world.returncode == 0, world
    result(world)
    console = world.stdout + world.stderr
    assert "LINE" not in console and "from the" not in console


def test_keep_session_keeps_worker_logs(run_mpi):
    world = run_mpi(OUTPUT, n=3, args=["1"], env={"MPIRAY_KEEP_SESSION": "1"}, check_clean=False)
    try:
        assert world.returncode == 0, world
        outs = sorted(Path(world.session_root).glob("mpiray-*/logs/worker-*.out"))
        assert outs, f"nothing kept under {world.session_root}"
        text = "\n".join(p.read_text() for p in outs)
        assert all(f"LINE {i}" in text for i in range(200))
    finally:
        for d in Path(world.session_root).iterdir():
            shutil.rmtree(d, ignore_errors=True)
        assert_nothing_left(world.tag, world.session_root, world.shm_dir)


CRASH = PRELUDE + """
import ctypes
ray.init()

@ray.remote(max_retries=0)
def segfault():
    ctypes.string_at(0)

@ray.remote
def inc(x):
    return x + 1, ray.get_runtime_context().rank

warm = ray.get([inc.remote(i) for i in range(8)])
out = {}
try:
    ray.get(segfault.remote(), timeout=60)
    out["crash"] = "no error"
except ray.exceptions.WorkerCrashedError as e:
    out["crash"] = "WorkerCrashedError"
after = ray.get([inc.remote(i) for i in range(8)], timeout=60)
out["after"] = [a[0] for a in after]
out["ranks_after"] = sorted({a[1] for a in after})
out["workers"] = [n["Workers"] for n in ray.nodes()]
print("RESULT " + json.dumps(out))
ray.shutdown()
"""


def test_worker_segfault_with_enable_recovery(run_mpi):
    world = run_mpi(CRASH, n=4, recovery=True, env={"MPIRAY_RANKS_PER_NODE": "2"})
    assert world.returncode == 0, world
    r = result(world)
    assert r["crash"] == "WorkerCrashedError"
    assert r["after"] == list(range(1, 9))
    all_workers = sorted(w for ws in r["workers"] for w in ws)
    assert len(all_workers) == 2  # one of the three workers is gone
    assert set(r["ranks_after"]) <= set(all_workers)


def test_uncaught_exception_in_driver(run_mpi):
    world = run_mpi(PRELUDE + """
import numpy as np
ray.init()
@ray.remote
def long_task():
    time.sleep(120)
refs = [long_task.remote() for _ in range(4)]
big = ray.put(np.ones(2_000_000))
time.sleep(0.3)
print("SUBMITTED", flush=True)
raise RuntimeError("driver failed on purpose")
""", n=3, timeout=60)
    assert world.returncode != 0, world
    assert "SUBMITTED" in world.stdout
    assert "RuntimeError: driver failed on purpose" in world.stderr
    assert world.elapsed < 30, world.elapsed


def test_cpp_function_under_mpirun(run_mpi):
    world = run_mpi(PRELUDE + f"""
ray.init()
triple = ray.cpp_function("LibTriple", library={str(ITEST_LIB)!r})
pid = ray.cpp_function("LibPid", library={str(ITEST_LIB)!r})
try:
    ray.cpp_function("NotThere", library={str(ITEST_LIB)!r})
    unknown = "no error"
except ValueError as e:
    unknown = "ValueError"
print("RESULT " + json.dumps({{
    "triple": ray.get(triple.remote(7)),
    "many": ray.get([triple.remote(i) for i in range(6)]),
    "pids": len(set(ray.get([pid.remote() for _ in range(20)]))),
    "unknown": unknown,
}}))
ray.shutdown()
""", n=3)
    assert world.returncode == 0, world
    r = result(world)
    assert r["triple"] == 21
    assert r["many"] == [0, 3, 6, 9, 12, 15]
    assert 1 <= r["pids"] <= 2
    assert r["unknown"] == "ValueError"
