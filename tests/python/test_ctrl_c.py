"""Ctrl-C (SIGINT) in a Python driver blocked in each mpiray call (issue 20).

The driver (ctrl_c_driver.py, run as a script: its remote functions live in __main__) blocks in
one call; the test sends SIGINT the way a terminal or launcher does and checks that the driver
raises KeyboardInterrupt, that the job ends with the driver's status (130; a plain `python`
dies by SIGINT, which a shell reports as 130), that everything is gone within 2 s of the signal,
and that no process, shared-memory file or session directory is left.
"""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import MPIRUN, assert_nothing_left, base_env, default_sigint, describe, \
    kill_processes_with_tag, live_children, processes_with_tag

DRIVER = Path(__file__).with_name("ctrl_c_driver.py")
CALLS = ["get", "wait", "generator", "await", "actor_creation", "queue_get", "pool_map",
         "placement_group"]
GONE_WITHIN_S = 2.0


class Run:
    """One driver started in the background, in a session (process group) of its own."""

    def __init__(self, tmp_path, prefix, args, env=None, script=None):
        self.work = tmp_path / "world"
        self.session_root, self.shm_dir = self.work / "session", self.work / "shm"
        self.session_root.mkdir(parents=True)
        self.shm_dir.mkdir()
        path = DRIVER
        if script is not None:
            path = self.work / "script.py"
            path.write_text(script)
        self.tag = uuid.uuid4().hex
        self.out_path = self.work / "out.txt"
        with open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, str(path), *args], cwd=self.work,
                env=base_env(self.tag, self.session_root, self.shm_dir, env),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=default_sigint)

    def output(self):
        return self.out_path.read_text()

    def wait_for(self, text, timeout=90):
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert self.proc.poll() is None, f"ended before '{text}':\n{self.output()}"
            assert time.monotonic() < deadline, f"no '{text}' within {timeout} s:\n{self.output()}"
            time.sleep(0.05)

    def ranks(self):
        """The job's processes that run the driver script (head and workers, not launchers)."""
        out = []
        for pid in processes_with_tag(self.tag):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            # Python processes only: not the launchers (whose command lines name the script
            # too, and whose path may contain anything, "mpirun" included).
            if os.path.basename(cmdline.split(b"\0")[0]).startswith(b"python"):
                out.append(pid)
        return out

    def interrupt(self, pids=None):
        """SIGINT to the launcher (or to `pids`); returns the time it was sent."""
        sent = time.time()
        for pid in pids or [self.proc.pid]:
            os.kill(pid, signal.SIGINT)
        return sent

    def finish(self, sent, timeout=30):
        """Wait for the end: (exit status, seconds until the launcher exited, seconds until every
        process of the job but the launcher (driver, workers, reaper) was gone)."""
        gone = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gone is None and not self.ranks():
                gone = time.time() - sent
            if self.proc.poll() is not None and gone is not None:
                break
            time.sleep(0.01)
        try:
            rc = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after SIGINT:\n"
                                 f"{describe(processes_with_tag(self.tag))}\n{self.output()}")
        exited = time.time() - sent
        return rc, exited, gone if gone is not None else exited

    def interrupt_latency(self, sent):
        for line in self.output().splitlines():
            if line.startswith("KeyboardInterrupt at "):
                return float(line.split()[-1]) - sent
        raise AssertionError(f"the driver never raised KeyboardInterrupt:\n{self.output()}")

    def cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        kill_processes_with_tag(self.tag)

    def assert_clean(self):
        assert_nothing_left(self.tag, self.session_root, self.shm_dir, wait_s=2.0)


@pytest.fixture
def start(tmp_path):
    runs = []

    def run(prefix, args, env=None, script=None):
        r = Run(tmp_path / str(len(runs)), prefix, args, env, script)
        runs.append(r)
        return r

    yield run
    for r in runs:
        r.cleanup()


