"""A TorchTrainer run as users write it (the loop in the script): gloo or the mpiray hook,
optionally with a training worker that SIGKILLs itself once (epoch 2, rank 1).

    python ddp.py <storage> <default|gloo|mpiray> <num_workers> <none|kill|both>
    python ddp.py <default|gloo|mpiray> <num_workers> <none|kill|both> <storage>

Prints one line ``RESULT {json}`` with each run's losses, per-report metrics of every rank
and the pid of the killed worker. Used by tests/python/train/test_torch.py and by the Slurm
tests (tests/slurm/CMakeLists.txt: srun_train_worker_killed)."""

import json, os, signal, sys, tempfile
import torch, torch.nn as nn
import mpiray
from mpiray import train
from mpiray.train import Checkpoint, FailureConfig, RunConfig, ScalingConfig, UserCallback
from mpiray.train.torch import TorchConfig, TorchTrainer, get_device, prepare_data_loader, prepare_model
from mpiray.train.torch import _mpiray_hook

if sys.argv[1] in ("default", "gloo", "mpiray"):  # storage last (tests/python/train/in-tmpdir.sh)
    backend, workers, kill_mode, storage = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
else:
    storage, backend, workers, kill_mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
EPOCHS = 5


class Indexed(torch.utils.data.Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(384, 8, generator=g)
        w = torch.randn(8, 1, generator=g)
        self.y = self.x @ w + 0.05 * torch.randn(384, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


def loop(config):
    ctx = train.get_context()
    rank = ctx.get_world_rank()
    dl = prepare_data_loader(torch.utils.data.DataLoader(Indexed(), batch_size=32, shuffle=True))
    torch.manual_seed(123)
    model = prepare_model(nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1)))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = 0
    ck = train.get_checkpoint()
    if ck:
        with ck.as_directory() as d:
            st = torch.load(os.path.join(d, "model.pt"))
        model.module.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        start = st["epoch"] + 1
    for epoch in range(start, EPOCHS):
        dl.sampler.set_epoch(epoch)
        seen, tot, n = [], 0.0, 0
        for step, (x, y, idx) in enumerate(dl):
            if config["kill"] and epoch == 2 and step == 3 and rank == 1 and not os.path.exists(config["mark"]):
                open(config["mark"], "w").write(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            loss = nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += idx.tolist()
            tot += loss.item()
            n += 1
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:
                torch.save({"model": model.module.state_dict(), "opt": opt.state_dict(), "epoch": epoch},
                           os.path.join(d, "model.pt"))
                ckpt = Checkpoint.from_directory(d)
            train.report({"loss": tot / n, "epoch": epoch, "start": start, "seen": seen,
                          "param_sum": float(params.sum()), "param_abs": float(params.abs().sum()),
                          "port": os.environ.get("MASTER_PORT"), "device": str(get_device()),
                          "pid": os.getpid(), "hook_buckets": _mpiray_hook.allreduced_buckets()},
                         checkpoint=ckpt)


class Keep(UserCallback):
    def __init__(self):
        self.reports = []

    def after_report(self, run_context, metrics, checkpoint):
        self.reports.append(metrics)


def fit(name, kill):
    keep = Keep()
    cfg = {"kill": kill, "mark": os.path.join(storage, name + ".killed")}
    r = TorchTrainer(loop, train_loop_config=cfg,
                     torch_config=TorchConfig(backend=None if backend == "default" else backend),
                     scaling_config=ScalingConfig(num_workers=workers),
                     run_config=RunConfig(storage_path=storage, name=name, callbacks=[keep],
                                          failure_config=FailureConfig(max_failures=2 if kill else 0))).fit()
    return r, keep.reports


mpiray.init()
out = {}
if kill_mode in ("none", "both"):
    r, reps = fit("clean", False)
    out["clean"] = {"final": r.metrics["loss"], "losses": list(r.metrics_dataframe["loss"]), "reports": reps}
if kill_mode in ("kill", "both"):
    r, reps = fit("killed", True)
    out["killed"] = {"final": r.metrics["loss"], "losses": list(r.metrics_dataframe["loss"]),
                     "starts": list(r.metrics_dataframe["start"]), "reports": reps,
                     "dead": open(os.path.join(storage, "killed.killed")).read()}
print("RESULT " + json.dumps(out), flush=True)
