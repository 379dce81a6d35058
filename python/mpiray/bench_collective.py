"""The collective benchmark (``python -m mpiray.bench --suite collective``): all-reduce of
float32 from 4 B to 256 MiB on 4 processes, as bus bandwidth (nccl-tests' convention: busbw =
algbw * 2(n-1)/n) and latency, side by side in one run with

* mpiray.util.collective (backend "ucx") between 4 actors of a local mpiray cluster,
* Open MPI's MPI_Allreduce on 4 ranks (bench/mpi_allreduce.cpp under scripts/mpirun),
* torch.distributed with the gloo backend on 4 processes.

Each one times loops of all-reduces per size (same iteration counts, after a warm-up): a loop's
time is the slowest rank's mean time per call. The three run one after the other, in 2 rounds
(mpiray, MPI, gloo, mpiray, MPI, gloo) of 2 loops per size each, and the fastest loop counts
for each: a burst of load on a shared machine then hits all three alike. Prints JSON: the headline keys, the ratios and
the whole table.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
RANKS = 4
REPS = 2    # timed loops per size and round
ROUNDS = 2  # mpiray, MPI, gloo; then again


def default_sizes():
    sizes = [4, 8]
    b = 16
    while b <= 256 << 20:
        sizes.append(b)
        b *= 4
    return sorted(set(sizes + [64 << 20]))


def iterations(nbytes, budget_s):
    """Calls per size: about `budget_s` at a rough guess of the cost, 3..2000."""
    guess = 20e-6 + nbytes / 1.0e9
    return int(min(2000, max(3, budget_s / guess)))


def busbw(nbytes, seconds, n=RANKS):
    return nbytes / seconds / 1e9 * 2 * (n - 1) / n


# ------------------------------------------------------------------ mpiray


def run_mpiray(sizes, budget_s):
    import mpiray as ray
    import mpiray.util.collective as col

    @ray.remote(num_cpus=1)
    class Member:
        def __init__(self, rank):
            col.init_collective_group(RANKS, rank, "ucx", "bench")

        def run(self, nbytes, iters):
            x = np.ones(max(1, nbytes // 4), dtype=np.float32)
            for _ in range(min(3, iters)):
                col.allreduce(x, "bench")
            times = []
            for _ in range(REPS):
                x[:] = 1.0
                col.barrier("bench")
                t = time.perf_counter()
                for _ in range(iters):
                    col.allreduce(x, "bench")
                times.append(time.perf_counter() - t)
            return times

        def check(self):
            x = np.full(1000, 2.0, dtype=np.float32)
            col.allreduce(x, "bench")
            return float(x[0])

    ray.init(num_cpus=RANKS)
    try:
        members = [Member.remote(r) for r in range(RANKS)]
        assert ray.get([m.check.remote() for m in members]) == [2.0 * RANKS] * RANKS
        rows = []
        for nbytes in sizes:
            iters = iterations(nbytes, budget_s)
            per_rank = ray.get([m.run.remote(nbytes, iters) for m in members])
            t = min(max(r[i] for r in per_rank) for i in range(REPS)) / iters
            rows.append({"bytes": nbytes, "latency_us": t * 1e6, "busbw_gbps": busbw(nbytes, t)})
            print(f"  mpiray {nbytes:>10} B: {t * 1e6:10.1f} us {busbw(nbytes, t):7.3f} GB/s",
                  file=sys.stderr, flush=True)
        return rows
    finally:
        ray.shutdown()


# ------------------------------------------------------------------ Open MPI


def run_mpi(sizes, budget_s, build_dir):
    exe = Path(build_dir) / "bench" / "mpiray_bench_mpi_allreduce"
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: run make build")
    cmd = [str(REPO / "scripts" / "mpirun"), "-n", str(RANKS), str(exe),
           "--sizes", ",".join(map(str, sizes)), "--budget-s", str(budget_s), "--reps", str(REPS)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True, timeout=1800).stdout
    rows = []
    for r in json.loads(out)["results"]:
        rows.append({"bytes": r["bytes"], "latency_us": r["latency_us"], "busbw_gbps": r["busbw_gbps"]})
        print(f"  mpi    {r['bytes']:>10} B: {r['latency_us']:10.1f} us {r['busbw_gbps']:7.3f} GB/s",
              file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------ torch.distributed gloo


def gloo_member(rank, port, sizes, budget_s):
    """One rank of the gloo run (a separate process); prints its timings as JSON."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", world_size=RANKS, rank=rank)
    times = []
    for nbytes in sizes:
        iters = iterations(nbytes, budget_s)
        x = torch.ones(max(1, nbytes // 4), dtype=torch.float32)
        for _ in range(min(3, iters)):
            dist.all_reduce(x)
        reps = []
        for _ in range(REPS):
            x.fill_(1.0)
            dist.barrier()
            t = time.perf_counter()
            for _ in range(iters):
                dist.all_reduce(x)
            reps.append((time.perf_counter() - t) / iters)
        times.append(reps)
    dist.destroy_process_group()
    print(json.dumps(times))


def run_gloo(sizes, budget_s):
    try:
        import torch.distributed as dist
        if not dist.is_available() or not dist.is_gloo_available():
            raise ImportError("torch.distributed without gloo")
    except ImportError as e:
        print(f"  gloo: skipped ({e})", file=sys.stderr)
        return None
    with socket.socket() as s:  # a free port for gloo's own rendezvous (a baseline, not mpiray)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen([sys.executable, "-m", "mpiray.bench_collective", "--gloo-rank", str(r),
                               "--gloo-port", str(port), "--sizes", ",".join(map(str, sizes)),
                               "--budget-s", str(budget_s)], stdout=subprocess.PIPE, text=True)
             for r in range(RANKS)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a gloo rank failed")
    per_rank = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    rows = []
    for i, nbytes in enumerate(sizes):
        t = min(max(r[i][k] for r in per_rank) for k in range(REPS))
        rows.append({"bytes": nbytes, "latency_us": t * 1e6, "busbw_gbps": busbw(nbytes, t)})
        print(f"  gloo   {nbytes:>10} B: {t * 1e6:10.1f} us {busbw(nbytes, t):7.3f} GB/s",
              file=sys.stderr, flush=True)
    return rows


