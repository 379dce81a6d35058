"""Elastic training on the local Slurm cluster.

The driver starts alone with one worker process (``srun -N 1 -n 2``), so an elastic
``TorchTrainer(ScalingConfig(num_workers=(1, 3)))`` begins with 1 worker; its pending probe
actors make the autoscaler submit a worker job (2 more processes on another node), and the
run grows to 3 workers from its latest checkpoint. Once it trained with 3, the driver cancels
the worker job (a lost node): the run shrinks back to 1 worker and resumes from the latest
checkpoint; the time from the node's loss to the first step after it is printed. The run ends
with every epoch trained.

    srun -N 1 -n 2 python elastic.py <storage>
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn

import mpiray
from mpiray import train
from mpiray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig, UserCallback
from mpiray.train.torch import TorchTrainer, prepare_model

EPOCHS = 40


def loop(config):
    ctx = train.get_context()
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x.sum(dim=1, keepdim=True)
    model = prepare_model(nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    start = 0
    ck = train.get_checkpoint()
    if ck:
        st = torch.load(os.path.join(ck.path, "m.pt"))
        (model.module if hasattr(model, "module") else model).load_state_dict(st["model"])
        start = st["epoch"] + 1
    n = ctx.get_world_size()
    part = slice(ctx.get_world_rank() * 256 // n, (ctx.get_world_rank() + 1) * 256 // n)
    for epoch in range(start, EPOCHS):
        loss = nn.functional.mse_loss(model(x[part]), y[part])
        opt.zero_grad()
        loss.backward()
        opt.step()
        time.sleep(0.4)
        ckpt = None
        if ctx.get_world_rank() == 0:
            d = tempfile.mkdtemp()
            torch.save({"model": (model.module if hasattr(model, "module") else model).state_dict(),
                        "epoch": epoch}, os.path.join(d, "m.pt"))
            ckpt = Checkpoint.from_directory(d)
        train.report({"epoch": epoch, "start": start, "loss": loss.item(), "ws": n,
                      "job": os.environ.get("SLURM_JOB_ID")}, checkpoint=ckpt)


def worker_jobs(metrics):
    """The worker jobs this run's workers live in (from their reports): never another job on
    the cluster (other tests' jobs run beside this one)."""
    me = os.environ.get("SLURM_JOB_ID")
    return sorted({m["job"] for m in metrics if m.get("job") and m["job"] != me})


class NodeKiller(UserCallback):
    """After 3 reports made by 3 workers, cancel the worker job (its node is lost)."""

    def __init__(self):
        self.sizes = []
        self.killed_at = None
        self.resumed_after = None
        self.with3 = 0

    def after_report(self, run_context, metrics, checkpoint):
        ws = len(metrics)
        self.sizes.append((metrics[0]["epoch"], ws))
        if self.killed_at is not None and self.resumed_after is None and ws != 3:
            self.resumed_after = time.time() - self.killed_at
            print(f"NODE LOSS -> TRAINING RESUMED with {ws} worker(s) in {self.resumed_after:.2f} s", flush=True)
        if ws == 3 and self.killed_at is None:
            self.with3 += 1
            if self.with3 == 3:
                jobs = worker_jobs(metrics)
                print(f"TRAINING WITH 3 WORKERS; cancelling worker job(s) {jobs}", flush=True)
                self.killed_at = time.time()
                for j in jobs:
                    subprocess.run(["scancel", j], check=False)


mpiray.init(autoscale={"max": 1, "nodes": 1, "tasks_per_node": 2, "idle": 600, "delay": 0.2,
                       "time": "00:10:00", "sbatch": "--exclusive"})
killer = NodeKiller()
t0 = time.time()
result = TorchTrainer(loop, scaling_config=ScalingConfig(num_workers=(1, 3), elastic_resize_monitor_interval_s=5.0),
                      run_config=RunConfig(storage_path=sys.argv[1], name="elastic", callbacks=[killer],
                                           failure_config=FailureConfig(max_failures=5))).fit()
sizes = killer.sizes
print("SIZES", json.dumps(sizes), flush=True)
assert result.metrics["epoch"] == EPOCHS - 1, result.metrics
assert sizes[0][1] == 1, sizes                          # started with what there was
first3 = next(i for i, (_, ws) in enumerate(sizes) if ws == 3)        # grew
after_loss = [ws for _, ws in sizes[first3:] if ws != 3]
assert after_loss and after_loss[0] == 1, sizes         # shrank after the node was lost
assert killer.resumed_after is not None and killer.resumed_after < 60, killer.resumed_after
epochs = [e for e, _ in sizes]
assert set(epochs) == set(range(EPOCHS)), epochs
assert result.metrics["loss"] < 0.5, result.metrics
print(f"elastic train OK in {time.time() - t0:.1f} s; node loss to resumed training "
      f"{killer.resumed_after:.2f} s", flush=True)
