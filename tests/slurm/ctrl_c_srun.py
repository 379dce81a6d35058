"""Ctrl-C under srun (issue 20): `srun --disable-status -n 4 python ctrl_c_driver.py <call>`
for each blocking call; Ctrl-C once the driver is blocked. With --disable-status (or
SLURM_DISABLE_STATUS=1) srun sends SIGINT to every task at the first Ctrl-C; by default it only
does so at a second Ctrl-C within a second, and then at once kills the step (SIGKILL), so that
nothing can clean up (docs/slurm.md). Checks: the driver raises KeyboardInterrupt, no worker dies on its own, srun exits
with the driver's status (130) within 2 s, and nothing of the job is left (run-checked.sh
checks the session and shared-memory directories and the job's processes afterwards).

A C++ driver (`--cpp <mpiray_itest>`: its sleepy and sleepy_wait scenarios, blocked in Get and
Wait) takes the documented default instead: the cluster stops, exit 130.

`--double`: srun's default (no --disable-status): two Ctrl-C within a second make srun forward
SIGINT and kill the step at once (SIGKILL), so the job's session directory and object store
may stay; the next mpiray program on the node removes them (no process holds their locks: dir_lease.h).

Usage: ctrl_c_srun.py [--cpp ITEST] [call...]   (default: every call)
       ctrl_c_srun.py --double
"""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DRIVER = Path(__file__).resolve().parents[1] / "python" / "ctrl_c_driver.py"
CALLS = ["get", "wait", "generator", "await", "actor_creation", "queue_get", "pool_map",
         "placement_group"]
WITHIN_S = 2.0


def job_processes(tag, name):
    found = []
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{e}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{e}/stat").read_text()
            cmdline = Path(f"/proc/{e}/cmdline").read_bytes()
        except OSError:
            continue
        if f"MPIRAY_TEST_TAG={tag}".encode() in env and stat[stat.rindex(")") + 2] not in "ZX" \
                and name.encode() in cmdline:
            found.append(int(e))
    return found


def one(call, itest=None):
    out = tempfile.NamedTemporaryFile("w+", prefix="ctrl-c-srun-", suffix=".txt", delete=False)
    program = [itest, call] if itest else [sys.executable, str(DRIVER), call]
    proc = subprocess.Popen(["srun", "--disable-status", "-n", "4", *program],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    text = lambda: Path(out.name).read_text()
    try:
        deadline = time.monotonic() + 120
        while "READY" not in text():
            assert proc.poll() is None, f"{call}: srun ended before READY:\n{text()}"
            assert time.monotonic() < deadline, f"{call}: no READY:\n{text()}"
            time.sleep(0.05)
        # Ctrl-C: srun --disable-status sends SIGINT to every task.
        sent = time.time()
        os.kill(proc.pid, signal.SIGINT)
        tag = os.environ["MPIRAY_TEST_TAG"]
        gone = None
        while proc.poll() is None or gone is None:
            if gone is None and not job_processes(tag, Path(program[-2]).name):
                gone = time.time() - sent
            assert time.time() - sent < 30, f"{call}: still running 30 s after Ctrl-C:\n{text()}"
            time.sleep(0.01)
        exited = time.time() - sent
        rc = proc.returncode
        output = text()
        if itest:
            assert "Interrupt received: stopping the cluster" in output, output
            print(f"C++ {call}: tasks gone after {gone:.2f} s; srun exited after {exited:.2f} s "
                  f"with {rc}", flush=True)
        else:
            ki = [float(line.split()[-1]) for line in output.splitlines()
                  if line.startswith("KeyboardInterrupt at ")]
            assert ki, f"{call}: no KeyboardInterrupt in the driver:\n{output}"
            print(f"{call}: KeyboardInterrupt {1000 * (ki[0] - sent):.0f} ms after srun's SIGINT; "
                  f"tasks gone after {gone:.2f} s; srun exited after {exited:.2f} s with {rc}",
                  flush=True)
        assert "left the cluster" not in output, f"{call}: a worker died on its own:\n{output}"
        assert rc == 130, f"{call}: srun's exit status {rc}, expected 130:\n{output}"
        assert exited <= WITHIN_S, f"{call}: srun exited after {exited:.2f} s:\n{output}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(out.name)


def mpiray_files():
    found = []
    for var in ("MPIRAY_SESSION_ROOT", "MPIRAY_SHM_DIR"):
        root = Path(os.environ[var])
        found += [str(p) for p in root.iterdir() if p.name.startswith("mpiray-")]
    return found


def double_ctrl_c():
    out = tempfile.NamedTemporaryFile("w+", prefix="ctrl-c-srun-", suffix=".txt", delete=False)
    env = dict(os.environ)
    env.pop("SLURM_DISABLE_STATUS", None)
    proc = subprocess.Popen(["srun", "-n", "4", sys.executable, str(DRIVER), "get"], env=env,
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    text = lambda: Path(out.name).read_text()
    try:
        deadline = time.monotonic() + 120
        while "READY" not in text():
            assert proc.poll() is None, f"srun ended before READY:\n{text()}"
            assert time.monotonic() < deadline, f"no READY:\n{text()}"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGINT)
        sent = time.time()
        proc.wait(timeout=30)
        tag = os.environ["MPIRAY_TEST_TAG"]
        while job_processes(tag, DRIVER.name):
            assert time.time() - sent < 30, f"job processes still there 30 s after srun's kill:\n{text()}"
            time.sleep(0.05)
        left = mpiray_files()
        print(f"double Ctrl-C: srun exited {proc.returncode} after {time.time() - sent:.2f} s; "
              f"left by the killed step: {left}", flush=True)
        # The next mpiray process on the node, job step or not, removes them. It starts here
        # rather than under srun: other Slurm tests run beside this one and may hold every CPU
        # of the test cluster for minutes, and a pending srun would say nothing about cleanup.
        next_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_JOB")}
        try:
            nxt = subprocess.run([sys.executable, "-c",
                                  "import mpiray as ray; ray.init(num_cpus=1); ray.shutdown(); print('NEXT OK')"],
                                 capture_output=True, text=True, timeout=60, env=next_env)
        except subprocess.TimeoutExpired as e:
            raise AssertionError(f"the next mpiray program hung for 60 s:\n{e.stdout}\n{e.stderr}")
        assert nxt.returncode == 0 and "NEXT OK" in nxt.stdout, nxt.stdout + nxt.stderr
        still = mpiray_files()
        assert not still, f"the next job did not remove the killed job's files: {still}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(out.name)
    print("ctrl-c under srun OK")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--double"]:
        double_ctrl_c()
        return
    if args[:1] == ["--cpp"]:
        for scenario in args[2:] or ["sleepy", "sleepy_wait"]:
            one(scenario, itest=args[1])
    else:
        for call in args or CALLS:
            one(call)
    print("ctrl-c under srun OK")


if __name__ == "__main__":
    main()
