"""Microbenchmark with the metric names and workloads of Ray's ``ray microbenchmark``.

    python -m mpiray.bench                 # mpiray only, JSON on stdout
    python -m mpiray.bench --against-ray   # the same workloads on Ray too, and the ratios
    python -m mpiray.bench --quick         # shorter measurement windows
    python -m mpiray.bench --suite collective   # a library's suite (see bench_<suite>.py)
    python -m mpiray.bench --suite ctrl_c       # Ctrl-C latency, idle cost of a blocked get

With --against-ray the no-op task workload also runs on mpi4py.futures (``MPIPoolExecutor``
under ``mpirun``, one ``submit`` per task, as many worker ranks as mpiray starts workers) as
``mpi4py_futures_tasks_async``, with its ratio to ``single_client_tasks_async``.

Each workload runs for a fixed wall-clock window; the value is operations per second (or
GB/s for the *_gigabytes metrics), as in Ray's script. Each backend runs in its own process.
"""

import argparse
import importlib
import json
import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np


def _rate(fn, window, multiplier=1):
    """Calls of ``fn`` (after one warm-up call) for at least ``window`` seconds: calls per
    second times ``multiplier``."""
    fn()
    start = time.perf_counter()
    count = 0
    while True:
        fn()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= window:
            return count * multiplier / elapsed


