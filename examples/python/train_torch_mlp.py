"""A Ray Train script that runs unchanged on mpiray: data-parallel PyTorch (DDP) of a small MLP
on synthetic data, with checkpoints every epoch, restarts after a worker's death, and a
just-in-time checkpoint when Slurm's walltime warning comes.

    python examples/python/train_torch_mlp.py                      # local workers
    scripts/mpirun --enable-recovery -n 4 python examples/python/train_torch_mlp.py
    srun --mpi=pmix -n 4 python examples/python/train_torch_mlp.py # in an allocation

Options: --workers N (default 2), --epochs E (default 6), --backend gloo|mpiray,
--storage DIR (default ~/mpiray_results). Run it again with the same --name to resume.
"""
import argparse
import os
import tempfile

import torch
import torch.nn as nn

import mpiray as ray                                        # was: import ray
from mpiray import train                                    # was: from ray import train
from mpiray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from mpiray.train.torch import TorchConfig, TorchTrainer, prepare_data_loader, prepare_model


def make_dataset(n=4096, features=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, 1, generator=g)
    y = torch.tanh(x @ w) + 0.05 * torch.randn(n, 1, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def train_loop_per_worker(config):
    loader = prepare_data_loader(torch.utils.data.DataLoader(make_dataset(), batch_size=64, shuffle=True))
    torch.manual_seed(42)                                  # every rank starts from the same weights
    model = prepare_model(nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1)))
    opt = torch.optim.Adam(model.parameters(), lr=config["lr"])
    start = 0
    checkpoint = train.get_checkpoint()                    # after a restart or a resumed run
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, "state.pt"))
        model.module.load_state_dict(state["model"]) if hasattr(model, "module") else \
            model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1
    ctx = train.get_context()
    for epoch in range(start, config["epochs"]):
        if ctx.get_world_size() > 1:
            loader.sampler.set_epoch(epoch)
        total, batches = 0.0, 0
        for x, y in loader:
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            batches += 1
        preempted = train.get_preemption_info() is not None   # Slurm's walltime warning
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if ctx.get_world_rank() == 0:
                m = model.module if hasattr(model, "module") else model
                torch.save({"model": m.state_dict(), "opt": opt.state_dict(), "epoch": epoch},
                           os.path.join(d, "state.pt"))
                ckpt = Checkpoint.from_directory(d)
            train.report({"loss": total / batches, "epoch": epoch, "preempted": preempted}, checkpoint=ckpt)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--backend", default=None, choices=[None, "gloo", "mpiray"])
    p.add_argument("--storage", default=None)
    p.add_argument("--name", default=None)
    args = p.parse_args()

    ray.init()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"lr": 1e-2, "epochs": args.epochs},
        torch_config=TorchConfig(backend=args.backend),
        scaling_config=ScalingConfig(num_workers=args.workers),
        run_config=RunConfig(name=args.name, storage_path=args.storage,
                             checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="loss",
                                                                checkpoint_score_order="min"),
                             failure_config=FailureConfig(max_failures=3)))
    result = trainer.fit()
    first, last = result.metrics_dataframe["loss"].iloc[0], result.metrics["loss"]
    print(f"trained {result.metrics['epoch'] + 1} epochs on {args.workers} workers: loss {first:.4f} -> {last:.4f}")
    print(f"run directory: {result.path}")
    print(f"best checkpoint: {result.get_best_checkpoint('loss', 'min').path}")
    assert last < first, "the loss should fall"
    print("train example OK")


if __name__ == "__main__":
    main()
