"""Fault tolerance of the job as a whole (docs/fault-tolerance.md):

* driver errors: an uncaught exception or ``sys.exit(n)`` in the driver ends the job with the
  driver's exit status (1 with the traceback, or n), workers gone and nothing left, whether the
  script runs as ``python script.py``, under ``mpirun`` or under ``mpirun --enable-recovery``
  (whose own exit status is always 0: scripts/mpirun returns the status the head records);
* head death: SIGKILL of the driver (rank 0) mid-job ends every process of the job within
  5 seconds with a message, and leaves no shared memory or session file;
* the start-up warning of a launch that cannot survive a worker death.
"""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import (MPIRUN, assert_nothing_left, base_env, describe, kill_processes_with_tag,
                      processes_with_tag)

pytestmark = pytest.mark.timeout(120)

HEAD_GONE_WITHIN_S = 5.0
WARNING = "cannot survive a worker death"

# A driver in the middle of real work when it fails: tasks running on every worker, an actor
# holding an object, a large object in shared memory.
BUSY_DRIVER = """
import os, sys, time
import numpy as np
import mpiray as ray
ray.init()

@ray.remote
def long_task():
    time.sleep(120)

@ray.remote
class Holder:
    def hold(self, x):
        self.x = x
        return len(x)

refs = [long_task.remote() for _ in range(3)]
big = ray.put(np.ones(2_000_000))          # 16 MB in the object store
h = Holder.remote()
assert ray.get(h.hold.remote(big)) == 2_000_000
time.sleep(0.3)
print("SUBMITTED", flush=True)
"""

LAUNCHERS = ["python", "mpirun", "mpirun-recovery"]


def run_world(launcher, run_script, run_mpi, script, **kw):
    if launcher == "python":
        return run_script(script, env={"MPIRAY_NUM_WORKERS": "2"}, **kw)
    return run_mpi(script, n=3, recovery=launcher == "mpirun-recovery", **kw)


# ------------------------------------------------------------------ driver errors


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_uncaught_exception_exits_1_with_traceback(launcher, run_script, run_mpi):
    world = run_world(launcher, run_script, run_mpi, BUSY_DRIVER + """
def fail():
    raise RuntimeError("driver failed on purpose")
fail()
""", timeout=60)
    assert world.returncode == 1, world
    assert "SUBMITTED" in world.stdout, world
    assert "Traceback (most recent call last)" in world.stderr, world
    assert 'in fail\n    raise RuntimeError("driver failed on purpose")' in world.stderr, world
    assert "RuntimeError: driver failed on purpose" in world.stderr, world
    assert world.elapsed < 30, world


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sys_exit_status_is_the_jobs(launcher, run_script, run_mpi):
    world = run_world(launcher, run_script, run_mpi, BUSY_DRIVER + """
sys.exit(3)
""", timeout=60)
    assert world.returncode == 3, world
    assert "SUBMITTED" in world.stdout, world
    assert "Traceback" not in world.stderr, world
    assert world.elapsed < 30, world


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_sys_exit_after_shutdown(launcher, run_script, run_mpi):
    world = run_world(launcher, run_script, run_mpi, """
import sys
import mpiray as ray
ray.init()
@ray.remote
def f(x):
    return x + 1
assert ray.get(f.remote(1)) == 2
ray.shutdown()
print("SHUT DOWN", flush=True)
sys.exit(4)
""", timeout=60)
    assert world.returncode == 4, world
    assert "SHUT DOWN" in world.stdout, world


@pytest.mark.parametrize("launcher", ["mpirun", "mpirun-recovery"])
def test_clean_exit_is_0(launcher, run_script, run_mpi):
    world = run_world(launcher, run_script, run_mpi, """
import mpiray as ray
ray.init()
@ray.remote
def f(x):
    return x + 1
assert ray.get(f.remote(1)) == 2
""", timeout=60)
    assert world.returncode == 0, world


# ------------------------------------------------------------------ start-up warning


