"""Tune benchmark suite (``python -m mpiray.bench --suite tune [--against-ray] [--quick]``).

The same three workloads on mpiray.tune and on Ray Tune, each backend in its own process
with ``init(num_cpus=2)`` and Tune's default logger callbacks (JSON, CSV, TensorBoard):

* ``tune_overhead_ratio``: N trials (500; quick 40) that sleep 0.2 s and report once, 0.5
  CPU each so that 4 run at once: ``fit()`` wall time / ideal (N * 0.2 s / 4). 1.0 is no
  overhead.
* ``tune_results_per_s``: 8 trials (0.25 CPU each: all at once) reporting as fast as they
  can for 10 s (quick 3 s): results received / ``fit()`` wall time. Nothing acts on the
  results (FIFO, no stopper), so mpiray lets trials run ahead of the driver (bounded).
* ``tune_results_per_s_lockstep``: the same with a stopper (``MaximumIterationStopper`` that
  never fires): ``report()`` returns only after the driver decided on the result, on both
  (Ray always works this way).
* ``tune_trial_start_ms``: N trivial trials (200; quick 20) that report once, 4 at once:
  ``fit()`` wall time per trial, in ms.
"""

import importlib
import json
import os
import sys
import tempfile
import time


def _workloads(ray, tune, quick):
    out = {}
    storage = tempfile.mkdtemp(prefix="bench-tune-")

    def fit(fn, space, cpus, name, stop=None):
        t0 = time.perf_counter()
        grid = tune.Tuner(tune.with_resources(fn, {"cpu": cpus}), param_space=space,
                          run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0, stop=stop)).fit()
        return time.perf_counter() - t0, grid

    def trivial(config):
        tune.report({"x": 1})

    fit(trivial, {"i": tune.grid_search(list(range(4)))}, 0.5, "warmup")   # imports, worker start-up

    n = 40 if quick else 500

    def sleepy(config):
        time.sleep(0.2)
        tune.report({"x": 1})

    wall, grid = fit(sleepy, {"i": tune.grid_search(list(range(n)))}, 0.5, "overhead")
    assert sum(1 for r in grid if r.error is None) == n
    out["tune_overhead_ratio"] = wall / (n * 0.2 / 4)
    print(f"  tune_overhead_ratio: {out['tune_overhead_ratio']:.3f} ({n} trials in {wall:.1f} s)",
          file=sys.stderr, flush=True)

    dur = 3.0 if quick else 10.0

    def fast(config):
        end = time.time() + dur
        i = 0
        while time.time() < end:
            i += 1
            tune.report({"i": i})

    wall, grid = fit(fast, {"i": tune.grid_search(list(range(8)))}, 0.25, "results")
    total = sum(r.metrics["training_iteration"] for r in grid)
    out["tune_results_per_s"] = total / wall
    print(f"  tune_results_per_s: {out['tune_results_per_s']:.0f} ({total} results in {wall:.1f} s)",
          file=sys.stderr, flush=True)

    stopper = importlib.import_module(tune.__name__ + ".stopper").MaximumIterationStopper(10 ** 12)
    wall, grid = fit(fast, {"i": tune.grid_search(list(range(8)))}, 0.25, "lockstep", stop=stopper)
    total = sum(r.metrics["training_iteration"] for r in grid)
    out["tune_results_per_s_lockstep"] = total / wall
    print(f"  tune_results_per_s_lockstep: {out['tune_results_per_s_lockstep']:.0f} ({total} results in "
          f"{wall:.1f} s)", file=sys.stderr, flush=True)

    n = 20 if quick else 200
    wall, grid = fit(trivial, {"i": tune.grid_search(list(range(n)))}, 0.5, "start")
    out["tune_trial_start_ms"] = wall * 1000 / n
    print(f"  tune_trial_start_ms: {out['tune_trial_start_ms']:.1f}", file=sys.stderr, flush=True)
    import shutil
    shutil.rmtree(storage, ignore_errors=True)
    return out


def run_backend(backend, quick):
    import importlib
    ray = importlib.import_module(backend)
    tune = importlib.import_module(backend + ".tune")
    if backend == "ray":
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    else:
        ray.init(num_cpus=2)
    try:
        return _workloads(ray, tune, quick)
    finally:
        ray.shutdown()


def run_suite(against_ray, quick):
    import subprocess

    def child(backend):
        cmd = [sys.executable, "-m", "mpiray.bench_tune", "--backend", backend] + (["--quick"] if quick else [])
        env = dict(os.environ, RAY_AIR_NEW_OUTPUT="1", TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="0")
        res = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, check=True, text=True)
        return json.loads(res.stdout.strip().splitlines()[-1])

    ours = child("mpiray")
    if not against_ray:
        return {"mpiray": ours}
    theirs = child("ray")
    ratio = {}
    for k, v in ours.items():
        if k in theirs and theirs[k] and v:
            # smaller is better for times and the overhead ratio: theirs / ours
            ratio[k] = v / theirs[k] if "_per_s" in k else theirs[k] / v
    return {"mpiray": ours, "ray": theirs, "ratio": ratio, "cores": os.cpu_count()}


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--backend", required=True)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    print(json.dumps(run_backend(a.backend, a.quick)))
