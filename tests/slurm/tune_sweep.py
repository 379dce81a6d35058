"""A Tune sweep as a Slurm batch job runs it (tests/slurm/tune-walltime.sh): a fresh
experiment, or ``Tuner.restore`` of the one in <storage>/sweep when there is one (a requeued
job). 8 trials of 20 one-second iterations, 2 at a time (the job has 2 workers)."""
import json
import os
import sys
import time

import mpiray as ray
from mpiray import train, tune

storage = sys.argv[1]
ITERS = 20


def trainable(config):
    d = tune.get_context().get_trial_dir()
    run = os.environ.get("SLURM_RESTART_COUNT", "0")
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with open(os.path.join(ckpt.path, "state.json")) as f:
            start = json.load(f)["i"]
    with open(os.path.join(d, "starts.txt"), "a") as f:
        f.write(f"run {run} from {start}\n")
    for i in range(start, ITERS):
        time.sleep(1.0)
        tmp = os.path.join(d, "tmp_ckpt")
        os.makedirs(tmp, exist_ok=True)
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump({"i": i + 1}, f)
        tune.report({"score": config["x"] * (i + 1), "run": run}, checkpoint=train.Checkpoint.from_directory(tmp))


ray.init()
path = os.path.join(storage, "sweep")
if tune.Tuner.can_restore(path):
    print("restoring", path, flush=True)
    tuner = tune.Tuner.restore(path, trainable)
else:
    tuner = tune.Tuner(trainable, param_space={"x": tune.grid_search(list(range(1, 9)))},
                       tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
                       run_config=tune.RunConfig(storage_path=storage, name="sweep", verbose=1))
grid = tuner.fit()
print("RESULT", grid.num_terminated, grid.num_errors, grid.get_best_result().config["x"], flush=True)
ray.shutdown()
