"""HDF5 -> preprocessing -> training with mpiray.data, as a Ray Data script would do it.

    python examples/python/data_hdf5_train.py [workdir] [--rows N] [--epochs E]
    mpirun -n 4 python examples/python/data_hdf5_train.py          # rank 0 drives, 3 workers
    srun --mpi=pmix python examples/python/data_hdf5_train.py      # inside a Slurm allocation

1. A simulation writes its output: ``write_hdf5`` stores a dataset of features and targets as
   one HDF5 file (each block writes its own file in parallel; ``run.h5`` joins them with
   virtual datasets), readable by h5py or any HDF5 tool.
2. ``read_hdf5`` reads it back in chunk-aligned blocks; ``map_batches`` standardises the
   features with statistics computed by the dataset's own aggregations.
3. Training: with mpiray.train's ``TorchTrainer`` when it is installed (each worker takes its
   shard with ``train.get_dataset_shard("train").iter_torch_batches(...)``, streamed, never
   materialised); otherwise (mpiray.train not in this build yet) the same loop runs in the
   driver with plain PyTorch over ``ds.iter_torch_batches(...)``.

Prints the loss of each epoch and "final loss <x> (first <y>)"; the loss must fall.
"""
import argparse
import os
import tempfile

import numpy as np

import mpiray as ray                 # was: import ray
import mpiray.data as rd             # was: import ray.data as rd
from mpiray.data.aggregate import Mean, Std

FEATURES = 8
TRUE_W = np.linspace(-2.0, 2.0, FEATURES).astype(np.float32)


def simulate(batch):
    """Fake simulation output: features on very different scales, a noisy linear target."""
    ids = batch["id"]
    rng = np.random.default_rng(int(ids[0]))
    x = rng.normal(size=(len(ids), FEATURES)).astype(np.float32)
    scale = np.float32(10.0) ** np.arange(FEATURES, dtype=np.float32) / 100
    y = x @ TRUE_W + 0.1 * rng.normal(size=len(ids)).astype(np.float32)
    return {"x": x * scale + 5.0, "y": y.astype(np.float32)}


class Standardize:
    """Preprocessing: (x - mean) / std per feature, statistics computed once on the driver."""

    def __init__(self, mean, std):
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def __call__(self, batch):
        return {"x": (batch["x"] - self.mean) / self.std, "y": batch["y"]}


def train_loop(config):
    """One worker's loop (TorchTrainer), or the whole loop in the driver."""
    import torch
    try:
        from mpiray import train
        shard = train.get_dataset_shard("train")
        report = train.report
    except Exception:  # not inside a Train worker
        shard, report = config["dataset"], None
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 1)
    if report is not None:
        from mpiray.train.torch import prepare_model
        model = prepare_model(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for epoch in range(config["epochs"]):
        total, n = 0.0, 0
        for batch in shard.iter_torch_batches(batch_size=256, dtypes=torch.float32):
            pred = model(batch["x"]).squeeze(1)
            loss = torch.nn.functional.mse_loss(pred, batch["y"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(pred)
            n += len(pred)
        losses.append(total / max(n, 1))
        if report is not None:
            report({"epoch": epoch, "loss": losses[-1]})
        else:
            print(f"epoch {epoch}: loss {losses[-1]:.4f}", flush=True)
    return losses


def main():
    p = argparse.ArgumentParser()
    p.add_argument("workdir", nargs="?", default=None)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=4)
    a = p.parse_args()
    ray.init()
    work = a.workdir or tempfile.mkdtemp(prefix="data_hdf5_train-")
    path = os.path.join(work, "run.h5")

    # 1. The "simulation" writes one logical HDF5 dataset per column, in parallel.
    rd.range(a.rows).map_batches(simulate).write_hdf5(path, chunks=4096, compression="gzip",
                                                       compression_opts=1)
    print(f"wrote {path}: {rd.hdf5.describe(path, 'x')['shape']} features, layout "
          f"{rd.hdf5.describe(path, 'x')['layout']}")

    # 2. Read back in chunk-aligned blocks and standardise.
    ds = rd.read_hdf5(path, datasets=["x", "y"])
    cols = ds.map_batches(lambda b: {f"x{i}": b["x"][:, i] for i in range(FEATURES)})
    agg = cols.aggregate(*[Mean(f"x{i}") for i in range(FEATURES)], *[Std(f"x{i}") for i in range(FEATURES)])
    mean = [agg[f"mean(x{i})"] for i in range(FEATURES)]
    std = [agg[f"std(x{i})"] for i in range(FEATURES)]
    # One preprocessing actor with half a CPU; the two training workers below take half a CPU
    # each, so read tasks, the actor and training fit on a 2-core laptop too (with whole CPUs
    # the training workers would hold every CPU and the pipeline feeding them could not run).
    prepared = ds.map_batches(Standardize, fn_constructor_args=(mean, std), concurrency=1,
                              num_cpus=0.5)

    # 3. Train.
    try:
        from mpiray.train import ScalingConfig
        from mpiray.train.torch import TorchTrainer
    except ImportError:
        TorchTrainer = None
    if TorchTrainer is not None:
        trainer = TorchTrainer(train_loop, train_loop_config={"epochs": a.epochs},
                               scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                               datasets={"train": prepared})
        result = trainer.fit()
        losses = [m["loss"] for m in result.metrics_dataframe.to_dict("records")] \
            if result.metrics_dataframe is not None else [result.metrics["loss"]]
    else:
        print("(mpiray.train's TorchTrainer is not in this build: training in the driver with PyTorch)")
        losses = train_loop({"epochs": a.epochs, "dataset": prepared})
    print(f"final loss {losses[-1]:.4f} (first {losses[0]:.4f})")
    ray.shutdown()


if __name__ == "__main__":
    main()