def interrupted_job(run, expected_rc, pids=None, timing=True):
    """Ctrl-C once the driver is blocked; the checks every launcher shares. Returns the output
    and whether the job was gone, launcher included, within GONE_WITHIN_S of the signal (with
    timing=False that is left to the caller, which may try again when the machine is loaded)."""
    run.wait_for("READY")
    sent = run.interrupt(pids() if pids else None)
    rc, exited, gone = run.finish(sent)
    latency = run.interrupt_latency(sent)
    out = run.output()
    print(f"KeyboardInterrupt {latency * 1000:.0f} ms after SIGINT; every process gone after "
          f"{gone:.2f} s; the launcher exited after {exited:.2f} s with {rc}")
    assert "Traceback" in out and "KeyboardInterrupt" in out, out
    assert rc == expected_rc, out
    assert latency < 1.0, out  # (the 100 ms target is measured by the benchmark)
    in_time = gone <= GONE_WITHIN_S and exited <= GONE_WITHIN_S
    if timing:
        assert gone <= GONE_WITHIN_S, out
        assert exited <= GONE_WITHIN_S, out
    assert "left the cluster" not in out, out  # no worker died on its own
    run.assert_clean()
    return out, in_time


@pytest.mark.timeout(90)
@pytest.mark.parametrize("call", CALLS)
def test_standalone(start, call):
    run = start([], [call], env={"MPIRAY_NUM_WORKERS": "2"})
    interrupted_job(run, -signal.SIGINT)  # Python re-raises SIGINT at the end: a shell says 130


@pytest.mark.timeout(90)
def test_standalone_terminal_ctrl_c_reaches_every_process(start):
    """A terminal sends SIGINT to the whole foreground process group: local workers too."""
    run = start([], ["get"], env={"MPIRAY_NUM_WORKERS": "2"})
    run.wait_for("READY")
    sent = time.time()
    os.killpg(run.proc.pid, signal.SIGINT)
    rc, exited, gone = run.finish(sent)
    out = run.output()
    assert rc == -signal.SIGINT and "KeyboardInterrupt at" in out, out
    assert "left the cluster" not in out and "replace worker" not in out, out
    assert gone <= GONE_WITHIN_S, out
    run.assert_clean()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("launcher", ["standalone", "mpirun"])
def test_program_that_catches_it_goes_on(start, launcher):
    """Under scripts/mpirun the wrapper, which watches mpirun after a Ctrl-C, must not end
    a job that goes on: it exits with the driver's 0 when the driver ends."""
    prefix = [] if launcher == "standalone" else [str(MPIRUN), "-n", "4"]
    run = start(prefix, ["get", "continue"], env={"MPIRAY_NUM_WORKERS": "2"})
    run.wait_for("READY")
    sent = run.interrupt()
    rc, _, _ = run.finish(sent)
    out = run.output()
    assert "KeyboardInterrupt at" in out and "mpiray still works after the interrupt" in out, out
    assert rc == 0, out
    run.assert_clean()


SECOND_CTRL_C = """
import os, time
import mpiray as ray

@ray.remote
def slow():
    time.sleep(120)

ray.init(num_cpus=2)
ref = slow.remote()
time.sleep(0.3)
print("READY", flush=True)
ray.get(ref)
"""


