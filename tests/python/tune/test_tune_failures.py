"""A trial whose worker process dies (its own cluster: the killed worker is replaced)."""

import json
import os
import time

import pytest

from mpiray import train, tune

pytestmark = pytest.mark.usefixtures("ray_cluster")


def rc(tmp_path, **kw):
    kw.setdefault("verbose", 0)
    return tune.RunConfig(storage_path=str(tmp_path), name=kw.pop("name", "exp"), **kw)


def test_dead_worker_is_a_trial_failure_and_resumes_from_checkpoint(tmp_path):
    marker = tmp_path / "killed"

    def train_fn(config):
        start = 0
        ckpt = tune.get_checkpoint()
        if ckpt:
            start = int(open(os.path.join(ckpt.path, "i")).read())
        for i in range(start, 6):
            d = os.path.join(tune.get_context().get_trial_dir(), "tmpck")
            os.makedirs(d, exist_ok=True)
            open(os.path.join(d, "i"), "w").write(str(i + 1))
            tune.report({"i": i + 1, "resumed_from": start}, checkpoint=train.Checkpoint.from_directory(d))
            if i == 2 and not os.path.exists(str(marker)):
                open(str(marker), "w").close()
                os.kill(os.getpid(), 9)   # the worker process dies
            time.sleep(0.05)

    grid = tune.Tuner(train_fn, run_config=rc(tmp_path, failure_config=tune.FailureConfig(max_failures=1))).fit()
    (r,) = list(grid)
    assert r.error is None and grid.num_terminated == 1
    assert r.metrics["i"] == 6 and r.metrics["resumed_from"] == 3
    with open(os.path.join(r.path, "result.json")) as f:
        iters = [json.loads(l)["training_iteration"] for l in f]
    assert iters == [1, 2, 3, 4, 5, 6], iters          # each iteration once


