"""A user's program, run by tests/install against an installed mpiray:
    python prog.py                  (no launcher: MPIRAY_NUM_WORKERS local workers)
    scripts/mpirun -n 3 python prog.py
Remote functions and actors are defined here, in __main__, as users write them. Prints one
`RESULT {json}` line: where mpiray came from and what ran where."""

import json
import os
import subprocess

import mpiray as ray


@ray.remote
def square(x):
    return x * x, os.getpid()


@ray.remote
class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, k):
        self.value += k
        return self.value


ray.init()
results = ray.get([square.remote(i) for i in range(20)])
assert [v for v, _ in results] == [i * i for i in range(20)], results
pids = {pid for _, pid in results}
counter = Counter.remote(10)
counter.add.remote(5)
value = ray.get(counter.add.remote(1))

# The installed `mpiray` command, asked about this running job.
context = ray.get_runtime_context().get()
status = subprocess.run(["mpiray", "status", "--session", context["session_dir"], "--json"],
                        capture_output=True, text=True, timeout=60)
workers = None
if status.returncode == 0:
    workers = sum(len(node["workers"]) for node in json.loads(status.stdout)["nodes"])

import mpiray._core  # noqa: E402

print("RESULT " + json.dumps({
    "package": os.path.dirname(os.path.abspath(ray.__file__)),
    "core": os.path.abspath(mpiray._core.__file__),
    "remote": os.getpid() not in pids,
    "counter": value,
    "cpus": ray.cluster_resources().get("CPU"),
    "status_rc": status.returncode,
    "status_err": status.stderr[-2000:],
    "workers": workers,
}), flush=True)
ray.shutdown()
