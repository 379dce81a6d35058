"""mpiray.util.collective end to end: every operation x dtype against numpy, on actors and on
tasks, on one node and across (virtual) nodes, under plain python and under mpirun; member
death; bad input. Each test runs a script whose actors and tasks are defined in its __main__,
as users write them."""

import json

import pytest

# The members' code, shared by the scripts below: every op x dtype, checked against numpy on
# each member (expected values are computed from every rank's deterministic input).
MEMBER_CODE = r'''
import json, os, sys, time, traceback
import numpy as np
import mpiray as ray
import mpiray.util.collective as col
from mpiray.util.collective import ReduceOp

DTYPES = ["float16", "bfloat16", "float32", "float64", "int32", "int64"]

def make(rank, dtype, n, seed=0):
    """Rank `rank`'s input: small integers, exact in every dtype under every op."""
    v = ((np.arange(n) * 7 + rank * 3 + seed) % 3 + 1).astype(np.float64)
    if dtype == "bfloat16":
        import torch
        return torch.tensor(v, dtype=torch.bfloat16)
    return v.astype(dtype)

def as_f64(t):
    if hasattr(t, "numpy"):
        import torch
        return t.to(torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)

NP_OPS = {ReduceOp.SUM: np.sum, ReduceOp.PRODUCT: np.prod, ReduceOp.MIN: np.min, ReduceOp.MAX: np.max}

def run_all(name, rank, n, sizes=(5, 70001)):
    """Every operation and dtype; returns the list of failures."""
    bad = []
    def check(what, got, want):
        if not np.array_equal(as_f64(got), np.asarray(want, dtype=np.float64)):
            bad.append(f"rank {rank}: {what}: got {as_f64(got)[:6]} want {np.asarray(want)[:6]}")
    for size in sizes:
        for dt in DTYPES:
            ins = [as_f64(make(r, dt, size)) for r in range(n)]
            for op, f in NP_OPS.items():
                x = make(rank, dt, size)
                col.allreduce(x, name, op)
                check(f"allreduce {op.name} {dt} {size}", x, f(np.stack(ins), axis=0))
            dst = n - 1
            x = make(rank, dt, size)
            col.reduce(x, dst, name, ReduceOp.SUM)
            check(f"reduce {dt} {size}", x, np.sum(np.stack(ins), axis=0) if rank == dst else ins[rank])
            x = make(rank, dt, size)
            col.broadcast(x, 1 % n, name)
            check(f"broadcast {dt} {size}", x, ins[1 % n])
            outs = [make(0, dt, size) * 0 for _ in range(n)]
            col.allgather(outs, make(rank, dt, size), name)
            for r in range(n):
                check(f"allgather[{r}] {dt} {size}", outs[r], ins[r])
            blocks = [make(rank, dt, size, seed=b) for b in range(n)]
            out = make(0, dt, size) * 0
            col.reducescatter(out, blocks, name, ReduceOp.MAX)
            check(f"reducescatter {dt} {size}",
                  out, np.max(np.stack([as_f64(make(r, dt, size, seed=rank)) for r in range(n)]), axis=0))
            # A ring of send/recv: rank 0 sends first, the others receive first.
            to, frm = (rank + 1) % n, (rank - 1) % n
            got = make(0, dt, size) * 0
            if rank == 0:
                col.send(make(rank, dt, size), to, name)
                col.recv(got, frm, name)
            else:
                col.recv(got, frm, name)
                col.send(make(rank, dt, size), to, name)
            check(f"send/recv {dt} {size}", got, ins[frm])
            col.barrier(name)
    # Real-valued data: float sums in any order agree to rounding.
    rng = np.random.default_rng(rank)
    x = rng.standard_normal(100003).astype(np.float32)
    allx = [np.random.default_rng(r).standard_normal(100003).astype(np.float32) for r in range(n)]
    col.allreduce(x, name)
    if not np.allclose(x, np.sum(allx, axis=0), rtol=1e-5, atol=1e-5):
        bad.append(f"rank {rank}: float32 random allreduce off by {np.abs(x - np.sum(allx, axis=0)).max()}")
    import torch
    t = torch.arange(10, dtype=torch.float32) + rank
    col.allreduce(t, name)
    if not torch.equal(t, torch.arange(10, dtype=torch.float32) * n + sum(range(n))):
        bad.append(f"rank {rank}: torch allreduce {t}")
    return bad

@ray.remote(num_cpus=0)
class Member:
    def __init__(self, rank, n):
        self.rank, self.n = rank, n

    def pid(self):
        return os.getpid()

    def node(self):
        return ray.get_runtime_context().get_node_id()

    def join(self, name, backend="ucx", **kw):
        col.init_collective_group(self.n, self.rank, backend, name, **kw)
        return col.get_rank(name), col.get_collective_group_size(name), col.is_group_initialized(name)

    def run_all(self, name, sizes=(5, 70001)):
        return run_all(name, self.rank, self.n, sizes)

    def allreduce(self, name, value, n=1000):
        x = np.full(n, value, dtype=np.float64)
        try:
            col.allreduce(x, name)
            return "ok", float(x[0])
        except Exception as e:
            return type(e).__name__, str(e)

    def timed_allreduce(self, name):
        t = time.monotonic()
        x = np.ones(1 << 20, dtype=np.float32)
        try:
            col.allreduce(x, name)
            return "ok", "", time.monotonic() - t
        except Exception as e:
            return type(e).__name__, str(e), time.monotonic() - t

    def destroy(self, name):
        col.destroy_collective_group(name)
        return col.is_group_initialized(name)

    def call(self, fn_name, *args):
        """Run col.<fn_name>(*args) and return the exception (type, message), or "ok"."""
        try:
            getattr(col, fn_name)(*args)
            return "ok"
        except Exception as e:
            return type(e).__name__, str(e)
'''