@pytest.mark.timeout(90)
def test_second_ctrl_c_forces_the_stop(start):
    """A worker that does not answer (stopped) makes the clean stop wait for it (up to 5 s);
    a second Ctrl-C ends the job at once, still leaving nothing behind."""
    run = start([], [], script=SECOND_CTRL_C)
    run.wait_for("READY")
    workers = [p for p in run.ranks() if b"mpiray._worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert workers, describe(processes_with_tag(run.tag))
    os.kill(workers[0], signal.SIGSTOP)
    sent = run.interrupt()
    run.wait_for("KeyboardInterrupt", timeout=10)
    time.sleep(0.5)  # the shutdown now waits for the stopped worker
    assert run.proc.poll() is None, run.output()
    second = run.interrupt()
    rc, exited, gone = run.finish(second)
    out = run.output()
    print(f"forced: exited {exited:.2f} s after the second SIGINT ({second - sent:.2f} s after the first)")
    assert "forcing the stop" in out, out
    assert rc == 130, out
    assert gone <= 1.0, out
    run.assert_clean()


WORKER_SIGINT = """
import os, time
import mpiray as ray

@ray.remote
def task():
    print(f"TASK_PID {os.getpid()}", flush=True)
    time.sleep(3)
    return "finished"

ray.init(num_cpus=2)
ref = task.remote()
print(ray.get(ref), flush=True)
print(ray.get(task.remote()), flush=True)
"""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("launcher", ["standalone", "mpirun"])
def test_sigint_to_one_worker_is_ignored(start, launcher):
    """`kill -INT <worker>` neither kills the task nor wedges the job."""
    prefix = [] if launcher == "standalone" else [str(MPIRUN), "-n", "3"]
    run = start(prefix, [], script=WORKER_SIGINT)
    run.wait_for("TASK_PID")
    pid = int(run.output().split("TASK_PID ")[1].split()[0])
    os.kill(pid, signal.SIGINT)
    rc = run.proc.wait(timeout=60)
    out = run.output()
    assert rc == 0, out
    assert out.count("finished") == 2, out
    assert "left the cluster" not in out, out
    run.assert_clean()


# ------------------------------------------------------------------ under mpirun

def open_mpi_files(mpirun_pid):
    """The files of a running Open MPI mpirun that its own clean-up removes: its session
    directory (<tmpdir>/ompi.<host>.<uid>/pid.<pid>) and its /dev/shm/open_mpi.* segment."""
    out = set()
    fd_dir = Path(f"/proc/{mpirun_pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if f"/pid.{mpirun_pid}/" in target:
            out.add(target.split(f"/pid.{mpirun_pid}/")[0] + f"/pid.{mpirun_pid}")
        elif target.startswith("/dev/shm/open_mpi."):
            out.add(target)
    return out


@pytest.mark.timeout(180)
@pytest.mark.parametrize("call", CALLS)
def test_mpirun(start, call):
    """Ctrl-C to scripts/mpirun (a terminal's reaches only it): SIGINT to every rank; the driver
    raises KeyboardInterrupt, workers ignore it, the job's status is 130, and the launcher is
    gone within 2 s of the signal. Open MPI's mpirun without --enable-recovery would linger
    ~2 s more after rank 0's nonzero end (odls_base_sigkill_timeout, twice): the wrapper ends
    it once the job is over, and removes what mpirun's own clean-up would have. On a loaded
    machine the timing may get a second try; everything else is checked every time."""
    for attempt in (1, 2):
        run = start([str(MPIRUN), "-n", "4"], [call])
        run.wait_for("READY")
        mpiruns = [p for p in live_children(run.proc.pid)
                   if Path(f"/proc/{p}/comm").read_text().strip() == "mpirun"]
        assert len(mpiruns) == 1, describe(live_children(run.proc.pid))
        files = open_mpi_files(mpiruns[0])
        assert files, "no session directory of mpirun found"  # (the check below means something)
        out, in_time = interrupted_job(run, 130, timing=False)
        left = [f for f in files if os.path.exists(f)]
        assert not left, f"Open MPI's files left behind: {left}\n{out}"
        if in_time:
            break
        print(f"over {GONE_WITHIN_S} s (load average {os.getloadavg()[0]:.1f}); "
              + ("trying again" if attempt == 1 else "giving up"))
    assert in_time, f"the job or the launcher took over {GONE_WITHIN_S} s to end:\n{out}"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("call", ["get", "await"])
def test_mpirun_recovery(start, call):
    """With --enable-recovery mpirun does not abort on the driver's status: it exits with it."""
    run = start([str(MPIRUN), "--enable-recovery", "-n", "4"], [call])
    interrupted_job(run, 130)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("call", ["get", "generator"])
def test_mpirun_recovery_sigint_to_every_rank(start, call):
    """A launcher that forwards SIGINT to every rank itself (MPICH's mpiexec, a terminal with
    ranks in its process group): workers go on with their tasks until the head stops them."""
    run = start([str(MPIRUN), "--enable-recovery", "-n", "4"], [call])
    interrupted_job(run, 130, pids=run.ranks)