def _last_json(stdout, what):
    """The result a benchmark child printed: its last line that is a JSON object (Ray and
    mpirun may print lines of their own before it)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"the {what} benchmark printed no result:\n{stdout}")


def _workloads(ray, window):
    """Run every workload on the module ``ray`` (mpiray or Ray); returns {name: value}."""
    results = {}

    def timeit(name, fn, multiplier=1):
        results[name] = _rate(fn, window, multiplier)
        print(f"  {name}: {results[name]:.1f}", file=sys.stderr, flush=True)

    @ray.remote(num_cpus=0)
    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_arg(self, x):
            return b"ok"

        def small_value_batch(self, n):
            ray.get([small_value.remote() for _ in range(n)])

    @ray.remote(num_cpus=0)
    class AsyncActor:
        async def small_value(self):
            return b"ok"

    @ray.remote(num_cpus=0)
    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n):
            refs = []
            for s in self.servers:
                refs.extend(s.small_value.remote() for _ in range(n))
            ray.get(refs)

        def small_value_batch_arg(self, n):
            x = ray.put(0)
            refs = []
            for s in self.servers:
                refs.extend(s.small_value_arg.remote(x) for _ in range(n))
            ray.get(refs)

    @ray.remote
    def small_value():
        return b"ok"

    @ray.remote
    def create_object_containing_ref():
        return [ray.put(1) for _ in range(10000)]

    @ray.remote
    def do_put_small():
        for _ in range(100):
            ray.put(0)

    @ray.remote
    def do_put():
        for _ in range(10):
            ray.put(np.zeros(10 * 1024 * 1024, dtype=np.int64))

    value = ray.put(0)
    timeit("single_client_get_calls", lambda: ray.get(value))
    timeit("single_client_put_calls", lambda: ray.put(0))
    timeit("multi_client_put_calls", lambda: ray.get([do_put_small.remote() for _ in range(10)]), 1000)
    arr = np.zeros(100 * 1024 * 1024, dtype=np.int64)
    timeit("single_client_put_gigabytes", lambda: ray.put(arr), 8 * 0.1)
    del arr

    def tasks_and_get_batch():
        ray.get([small_value.remote() for _ in range(1000)])

    timeit("single_client_tasks_and_get_batch", tasks_and_get_batch)
    timeit("multi_client_put_gigabytes", lambda: ray.get([do_put.remote() for _ in range(10)]),
           10 * 8 * 0.1)
    containing = create_object_containing_ref.remote()
    timeit("single_client_get_object_containing_10k_refs", lambda: ray.get(containing))

    def wait_multiple_refs():
        not_ready = [small_value.remote() for _ in range(1000)]
        for _ in range(1000):
            _, not_ready = ray.wait(not_ready)

    timeit("single_client_wait_1k_refs", wait_multiple_refs)
    timeit("single_client_tasks_sync", lambda: ray.get(small_value.remote()))
    timeit("single_client_tasks_async", lambda: ray.get([small_value.remote() for _ in range(1000)]), 1000)

    n, m = 10000, 4
    actors = [Actor.remote() for _ in range(m)]
    timeit("multi_client_tasks_async", lambda: ray.get([a.small_value_batch.remote(n) for a in actors]), n * m)

    a = Actor.remote()
    timeit("1_1_actor_calls_sync", lambda: ray.get(a.small_value.remote()))
    a = Actor.remote()
    timeit("1_1_actor_calls_async", lambda: ray.get([a.small_value.remote() for _ in range(1000)]), 1000)
    a = Actor.options(max_concurrency=16).remote()
    timeit("1_1_actor_calls_concurrent", lambda: ray.get([a.small_value.remote() for _ in range(1000)]), 1000)

    n = 5000
    n_cpu = max(1, multiprocessing.cpu_count() // 2)
    servers = [Actor.remote() for _ in range(n_cpu)]
    client = Client.remote(servers)
    timeit("1_n_actor_calls_async", lambda: ray.get(client.small_value_batch.remote(n)), n * len(servers))

    targets = [Actor.remote() for _ in range(n_cpu)]

    @ray.remote
    def work(actors):
        ray.get([actors[i % n_cpu].small_value.remote() for i in range(n)])

    timeit("n_n_actor_calls_async", lambda: ray.get([work.remote(targets) for _ in range(m)]), m * n)

    n = 1000
    servers = [Actor.remote() for _ in range(n_cpu)]
    clients = [Client.remote(s) for s in servers]
    timeit("n_n_actor_calls_with_arg_async",
           lambda: ray.get([c.small_value_batch_arg.remote(n) for c in clients]), n * len(clients))

    a = AsyncActor.remote()
    timeit("1_1_async_actor_calls_sync", lambda: ray.get(a.small_value.remote()))
    a = AsyncActor.remote()
    timeit("1_1_async_actor_calls_async", lambda: ray.get([a.small_value.remote() for _ in range(1000)]), 1000)
    n = 5000
    async_servers = [AsyncActor.remote() for _ in range(n_cpu)]
    async_clients = [Client.remote(s) for s in async_servers]
    timeit("n_n_async_actor_calls_async",
           lambda: ray.get([c.small_value_batch.remote(n) for c in async_clients]), n * len(async_clients))

    # Placement groups: 100 one-bundle groups created, waited for and removed.
    pgmod = importlib.import_module(ray.__name__ + ".util.placement_group")
    num_pgs = 100

    def placement_group_create_removal():
        pgs = [pgmod.placement_group([{"CPU": 0.001}]) for _ in range(num_pgs)]
        ray.get([pg.ready() for pg in pgs])
        for pg in pgs:
            pgmod.remove_placement_group(pg)

    timeit("placement_group_create/removal", placement_group_create_removal, num_pgs)
    return results


def run_backend(backend, window):
    """Measure one backend in this process: start-up, the workloads, shut-down."""
    ray = importlib.import_module(backend)

    @ray.remote
    def first():
        return 1

    t0 = time.perf_counter()
    ray.init()
    ray.get(first.remote())
    init_s = time.perf_counter() - t0
    results = _workloads(ray, window)
    t1 = time.perf_counter()
    ray.shutdown()
    results["shutdown_s"] = time.perf_counter() - t1
    results["init_to_first_result_s"] = init_s
    return results


def _noop():
    return b"ok"


def run_mpi4py_futures(window):
    """mpiray's single_client_tasks_async on mpi4py.futures: batches of 1,000 ``submit`` of a
    no-op, each result waited for; runs on rank 0 of ``mpirun ... python -m mpi4py.futures``."""
    from mpi4py.futures import MPIPoolExecutor

    with MPIPoolExecutor() as pool:
        def batch():
            for f in [pool.submit(_noop) for _ in range(1000)]:
                f.result()

        # (the warm-up batch also waits until every worker has started)
        return {"mpi4py_futures_tasks_async": _rate(batch, window, 1000)}


def _mpi4py_child(window, workers):
    """Run the mpi4py.futures peer under mpirun (1 + workers ranks); None when mpi4py or mpirun
    is missing (said on stderr)."""
    import importlib.util
    import shutil
    mpirun = shutil.which("mpirun")
    # Found, not imported: importing mpi4py.futures initialises MPI in this process, and an
    # mpirun started from an MPI process fails.
    if importlib.util.find_spec("mpi4py") is None:
        mpirun = None
    if mpirun is None:
        print("mpi4py_futures_tasks_async skipped: needs mpi4py and mpirun", file=sys.stderr)
        return None
    cmd = [mpirun, "--oversubscribe", "-n", str(1 + workers)]
    if os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [sys.executable, "-m", "mpi4py.futures", "-m", "mpiray.bench", "--backend", "mpi4py",
            "--window", str(window)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True, timeout=300)
    return _last_json(out.stdout, "mpi4py.futures")


def _child(backend, window):
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "mpiray.bench", "--backend", backend, "--window", str(window)]
    out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True, text=True)
    return _last_json(out.stdout, backend)


# Library suites run beside Ray's library: the module --against-ray imports and Ray's pip extra.
_LIBRARY_SUITES = {"rllib": ("ray", "rllib"), "data": ("ray", "data"), "serve": ("ray.serve", "serve"),
                   "tune": ("ray", "tune"), "train": ("ray", "train")}


def _ray_missing(module, extra):
    """Whether Ray (``module``) cannot be imported for --against-ray; says what to install."""
    try:
        importlib.import_module(module)
    except ImportError:
        what = "Ray Serve" if module == "ray.serve" else "Ray"
        package = f"'ray[{extra}]'" if extra else "ray"
        print(f"--against-ray needs {what}: pip install {package}", file=sys.stderr)
        return True
    return False


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpiray.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against-ray", action="store_true", help="also run the workloads on Ray")
    p.add_argument("--quick", action="store_true", help="0.5 s windows instead of 2 s")
    p.add_argument("--window", type=float, default=None, help="seconds per workload")
    p.add_argument("--backend", default=None, help=argparse.SUPPRESS)
    p.add_argument("--suite", default="core", choices=["core", "tune", "collective", "train", "data", "rllib",
                                                       "serve", "ctrl_c"],
                   help="core: Ray's microbenchmark workloads; a library's suite (tune, collective, "
                        "train, data, rllib) beside Ray's library with --against-ray; ctrl_c: "
                        "Ctrl-C latency and the idle cost of a blocked driver")
    p.add_argument("--num-envs", type=int, default=8, help="rllib: envs per env runner")
    p.add_argument("--time-cap", type=float, default=None, help="rllib: seconds per time-to-475 run")
    args, rest = p.parse_known_args(argv)
    if args.suite == "collective":
        from . import bench_collective
        return bench_collective.main((["--quick"] if args.quick else []) + rest)
    if args.suite == "ctrl_c":
        from . import bench_ctrl_c
        return bench_ctrl_c.main((["--quick"] if args.quick else []) + rest)
    if rest:
        p.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.suite in _LIBRARY_SUITES:
        module, extra = _LIBRARY_SUITES[args.suite]
        if args.against_ray and _ray_missing(module, extra):
            return 2
        suite = importlib.import_module(f".bench_{args.suite}", __package__)
        if args.suite == "rllib":
            result = suite.run_suite(args.against_ray, args.quick, args.num_envs, args.time_cap)
        else:
            result = suite.run_suite(args.against_ray, args.quick)
        print(json.dumps(result, indent=2))
        return 0
    window = args.window or (0.5 if args.quick else 2.0)
    if args.backend == "mpi4py":  # rank 0 of the mpi4py.futures peer
        print(json.dumps(run_mpi4py_futures(window)), flush=True)
        return 0
    if args.backend:  # a child process measuring one backend
        print(json.dumps(run_backend(args.backend, window)))
        return 0
    ours = _child("mpiray", window)
    if not args.against_ray:
        print(json.dumps(ours, indent=2))
        return 0
    if _ray_missing("ray", None):
        return 2
    theirs = _child("ray", window)
    ratio = {}
    for k, v in ours.items():
        if k in theirs and theirs[k]:
            # Times: smaller is better, so the ratio is theirs / ours; rates: ours / theirs.
            ratio[k] = theirs[k] / v if k.endswith("_s") else v / theirs[k]
    result = {"mpiray": ours, "ray": theirs, "ratio": ratio, "cores": os.cpu_count()}
    # mpiray starts one local worker per CPU: the peer gets as many worker ranks.
    peer = _mpi4py_child(window, os.cpu_count() or 1)
    if peer:
        result["mpi4py_futures"] = peer
        ratio["single_client_tasks_async_vs_mpi4py_futures"] = (
            ours["single_client_tasks_async"] / peer["mpi4py_futures_tasks_async"])
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
