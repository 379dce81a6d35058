"""Train benchmark suite (``python -m mpiray.bench --suite train [--against-ray] [--quick]``).

One workload, three ways, each in its own process on the same machine: an MLP (64-256-256-10)
on synthetic data (8192 samples, batch 64), 2 workers, CPU, gloo DDP through
``prepare_model``/``prepare_data_loader`` (a ``DistributedSampler``), SGD:

* mpiray.train ``TorchTrainer`` (default gloo, then ``TorchConfig(backend="mpiray")``),
* Ray Train's ``TorchTrainer`` (``--against-ray``; Ray 2.60, Train V2),
* plain ``torchrun --standalone --nproc_per_node 2`` DDP of the same loop.

Keys:

* ``train_start_to_first_step_s``: from ``trainer.fit()`` (cluster already initialised, as
  in a script that called ``init()`` first; the job's first ``fit()``, so the workers import
  torch on the way, as Ray's do) to the end of the first optimizer step on rank 0.
  ``train_start_to_first_step_warm_s``: a second ``fit()`` in the same job (mpiray's worker
  processes live on, torch already imported; Ray starts new worker processes every time).
  ``train_start_to_first_step_mpirun_s``: the first ``fit()`` of a job launched with
  ``mpirun -n 3`` whose script imports torch at its top (every rank runs the script up to
  ``init()``, so the workers have torch before ``fit()``).
* ``train_epoch_s``: the best epoch time (epochs after the first; on a shared machine other load
  only adds time), gloo (best of two runs around the hook's);
  ``train_epoch_mpiray_hook_s``: the same with the mpiray gradient hook;
  ``torchrun_epoch_s``: the same loop under torchrun (best of a run before and one after
  mpiray's); ``ray_train_epoch_s``,
  ``ray_train_start_to_first_step_s``: Ray Train.
* ratios: ``start_speedup_vs_ray`` (Ray / mpiray), ``epoch_vs_torchrun`` (mpiray / torchrun),
  ``hook_speedup_vs_gloo`` (gloo epoch / hook epoch).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

N_SAMPLES, N_FEATURES, N_CLASSES, BATCH = 8192, 64, 10, 64


def _data():
    import torch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_SAMPLES, N_FEATURES, generator=g)
    w = torch.randn(N_FEATURES, N_CLASSES, generator=g)
    y = (x @ w).argmax(dim=1)
    return torch.utils.data.TensorDataset(x, y)


def _model():
    import torch.nn as nn
    return nn.Sequential(nn.Linear(N_FEATURES, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, N_CLASSES))


def _epochs(model, loader, sampler, epochs, on_first_step, on_epoch):
    """The training loop shared by the three runs."""
    import torch
    import torch.nn as nn
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = True
    for epoch in range(epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        tot = n = 0
        for x, y in loader:
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if first:
                on_first_step(time.time())
                first = False
            tot += loss.item()
            n += 1
        on_epoch(epoch, time.perf_counter() - t0, tot / n)


# ------------------------------------------------------------------ mpiray / Ray Train
def _train_loop(config):
    """train_loop_per_worker for mpiray.train and Ray Train (``config["lib"]`` picks)."""
    import torch
    if config["lib"] == "ray":
        from ray import train
        from ray.train.torch import prepare_data_loader, prepare_model
    else:
        from mpiray import train
        from mpiray.train.torch import prepare_data_loader, prepare_model
    torch.manual_seed(0)
    loader = prepare_data_loader(torch.utils.data.DataLoader(_data(), batch_size=BATCH, shuffle=True))
    model = prepare_model(_model())
    sampler = getattr(loader, "sampler", None)
    state = {}

    def on_first(t):
        state["t_first_step"] = t

    rank = train.get_context().get_world_rank()

    def on_epoch(epoch, dt, loss):
        m = {"epoch": epoch, "epoch_s": dt, "loss": loss, "t_first_step": state["t_first_step"],
             "threads": torch.get_num_threads()}
        if rank == 0:  # Ray Train V2 keeps only checkpointed metrics: rank 0 logs them itself
            with open(config["log"], "a") as f:
                f.write(json.dumps(m) + "\n")
        train.report(m)

    _epochs(model, loader, sampler, config["epochs"], on_first, on_epoch)


def _fit_once(lib, backend, epochs, storage, name):
    if lib == "ray":
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    else:
        from mpiray.train import RunConfig, ScalingConfig
        from mpiray.train.torch import TorchConfig, TorchTrainer
    log = os.path.join(storage, name + ".jsonl")
    trainer = TorchTrainer(_train_loop, train_loop_config={"lib": lib, "epochs": epochs, "log": log},
                           torch_config=TorchConfig(backend=backend),
                           scaling_config=ScalingConfig(num_workers=2),
                           run_config=RunConfig(storage_path=storage, name=name))
    t0 = time.time()
    trainer.fit()
    with open(log) as f:
        rows = [json.loads(line) for line in f]
    first = min(r["t_first_step"] for r in rows)
    return {"start_to_first_step_s": first - t0, "epoch_s": _epoch_time([r["epoch_s"] for r in rows]),
            "final_loss": rows[-1]["loss"], "threads": rows[-1].get("threads")}


def _epoch_time(times):
    """The best epoch after the first: on a shared machine the other load only ever adds time,
    so the minimum is the run's own cost (the median is printed to stderr)."""
    later = sorted(times[1:]) or list(times)
    print(f"  epochs: best {later[0]:.3f} s, median {later[len(later) // 2]:.3f} s", file=sys.stderr, flush=True)
    return later[0]


