"""Walltime under Slurm: the loop checkpoints every 5 epochs and, once
``train.get_preemption_info()`` says the job got its early warning, right away. The script has
no resume logic: a requeued job calls ``fit()`` again with the same ``RunConfig`` (the default
run name inside a Slurm job is ``ray_train_run-slurm<jobid>``, the same after a requeue) and
mpiray.train resumes from the latest checkpoint.

    srun python walltime.py <storage>      (inside a --requeue batch job)
    python walltime.py <storage> <name>    (outside Slurm: the run name given)
"""

import json
import os
import sys
import tempfile
import time

import mpiray
from mpiray import train
from mpiray.train import Checkpoint, DataParallelTrainer, RunConfig, ScalingConfig

EPOCHS = 30


def loop(config):
    rank = train.get_context().get_world_rank()
    ck = train.get_checkpoint()
    start = 0
    if ck:
        with open(os.path.join(ck.path, "state.json")) as f:
            start = json.load(f)["epoch"] + 1
        if rank == 0:
            print(f"RESUMED FROM EPOCH {start} ({os.path.basename(ck.path)})", flush=True)
    saved_on_warning = False
    for epoch in range(start, EPOCHS):
        time.sleep(0.3)
        info = train.get_preemption_info()
        jit = info is not None and not saved_on_warning
        ckpt = None
        if rank == 0 and (jit or epoch % 5 == 4):
            d = tempfile.mkdtemp()
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"epoch": epoch}, f)
            ckpt = Checkpoint.from_directory(d)
        train.report({"epoch": epoch, "start": start}, checkpoint=ckpt)
        if jit:
            saved_on_warning = True
            if rank == 0:
                print(f"SAVED ON WARNING AT EPOCH {epoch} (deadline {info.deadline_ms}, ranks "
                      f"{info.preempted_ranks})", flush=True)
        elif rank == 0:
            print(f"EPOCH {epoch}", flush=True)


mpiray.init()
result = DataParallelTrainer(loop, scaling_config=ScalingConfig(num_workers=2),
                             run_config=RunConfig(storage_path=sys.argv[1],
                                                  name=sys.argv[2] if len(sys.argv) > 2 else None)).fit()
print(f"TRAINING DONE run={os.path.basename(result.path)} epoch={result.metrics['epoch']} "
      f"start={result.metrics['start']}", flush=True)
