"""Ctrl-C in a Python driver (issue 20), as JSON:

    python -m mpiray.bench_ctrl_c [--runs N] [--idle-seconds S]
    python -m mpiray.bench --suite ctrl_c

A driver (plain ``python``, 2 local workers) blocks in ``ray.get`` on a long task; this process
sends it SIGINT and reads back when the driver caught KeyboardInterrupt. Then the same under
``scripts/mpirun -n 4`` (when this runs from a source tree), SIGINT sent to the wrapper as a
terminal's Ctrl-C would be. Keys:
  keyboard_interrupt_ms_median / _max   SIGINT -> KeyboardInterrupt in the driver (target: 100)
  exit_s_median / _max                  SIGINT -> the driver process ended (workers stopped,
                                        files removed; target: 2)
  idle_driver_cpu_per_s                 CPU seconds per second the driver uses while blocked
                                        in get (it wakes 20 times a second to let Python check
                                        its signals; target: ~0)
  mpirun_keyboard_interrupt_ms_median   the same under scripts/mpirun -n 4 (null without the
  mpirun_exit_s_median / _max           script); exit: SIGINT -> the launcher ended (target: 2)
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

DRIVER = textwrap.dedent("""
    import os, sys, time
    import mpiray as ray

    @ray.remote
    def slow():
        time.sleep(600)

    ray.init(**({"num_cpus": 2} if "--standalone" in sys.argv else {}))
    ref = slow.remote()
    time.sleep(0.3)
    print("READY", flush=True)
    try:
        ray.get(ref)
    except KeyboardInterrupt:
        print(f"KI {time.time():.6f}", flush=True)
        raise
""")


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


MPIRUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "mpirun")


def one_run(path, idle_seconds, launcher=()):
    out = tempfile.TemporaryFile("w+")
    args = [*launcher, sys.executable, path] + ([] if launcher else ["--standalone"])
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while True:
            out.seek(0)
            if "READY" in out.read():
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                out.seek(0)
                raise RuntimeError(f"the driver did not start:\n{out.read()}")
            time.sleep(0.02)
        idle = None
        if idle_seconds:
            time.sleep(0.5)
            c0, t0 = _cpu_seconds(proc.pid), time.monotonic()
            time.sleep(idle_seconds)
            idle = (_cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
        sent = time.time()
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        exited = time.time() - sent
        out.seek(0)
        ki = [float(line.split()[1]) for line in out.read().splitlines() if line.startswith("KI ")]
        if not ki:
            raise RuntimeError("no KeyboardInterrupt in the driver")
        return (ki[0] - sent) * 1000, exited, idle
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_suite(runs=5, idle_seconds=3.0):
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "driver.py")
        with open(path, "w") as f:
            f.write(DRIVER)
        latencies, exits, idle = [], [], None
        for i in range(runs):
            ms, exited, cpu = one_run(path, idle_seconds if i == 0 else 0)
            latencies.append(ms)
            exits.append(exited)
            idle = cpu if cpu is not None else idle
        mpirun_latencies, mpirun_exits = [], []
        if os.access(MPIRUN, os.X_OK):
            for _ in range(runs):
                ms, exited, _ = one_run(path, 0, [os.path.realpath(MPIRUN), "-n", "4"])
                mpirun_latencies.append(ms)
                mpirun_exits.append(exited)

    def stat(values, f, digits):
        return round(f(values), digits) if values else None

    return {
        "keyboard_interrupt_ms_median": round(statistics.median(latencies), 1),
        "keyboard_interrupt_ms_max": round(max(latencies), 1),
        "exit_s_median": round(statistics.median(exits), 3),
        "exit_s_max": round(max(exits), 3),
        "idle_driver_cpu_per_s": round(idle, 4) if idle is not None else None,
        "mpirun_keyboard_interrupt_ms_median": stat(mpirun_latencies, statistics.median, 1),
        "mpirun_exit_s_median": stat(mpirun_exits, statistics.median, 3),
        "mpirun_exit_s_max": stat(mpirun_exits, max, 3),
        "runs": runs,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--idle-seconds", type=float, default=3.0)
    p.add_argument("--quick", action="store_true", help="3 runs, 2 s idle")
    args = p.parse_args(argv)
    runs, idle = (3, 2.0) if args.quick else (args.runs, args.idle_seconds)
    print(json.dumps(run_suite(runs, idle), indent=2))


if __name__ == "__main__":
    main()