def test_warning_when_mpirun_cannot_survive_a_worker_death(run_mpi):
    script = """
import mpiray as ray
ray.init()
ray.shutdown()
"""
    plain = run_mpi(script, n=3)
    assert plain.returncode == 0, plain
    lines = [l for l in plain.stderr.splitlines() if WARNING in l]
    assert len(lines) == 1, plain  # once, from the head only
    assert "mpirun --enable-recovery" in lines[0]
    recovery = run_mpi(script, n=3, recovery=True)
    assert recovery.returncode == 0, recovery
    assert WARNING not in recovery.stderr + recovery.stdout, recovery


def test_no_warning_without_a_launcher(run_script):
    world = run_script("""
import mpiray as ray
ray.init(num_cpus=1)
ray.shutdown()
""")
    assert world.returncode == 0, world
    assert WARNING not in world.stderr + world.stdout, world


# ------------------------------------------------------------------ head death


HEAD_SCRIPT = BUSY_DRIVER + """
@ray.remote
def compute(i):
    s = 0
    for k in range(200_000):   # a pure-Python loop (holds the GIL in turns)
        s += k
    return s
more = [compute.remote(i) for i in range(200)]
print(f"READY head_pid={os.getpid()}", flush=True)
ray.get(refs)
print("the head was never killed", flush=True)
"""


def kill_head_and_measure(tmp_path, prefix, *, env=None):
    """Start HEAD_SCRIPT with `prefix` (a launcher or nothing), SIGKILL the driver once it is
    busy, and return (seconds until every process of the job was gone, output, exit status)."""
    work = tmp_path / "world"
    session_root, shm_dir = work / "session", work / "shm"
    session_root.mkdir(parents=True)
    shm_dir.mkdir()
    script = work / "script.py"
    script.write_text(HEAD_SCRIPT)
    tag = uuid.uuid4().hex
    out_path = work / "out.txt"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([*prefix, sys.executable, str(script)], cwd=work,
                                env=base_env(tag, session_root, shm_dir, env),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        head_pid = None
        while head_pid is None:
            assert time.monotonic() < deadline, out_path.read_text()
            assert proc.poll() is None, out_path.read_text()
            for line in out_path.read_text().splitlines():
                if line.startswith("READY head_pid="):
                    head_pid = int(line.split("=")[1])
            time.sleep(0.05)
        job = [p for p in processes_with_tag(tag)]
        assert head_pid in job and len(job) >= 4, describe(job)  # head, workers, reaper
        start = time.monotonic()
        os.kill(head_pid, signal.SIGKILL)
        while processes_with_tag(tag) and time.monotonic() - start < 30:
            time.sleep(0.02)
        took = time.monotonic() - start
        left = processes_with_tag(tag)
        rc = proc.wait(timeout=30)
        output = out_path.read_text()
        assert not left, f"still running {took:.1f} s after the head died:\n{describe(left)}"
        assert_nothing_left(tag, session_root, shm_dir, wait_s=2.0)
        return took, output, rc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_processes_with_tag(tag)


@pytest.mark.parametrize("recovery", [True, False], ids=["mpirun-recovery", "mpirun"])
def test_head_killed_under_mpirun(tmp_path, recovery):
    prefix = [str(MPIRUN)] + (["--enable-recovery"] if recovery else []) + ["-n", "4"]
    took, output, rc = kill_head_and_measure(tmp_path, prefix)
    print(f"every process gone {took:.2f} s after the head was killed")
    assert took < HEAD_GONE_WITHIN_S, output
    assert rc != 0, output
    assert "died without shutting down" in output, output
    if recovery:  # without recovery mpirun kills the workers itself
        assert output.count("the head (rank 0) is gone") == 3, output


def test_head_killed_embedded(tmp_path):
    took, output, rc = kill_head_and_measure(tmp_path, [], env={"MPIRAY_NUM_WORKERS": "3"})
    print(f"every process gone {took:.2f} s after the head was killed")
    assert took < HEAD_GONE_WITHIN_S, output
    assert rc == -signal.SIGKILL, output
    assert "died without shutting down" in output, output
