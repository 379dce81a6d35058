"""A Ray Tune script that runs unchanged on mpiray: ASHA over a small search space, with
checkpoints, resumable after a walltime stop or a crash.

    python examples/python/tune_sweep.py                  # local workers
    srun --mpi=pmix python examples/python/tune_sweep.py  # inside a Slurm allocation
"""
import json
import os
import sys
import tempfile

import mpiray as ray                 # was: import ray
from mpiray import train, tune       # was: from ray import train, tune
from mpiray.tune.schedulers import ASHAScheduler


def objective(config):
    start, score = 0, 0.0
    ckpt = tune.get_checkpoint()
    if ckpt:
        with open(os.path.join(ckpt.path, "state.json")) as f:
            start, score = json.load(f)
    for step in range(start, 20):
        score += config["lr"] * (1 - abs(config["momentum"] - 0.9))
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump([step + 1, score], f)
            tune.report({"score": score}, checkpoint=train.Checkpoint.from_directory(d))


if __name__ == "__main__":
    ray.init()
    storage = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "tune_sweep")
    path = os.path.join(storage, "sweep")
    if tune.Tuner.can_restore(path):           # a requeued job continues where it stopped
        tuner = tune.Tuner.restore(path, objective)
    else:
        tuner = tune.Tuner(
            objective,
            param_space={"lr": tune.loguniform(1e-3, 1.0), "momentum": tune.uniform(0.5, 0.99)},
            tune_config=tune.TuneConfig(metric="score", mode="max", num_samples=16,
                                        scheduler=ASHAScheduler(max_t=20, grace_period=2)),
            run_config=tune.RunConfig(name="sweep", storage_path=storage,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
    results = tuner.fit()
    best = results.get_best_result()
    print(f"best config {best.config} score {best.metrics['score']:.3f}; tune example OK")
