"""Real DDP with TorchTrainer, run as users run it (the loop in the script's ``__main__``):
gloo and the mpiray gradient hook, loss falls, disjoint shards, equal weights on every rank,
two jobs on one node, and a SIGKILLed training worker (standalone and under
``mpirun --enable-recovery``) after which the run finishes with the same final model."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = (Path(__file__).parent / "scripts" / "ddp.py").read_text()


def _result(world):
    for line in world.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"no RESULT line:\n{world}")


def _check_ddp(run, workers, hook=False):
    reps = run["reports"]
    # with TorchConfig(backend="mpiray") the gradients went through mpiray's collectives
    buckets = [m["hook_buckets"] for m in reps[-1]]
    assert buckets == ([5 * 384 // (32 * workers)] * workers if hook else [0] * workers), buckets
    assert len(reps) == 5
    # the loss falls
    assert run["losses"][-1] < 0.25 * run["losses"][0], run["losses"]
    for per_rank in reps:
        assert len(per_rank) == workers
        # DDP keeps every rank's weights equal
        assert len({round(m["param_sum"], 4) for m in per_rank}) == 1, per_rank
        # each rank its own process, its own part of the data
        assert len({m["pid"] for m in per_rank}) == workers
        seen = [set(m["seen"]) for m in per_rank]
        for i in range(workers):
            for j in range(i + 1, workers):
                assert not seen[i] & seen[j]
        assert set().union(*seen) == set(range(384))
        assert {m["device"] for m in per_rank} == {"cpu"}


@pytest.mark.timeout(240)
def test_ddp_mpiray_hook_3_workers(run_script, tmp_path):
    """TorchConfig(backend="mpiray"): the gradients go through mpiray's collectives (gloo DDP
    is checked by test_two_jobs_on_one_node_do_not_collide)."""
    world = run_script(SCRIPT, args=(tmp_path, "mpiray", 3, "none"), env={"MPIRAY_NUM_WORKERS": "3"},
                       timeout=200)
    assert world.returncode == 0, world
    _check_ddp(_result(world)["clean"], 3, hook=True)


@pytest.mark.timeout(240)
def test_sigkilled_worker_standalone_same_final_model(run_script, tmp_path):
    world = run_script(SCRIPT, args=(tmp_path, "default", 2, "both"), env={"MPIRAY_NUM_WORKERS": "2"},
                       timeout=220)
    assert world.returncode == 0, world
    res = _result(world)
    clean, killed = res["clean"], res["killed"]
    _check_ddp(clean, 2)
    # the killed run restarted from the epoch-1 checkpoint and ended with the same model
    assert killed["starts"] == [0, 0, 2, 2, 2], killed["starts"]
    assert killed["final"] == pytest.approx(clean["final"], rel=1e-4)
    assert killed["losses"] == pytest.approx(clean["losses"], rel=1e-4)
    assert "worker group failed" in world.stderr and "ActorDiedError" in world.stderr
    assert "training resumed with 2 worker(s)" in world.stderr


@pytest.mark.timeout(240)
def test_sigkilled_worker_mpirun_recovery(run_mpi, tmp_path):
    # 4 ranks: the driver and 3 workers; 2 train, the third takes over from the killed one
    world = run_mpi(SCRIPT, 4, args=(tmp_path, "default", 2, "kill"), recovery=True, timeout=220)
    assert world.returncode == 0, world
    killed = _result(world)["killed"]
    assert killed["starts"] == [0, 0, 2, 2, 2]
    assert killed["losses"][-1] < 0.25 * killed["losses"][0]
    dead_pid = int(killed["dead"])
    last = killed["reports"][-1]
    assert dead_pid not in {m["pid"] for m in last}


TWO_JOBS = r'''
import json, os, sys
import torch, torch.distributed as dist
import mpiray
from mpiray import train
from mpiray.train import RunConfig, ScalingConfig, UserCallback
from mpiray.train.torch import TorchTrainer

def loop(config):
    rank = train.get_context().get_world_rank()
    for step in range(3):
        t = torch.full((4,), float(rank + 1 + step))
        dist.all_reduce(t)                       # on the process group TorchTrainer made
        train.report({"sum": float(t[0]), "port": os.environ["MASTER_PORT"],
                      "backend": dist.get_backend()})

class Keep(UserCallback):
    def __init__(self):
        self.reports = []
    def after_report(self, run_context, metrics, checkpoint):
        self.reports.append(metrics)

mpiray.init()
keep = Keep()
TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=2),
             run_config=RunConfig(storage_path=sys.argv[1], name="job", callbacks=[keep])).fit()
print("RESULT " + json.dumps(keep.reports), flush=True)
'''


@pytest.mark.timeout(200)
def test_two_jobs_on_one_node_do_not_collide(run_script, tmp_path):
    """Two jobs set up process groups at the same time on this node: each store listens on
    a port the kernel picked, so neither collides with the other (Ray Train on one node with
    a fixed MASTER_PORT would)."""
    launcher = run_script.launcher
    procs = []
    for k in range(2):
        work, session_root, shm_dir, path = launcher.prepare(TWO_JOBS)
        env = _env(work, session_root, shm_dir)
        procs.append(subprocess.Popen([sys.executable, str(path), str(tmp_path / f"job{k}")],
                                      cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outs.append((p.returncode, o, e))
    ports = []
    for rc, o, e in outs:
        assert rc == 0, e[-3000:]
        reports = json.loads([l for l in o.splitlines() if l.startswith("RESULT ")][0][7:])
        assert len(reports) == 3
        for step, per_rank in enumerate(reports):
            assert [m["sum"] for m in per_rank] == [3.0 + 2 * step] * 2      # (1+s) + (2+s)
            assert {m["backend"] for m in per_rank} == {"gloo"}
        ports.append({m["port"] for r in reports for m in r})
    assert all(len(p) == 1 for p in ports) and ports[0] != ports[1]
    assert not ports[0] & {"29500"}       # not torch's default MASTER_PORT


def _env(work, session_root, shm_dir):
    import uuid
    from pathlib import Path
    repo = Path(__file__).resolve().parents[3]
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(repo / "python"), "MPIRAY_SESSION_ROOT": str(session_root),
                "MPIRAY_SHM_DIR": str(shm_dir), "MPIRAY_TEST_TAG": uuid.uuid4().hex, "MPIRAY_NUM_WORKERS": "2",
                "PYTHONUNBUFFERED": "1"})
    env.setdefault("MPIRAY_BUILD_DIR", str(repo / "build"))
    return env