def _result(world):
    assert world.returncode == 0, world
    lines = [l for l in world.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, world
    return json.loads(lines[-1][len("RESULT "):])


OPS_SCRIPT = MEMBER_CODE + r'''
if __name__ == "__main__":
    n = int(sys.argv[1])
    backend = sys.argv[2]
    init = json.loads(sys.argv[3])
    ray.init(**init)
    members = [Member.remote(r, n) for r in range(n)]
    joined = ray.get([m.join.remote("ops", backend) for m in members])
    assert joined == [(r, n, True) for r in range(n)], joined
    nodes = ray.get([m.node.remote() for m in members])
    bad = sum(ray.get([m.run_all.remote("ops") for m in members]), [])
    # Destroy, then the same name again: a new incarnation works.
    assert ray.get([m.destroy.remote("ops") for m in members]) == [False] * n
    ray.get([m.join.remote("ops", backend) for m in members])
    again = ray.get([m.allreduce.remote("ops", r + 1) for r, m in enumerate(members)])
    print("RESULT " + json.dumps({"bad": bad, "nodes": len(set(nodes)), "again": again}))
    ray.shutdown()
'''


@pytest.mark.timeout(240)
@pytest.mark.parametrize("n", [2, 4])
def test_every_op_and_dtype_one_node(run_script, n):
    res = _result(run_script(OPS_SCRIPT, args=(n, "ucx", json.dumps({"num_cpus": 4})), timeout=200))
    assert res["bad"] == []
    assert res["nodes"] == 1
    assert res["again"] == [["ok", n * (n + 1) / 2]] * n


@pytest.mark.timeout(240)
def test_every_op_and_dtype_virtual_nodes(run_script):
    # Head + 4 local workers in virtual nodes of 2: the members span 3 nodes (shared memory
    # within one, UCX between them).
    res = _result(run_script(OPS_SCRIPT, args=(3, "ucx", json.dumps({"num_cpus": 4})),
                             env={"MPIRAY_RANKS_PER_NODE": "2"}, timeout=200))
    assert res["bad"] == []
    assert res["nodes"] >= 2
    assert res["again"] == [["ok", 6.0]] * 3


@pytest.mark.timeout(300)
@pytest.mark.parametrize("n", [3, 4])
def test_every_op_and_dtype_mpirun_cross_node(run_mpi, n):
    # mpirun -n 4 as 2 virtual nodes of 2 ranks; with n=4 two members share a worker process.
    res = _result(run_mpi(OPS_SCRIPT, 4, args=(n, "ucx", "{}"), env={"MPIRAY_RANKS_PER_NODE": "2"},
                          timeout=240))
    assert res["bad"] == []
    assert res["nodes"] == 2
    assert res["again"] == [["ok", n * (n + 1) / 2]] * n


@pytest.mark.timeout(300)
def test_mpi_backend_with_kept_mpi(run_mpi):
    # The launcher's MPI, kept alive after start-up; one member per worker rank.
    res = _result(run_mpi(OPS_SCRIPT, 4, args=(3, "mpi", json.dumps({"keep_mpi": True})), timeout=240))
    assert res["bad"] == []
    assert res["again"] == [["ok", 6.0]] * 3


TASKS_SCRIPT = MEMBER_CODE + r'''
@ray.remote(num_cpus=1)
def member_task(rank, n):
    col.init_collective_group(n, rank, "ucx", "tasks")
    x = np.array([rank + 1.0, 10.0 * rank])
    col.allreduce(x, "tasks")
    out = [float(v) for v in x]
    bad = run_all("tasks", rank, n, sizes=(9,))
    col.destroy_collective_group("tasks")
    return out, bad, col.get_rank("tasks")

if __name__ == "__main__":
    ray.init(num_cpus=4)
    got = ray.get([member_task.remote(r, 3) for r in range(3)])
    print("RESULT " + json.dumps(got))
    ray.shutdown()
'''


@pytest.mark.timeout(180)
def test_group_of_tasks(run_script):
    got = _result(run_script(TASKS_SCRIPT, timeout=150))
    assert [g[0] for g in got] == [[6.0, 30.0]] * 3
    assert all(g[1] == [] for g in got)
    assert [g[2] for g in got] == [-1] * 3  # left after destroy


DECLARED_SCRIPT = MEMBER_CODE + r'''
if __name__ == "__main__":
    ray.init(num_cpus=4)
    members = [Member.remote(r, 3) for r in range(3)]
    # Declared from the driver (Ray's create_collective_group): ranks are given per actor and
    # each actor joins on its first collective call.
    col.create_collective_group(members[::-1], 3, [2, 1, 0], backend="ucx", group_name="decl")
    got = ray.get([m.allreduce.remote("decl", 1.5) for m in members])
    try:
        col.create_collective_group(members, 3, [0, 1, 2], group_name="decl")
        twice = "no error"
    except Exception as e:
        twice = str(e)
    try:
        col.allreduce(np.ones(3), "decl")
        driver = "no error"
    except RuntimeError as e:
        driver = str(e)
    ray.get([m.destroy.remote("decl") for m in members])
    col.create_collective_group(members, 3, [0, 1, 2], group_name="decl")
    again = ray.get([m.allreduce.remote("decl", 2.0) for m in members])
    print("RESULT " + json.dumps({"got": got, "twice": twice, "driver": driver, "again": again}))
    ray.shutdown()
'''


@pytest.mark.timeout(180)
def test_declared_group_from_the_driver(run_script):
    res = _result(run_script(DECLARED_SCRIPT, timeout=150))
    assert res["got"] == [["ok", 4.5]] * 3
    assert "twice" in res["twice"]
    assert "only used inside a Ray actor or task" in res["driver"]
    assert res["again"] == [["ok", 6.0]] * 3


DEATH_SCRIPT = MEMBER_CODE + r'''
import signal

if __name__ == "__main__":
    ray.init(**json.loads(sys.argv[1]))
    n = 3
    members = [Member.remote(r, n) for r in range(n)]
    pids = ray.get([m.pid.remote() for m in members])
    assert len(set(pids)) == n, pids  # one member per process
    ray.get([m.join.remote("fragile") for m in members])
    assert ray.get([m.allreduce.remote("fragile", 1.0) for m in members]) == [("ok", 3.0)] * n
    # The victim: a member alone on its node if there is one (then only UCX can tell the
    # others on other nodes), else the last rank.
    nodes = ray.get([m.node.remote() for m in members])
    alone = [r for r in range(n) if nodes.count(nodes[r]) == 1]
    victim = alone[-1] if alone else n - 1
    survivors = [r for r in range(n) if r != victim]
    # The survivors enter an all-reduce that the victim never joins: it is killed.
    pending = [members[r].timed_allreduce.remote("fragile") for r in survivors]
    time.sleep(1.0)
    os.kill(pids[victim], signal.SIGKILL)
    t = time.monotonic()
    outcome = ray.get(pending, timeout=60)
    waited = time.monotonic() - t
    later = ray.get(members[survivors[0]].allreduce.remote("fragile", 1.0))
    # Destroy and create again, with a new member in the dead one's place.
    ray.get([members[r].destroy.remote("fragile") for r in survivors])
    members[victim] = Member.remote(victim, n)
    ray.get([m.join.remote("fragile") for m in members])
    again = ray.get([m.allreduce.remote("fragile", 2.0) for m in members])
    print("RESULT " + json.dumps({"outcome": outcome, "waited": waited, "later": later, "again": again,
                                  "victim": victim, "alone": bool(alone)}))
    ray.shutdown()
'''


def _check_death(res):
    for kind, msg, elapsed in res["outcome"]:
        assert kind == "CollectiveError", res
        assert f"rank {res['victim']}" in msg, msg
        assert "died" in msg or "unreachable" in msg or "lost" in msg, msg
        assert "destroy" in msg.lower()
    assert res["waited"] < 10, res
    assert res["later"][0] == "CollectiveError"
    assert res["again"] == [["ok", 6.0]] * 3


@pytest.mark.timeout(180)
def test_member_death_fails_pending_ops_then_recreate(run_script):
    _check_death(_result(run_script(DEATH_SCRIPT, args=(json.dumps({"num_cpus": 4}),), timeout=150)))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("watch_other_nodes", ["1", "0"])
def test_member_death_across_nodes_under_mpirun(run_mpi, watch_other_nodes):
    # 5 ranks as virtual nodes {0,1} {2,3} {4}: the members are on 3 nodes. With
    # MPIRAY_COLLECTIVE_WATCH_OTHER_NODES=0 members watch only their own node's processes, as if
    # the nodes were separate hosts: the others must learn of the death over UCX (a failed
    # endpoint, or the abort message of the dead member's node leader).
    res = _result(run_mpi(DEATH_SCRIPT, 5, args=("{}",), recovery=True, timeout=200,
                          env={"MPIRAY_RANKS_PER_NODE": "2",
                               "MPIRAY_COLLECTIVE_WATCH_OTHER_NODES": watch_other_nodes}))
    _check_death(res)


BAD_SCRIPT = MEMBER_CODE + r'''
@ray.remote(num_cpus=0)
class Probe:
    def errors(self):
        out = {}
        def catch(key, fn):
            try:
                fn()
                out[key] = "no error"
            except Exception as e:
                out[key] = [type(e).__name__, str(e)]
        catch("unknown_backend", lambda: col.init_collective_group(2, 0, "hccl", "x"))
        # Ray's host-memory backend name runs on "ucx" (Ray programs run unchanged).
        col.init_collective_group(1, 0, "gloo", "ray-gloo")
        y = np.ones(3)
        col.allreduce(y, "ray-gloo")
        out["gloo_alias"] = [col.get_group_handle("ray-gloo").backend(), y.tolist()]
        catch("unknown_group", lambda: col.allreduce(np.ones(3), "nosuch"))
        catch("bad_rank", lambda: col.init_collective_group(2, 5, "ucx", "x"))
        catch("nccl_no_gpu", lambda: col.init_collective_group(1, 0, "nccl", "gpu"))
        catch("mpi_not_kept", lambda: col.init_collective_group(1, 0, "mpi", "m"))
        col.init_collective_group(1, 0, "ucx", "solo")
        catch("non_contiguous", lambda: col.allreduce(np.ones((4, 4))[:, 1], "solo"))
        catch("bad_dtype", lambda: col.allreduce(np.ones(3, dtype=np.complex64), "solo"))
        catch("not_a_tensor", lambda: col.allreduce([1, 2, 3], "solo"))
        catch("read_only", lambda: col.allreduce(np.frombuffer(b"\0" * 16, dtype=np.float32), "solo"))
        catch("dst_self", lambda: col.send(np.ones(3), 0, "solo"))
        catch("root_range", lambda: col.broadcast(np.ones(3), 3, "solo"))
        catch("gather_list", lambda: col.allgather([np.ones(2)], np.ones(3), "solo"))
        catch("twice", lambda: col.init_collective_group(1, 0, "ucx", "solo"))
        x = np.arange(4.0)
        col.allreduce(x, "solo")
        out["solo_allreduce"] = x.tolist()
        return out

    def mismatch(self, rank, kind):
        col.init_collective_group(2, rank, "ucx", "mm-" + kind)
        if kind == "shape":
            x = np.ones(10 + 2 * rank, dtype=np.float32)
        elif kind == "dtype":
            x = np.ones(10, dtype=np.float32 if rank == 0 else np.float64)
        else:
            x = np.ones(10, dtype=np.float32)
        try:
            if kind == "op" and rank == 1:
                col.broadcast(x, 0, "mm-" + kind)
            else:
                col.allreduce(x, "mm-" + kind)
            return "no error"
        except Exception as e:
            return [type(e).__name__, str(e)]

    def world_mismatch(self, rank, n):
        try:
            col.init_collective_group(n, rank, "ucx", "wm")
            return "no error"
        except Exception as e:
            return [type(e).__name__, str(e)]

if __name__ == "__main__":
    import os
    os.environ["MPIRAY_COLLECTIVE_JOIN_TIMEOUT_MS"] = "3000"
    ray.init(num_cpus=4, runtime_env={"env_vars": {"MPIRAY_COLLECTIVE_JOIN_TIMEOUT_MS": "3000"}})
    probes = [Probe.remote() for _ in range(2)]
    out = ray.get(probes[0].errors.remote())
    for kind in ("shape", "dtype", "op"):
        out["mismatch_" + kind] = ray.get([p.mismatch.remote(r, kind) for r, p in enumerate(probes)])
    out["world_mismatch"] = ray.get([probes[0].world_mismatch.remote(0, 2), probes[1].world_mismatch.remote(1, 3)])
    try:
        col.init_collective_group(2, 0, "ucx", "drv")
        out["driver"] = "no error"
    except RuntimeError as e:
        out["driver"] = str(e)
    print("RESULT " + json.dumps(out))
    ray.shutdown()
'''


@pytest.mark.timeout(180)
def test_bad_input_gives_clear_errors(run_script):
    out = _result(run_script(BAD_SCRIPT, timeout=150))
    assert out["unknown_backend"][0] == "ValueError" and "'ucx'" in out["unknown_backend"][1]
    assert out["unknown_group"][0] == "RuntimeError" and "not initialized" in out["unknown_group"][1]
    assert out["gloo_alias"] == ["ucx", [1.0, 1.0, 1.0]]
    assert out["bad_rank"][0] == "ValueError"
    assert out["nccl_no_gpu"][0] == "RuntimeError" and "GPU" in out["nccl_no_gpu"][1]
    assert out["mpi_not_kept"][0] == "RuntimeError" and "keep_mpi" in out["mpi_not_kept"][1]
    assert out["non_contiguous"][0] == "ValueError" and "contiguous" in out["non_contiguous"][1]
    assert out["bad_dtype"][0] == "TypeError" and "complex64" in out["bad_dtype"][1]
    assert out["not_a_tensor"][0] == "RuntimeError" and "Unrecognized tensor type" in out["not_a_tensor"][1]
    assert out["read_only"][0] == "ValueError" and "read-only" in out["read_only"][1]
    assert out["dst_self"][0] == "RuntimeError"
    assert out["root_range"][0] == "ValueError"
    assert out["gather_list"][0] == "ValueError" and "shape" in out["gather_list"][1]
    assert out["twice"][0] == "RuntimeError"
    assert out["solo_allreduce"] == [0.0, 1.0, 2.0, 3.0]
    for kind in ("shape", "dtype", "op"):
        both = out["mismatch_" + kind]
        for r in (0, 1):
            assert both[r][0] == "ValueError", (kind, both)
            assert "mismatched operation" in both[r][1], (kind, both)
    assert "count=12" in out["mismatch_shape"][0][1]
    assert "float64" in out["mismatch_dtype"][0][1]
    assert "broadcast" in out["mismatch_op"][0][1]
    wm = out["world_mismatch"]
    assert any(w != "no error" and "world_size" in w[1] for w in wm), wm
    assert "only used inside a Ray actor or task" in out["driver"]
