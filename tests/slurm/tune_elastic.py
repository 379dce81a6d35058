"""Elastic Tune on the local Slurm cluster: the driver starts alone on its node (no CPUs),
so every trial waits; waiting trials are demand for the autoscaler, which submits worker jobs
(the job grows to 3 nodes); every trial finishes with each of its results logged once; once
the experiment is over the idle worker jobs are cancelled (back to 1 node).

Run as: srun -N 1 -n 1 python3 tune_elastic.py (the CTest test slurm/tune_elastic)."""
import json
import os
import shutil
import tempfile
import threading
import time

import mpiray as ray
from mpiray import tune

# Whole nodes per worker job (otherwise Slurm may pack a worker job onto the driver's node).
ray.init(autoscale={"max": 2, "nodes": 1, "tasks_per_node": 2, "idle": 3, "delay": 0.2,
                    "time": "00:05:00", "sbatch": "--exclusive"})

ITERS, TRIALS = 10, 12


def trainable(config):
    for i in range(ITERS):
        time.sleep(0.3)
        tune.report({"score": config["x"] * (i + 1), "node": os.environ.get("SLURMD_NODENAME", "?")})


def node_count():
    return len([n for n in ray.nodes() if n.get("Alive", True)])


most = [node_count()]
done = threading.Event()


def watch():
    while not done.is_set():
        most[0] = max(most[0], node_count())
        time.sleep(0.2)


watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
storage = tempfile.mkdtemp(prefix="tune-elastic-")
try:
    start = time.time()
    assert ray.cluster_resources().get("CPU", 0) == 0, ray.cluster_resources()
    grid = tune.Tuner(trainable, param_space={"x": tune.grid_search(list(range(TRIALS)))},
                      tune_config=tune.TuneConfig(metric="score", mode="max"),
                      run_config=tune.RunConfig(storage_path=storage, name="elastic", verbose=1)).fit()
    done.set()
    watcher.join()
    print(f"experiment done in {time.time() - start:.1f} s; the job grew to {most[0]} nodes", flush=True)
    assert grid.num_terminated == TRIALS and grid.num_errors == 0, (grid.num_terminated, grid.errors)
    nodes = set()
    for r in grid:
        with open(os.path.join(r.path, "result.json")) as f:
            rows = [json.loads(line) for line in f]
        assert [row["training_iteration"] for row in rows] == list(range(1, ITERS + 1)), (r.path, rows)
        assert rows[-1]["score"] == r.config["x"] * ITERS
        nodes.update(row["node"] for row in rows)
    print(f"trials ran on simulated nodes {sorted(nodes)}", flush=True)
    assert most[0] == 3, most[0]
    assert len(nodes) == 2, nodes            # the two worker jobs' nodes (the driver's has no CPU)
    deadline = time.time() + 60
    while node_count() > 1 and time.time() < deadline:
        time.sleep(0.2)
    print(f"shrank back to {node_count()} node(s)", flush=True)
    assert node_count() == 1
    print("tune elastic OK", flush=True)
finally:
    done.set()
    shutil.rmtree(storage, ignore_errors=True)
    ray.shutdown()