def run_mpiray(quick):
    import mpiray
    epochs = 4 if quick else 8
    storage = tempfile.mkdtemp(prefix="bench-train-")
    out = {}
    mpiray.init(num_cpus=2)
    # the first fit of the job: workers import torch on the way
    cold = _fit_once("mpiray", None, 2, storage, "cold")
    out["train_start_to_first_step_s"] = cold["start_to_first_step_s"]
    gloo = _fit_once("mpiray", None, epochs, storage, "gloo")
    out["train_start_to_first_step_warm_s"] = gloo["start_to_first_step_s"]
    out["train_final_loss"] = gloo["final_loss"]
    hook = _fit_once("mpiray", "mpiray", epochs, storage, "hook")
    gloo2 = _fit_once("mpiray", None, epochs, storage, "gloo2")   # gloo, hook, gloo: same conditions
    out["train_epoch_s"] = out["train_epoch_gloo_s"] = min(gloo["epoch_s"], gloo2["epoch_s"])
    out["train_epoch_mpiray_hook_s"] = hook["epoch_s"]
    out["train_final_loss_mpiray_hook"] = hook["final_loss"]
    out["torch_threads_per_worker"] = gloo["threads"]
    mpiray.shutdown()
    return out


def run_mpiray_launched(quick):
    """The job launched as HPC jobs are (``mpirun -n 3``): every rank runs the script up to
    ``init()``, so a script that imports torch at the top has it imported in the workers
    before ``fit()``."""
    import torch  # noqa: F401  (as a training script does at its top, on every rank)
    import torch.distributed  # noqa: F401
    import torch.nn  # noqa: F401
    import mpiray
    mpiray.init()
    storage = tempfile.mkdtemp(prefix="bench-train-mpirun-")
    r = _fit_once("mpiray", None, 2, storage, "launched")
    mpiray.shutdown()
    return {"train_start_to_first_step_mpirun_s": r["start_to_first_step_s"]}