# ------------------------------------------------------------------ the suite


def _at(rows, nbytes, key):
    if rows is None:
        return None
    for r in rows:
        if r["bytes"] == nbytes:
            return r[key]
    return None


def _best(a, b):
    """Per size, the faster of two runs' rows."""
    if a is None or b is None:
        return a or b
    return [x if x["latency_us"] <= y["latency_us"] else y for x, y in zip(a, b)]


def run_suite(sizes=None, budget_s=0.2, build_dir=None, quick=False):
    """All three, one after the other on the same machine, ROUNDS times; returns the JSON dict."""
    sizes = sizes or default_sizes()
    build_dir = build_dir or os.environ.get("MPIRAY_BUILD_DIR") or str(REPO / "build")
    ours = mpi = gloo = None
    for r in range(1 if quick else ROUNDS):
        print(f"round {r + 1}", file=sys.stderr, flush=True)
        ours = _best(ours, run_mpiray(sizes, budget_s))
        mpi = _best(mpi, run_mpi(sizes, budget_s, build_dir))
        gloo = _best(gloo, run_gloo(sizes, budget_s))
    big, small = 64 << 20, 8
    out = {
        "allreduce_busbw_gbps_64mib": _at(ours, big, "busbw_gbps"),
        "mpi_allreduce_busbw_gbps_64mib": _at(mpi, big, "busbw_gbps"),
        "gloo_allreduce_busbw_gbps_64mib": _at(gloo, big, "busbw_gbps"),
        "allreduce_latency_us_8b": _at(ours, small, "latency_us"),
        "mpi_allreduce_latency_us_8b": _at(mpi, small, "latency_us"),
        "gloo_allreduce_latency_us_8b": _at(gloo, small, "latency_us"),
    }
    ratios = {}
    if out["allreduce_busbw_gbps_64mib"] and out["mpi_allreduce_busbw_gbps_64mib"]:
        ratios["allreduce_busbw_vs_mpi_64mib"] = out["allreduce_busbw_gbps_64mib"] / out["mpi_allreduce_busbw_gbps_64mib"]
    if out["allreduce_busbw_gbps_64mib"] and out["gloo_allreduce_busbw_gbps_64mib"]:
        ratios["allreduce_busbw_vs_gloo_64mib"] = out["allreduce_busbw_gbps_64mib"] / out["gloo_allreduce_busbw_gbps_64mib"]
    if out["allreduce_latency_us_8b"] and out["mpi_allreduce_latency_us_8b"]:
        # Times: MPI's over ours (> 1: we are faster; the target is >= 0.5).
        ratios["allreduce_latency_vs_mpi_8b"] = out["mpi_allreduce_latency_us_8b"] / out["allreduce_latency_us_8b"]
    table = []
    for nbytes in sizes:
        table.append({"bytes": nbytes,
                      "mpiray_busbw_gbps": _at(ours, nbytes, "busbw_gbps"),
                      "mpi_busbw_gbps": _at(mpi, nbytes, "busbw_gbps"),
                      "gloo_busbw_gbps": _at(gloo, nbytes, "busbw_gbps"),
                      "mpiray_latency_us": _at(ours, nbytes, "latency_us"),
                      "mpi_latency_us": _at(mpi, nbytes, "latency_us"),
                      "gloo_latency_us": _at(gloo, nbytes, "latency_us")})
    out.update(ratios)
    out.update({"ranks": RANKS, "cores": os.cpu_count(), "dtype": "float32",
                "load_average": os.getloadavg()[0], "table": table})
    # The kernels' throughputs belong to the same suite (their own module, when present).
    try:
        from . import bench_kernels  # noqa: F401
    except ImportError:
        bench_kernels = None
    if bench_kernels is not None and hasattr(bench_kernels, "run"):
        out.update(bench_kernels.run(quick=quick))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpiray.bench_collective", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default=None, help="comma-separated message sizes in bytes")
    p.add_argument("--budget-s", type=float, default=None, help="about how long each timed loop runs (0.2 s)")
    p.add_argument("--quick", action="store_true", help="shorter loops (0.05 s per size)")
    p.add_argument("--gloo-rank", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--gloo-port", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else default_sizes()
    budget = args.budget_s if args.budget_s is not None else (0.05 if args.quick else 0.2)
    if args.gloo_rank is not None:
        gloo_member(args.gloo_rank, args.gloo_port, sizes, budget)
        return 0
    print(json.dumps(run_suite(sizes, budget, quick=args.quick), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