def run_ray(quick):
    import ray
    epochs = 4 if quick else 8
    storage = tempfile.mkdtemp(prefix="bench-train-ray-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    r = _fit_once("ray", None, epochs, storage, "gloo")
    ray.shutdown()
    return {"ray_train_start_to_first_step_s": r["start_to_first_step_s"], "ray_train_epoch_s": r["epoch_s"],
            "ray_train_final_loss": r["final_loss"], "ray_torch_threads_per_worker": r["threads"]}


# ------------------------------------------------------------------ torchrun
def _torchrun_main(epochs):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    ds = _data()
    sampler = DistributedSampler(ds, shuffle=True)
    loader = DataLoader(ds, batch_size=BATCH, shuffle=False, sampler=sampler)
    model = DistributedDataParallel(_model())
    times = []
    _epochs(model, loader, sampler, epochs, lambda t: None, lambda e, dt, loss: times.append((dt, loss)))
    if rank == 0:
        print("TORCHRUN " + json.dumps({"torchrun_epoch_s": _epoch_time([dt for dt, _ in times]),
                                        "torchrun_final_loss": times[-1][1],
                                        "torchrun_torch_threads": torch.get_num_threads()}), flush=True)
    dist.destroy_process_group()


def run_torchrun(quick):
    epochs = 4 if quick else 8
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "mpiray.bench_train", "--torchrun-child", str(epochs)]
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
    for line in res.stdout.splitlines():
        if line.startswith("TORCHRUN "):
            return json.loads(line[len("TORCHRUN "):])
    raise RuntimeError(f"torchrun printed no result:\n{res.stdout}\n{res.stderr}")


# ------------------------------------------------------------------ suite
def _child(backend, quick):
    cmd = [sys.executable, "-m", "mpiray.bench_train", "--backend", backend] + (["--quick"] if quick else [])
    res = subprocess.run(cmd, stdout=subprocess.PIPE, check=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def _child_mpirun(quick):
    mpirun = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "scripts", "mpirun")
    if not os.path.exists(mpirun):
        return {}
    cmd = [mpirun, "-n", "3", sys.executable, "-m", "mpiray.bench_train", "--backend", "mpiray-launched"] + \
        (["--quick"] if quick else [])
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    lines = [line for line in res.stdout.strip().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if res.returncode == 0 and lines else {}


def run_suite(against_ray, quick):
    out = {}
    first = _child("torchrun", quick)      # torchrun before and after mpiray: the better of the two
    out.update(_child("mpiray", quick))
    out.update(_child_mpirun(quick))
    out.update(_child("torchrun", quick))
    out["torchrun_epoch_s"] = min(out["torchrun_epoch_s"], first["torchrun_epoch_s"])
    if against_ray:
        out.update(_child("ray", quick))
    ratio = {"epoch_vs_torchrun": out["train_epoch_s"] / out["torchrun_epoch_s"],
             "hook_speedup_vs_gloo": out["train_epoch_gloo_s"] / out["train_epoch_mpiray_hook_s"]}
    if against_ray:
        ratio["start_speedup_vs_ray"] = out["ray_train_start_to_first_step_s"] / out["train_start_to_first_step_s"]
        ratio["start_speedup_vs_ray_warm"] = (out["ray_train_start_to_first_step_s"] /
                                              out["train_start_to_first_step_warm_s"])
        if "train_start_to_first_step_mpirun_s" in out:
            ratio["start_speedup_vs_ray_mpirun"] = (out["ray_train_start_to_first_step_s"] /
                                                    out["train_start_to_first_step_mpirun_s"])
        ratio["epoch_speedup_vs_ray"] = out["ray_train_epoch_s"] / out["train_epoch_s"]
    return {"mpiray": out, "ratio": ratio, "cores": os.cpu_count(),
            "workload": f"MLP {N_FEATURES}-256-256-{N_CLASSES}, {N_SAMPLES} samples, batch {BATCH}, 2 workers, CPU"}


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("--backend", choices=["mpiray", "mpiray-launched", "ray", "torchrun"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--torchrun-child", type=int, default=None)
    a = p.parse_args()
    if a.torchrun_child is not None:
        _torchrun_main(a.torchrun_child)
        sys.exit(0)
    fn = {"mpiray": run_mpiray, "mpiray-launched": run_mpiray_launched, "ray": run_ray,
          "torchrun": run_torchrun}[a.backend]
    out = fn(a.quick)
    if out is not None:   # worker ranks of an mpirun launch never get here
        print(json.dumps(out))
