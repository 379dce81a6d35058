"""Tune scripts run as users run them (``python script.py``, trainables in ``__main__``):
restore after the driver is SIGKILLed, the walltime signal, MLflow and W&B offline."""

import json
import os
import signal
import time

import pytest

SWEEP = r'''
import json, os, sys, time
import mpiray as ray
from mpiray import train, tune

storage, mode = sys.argv[1], sys.argv[2]

def trainable(config):
    d = tune.get_context().get_trial_dir()
    with open(os.path.join(d, "starts.txt"), "a") as f:
        f.write("start\n")
    start = 0
    ckpt = tune.get_checkpoint()
    if ckpt:
        start = json.load(open(os.path.join(ckpt.path, "s.json")))["i"]
    for i in range(start, 8):
        time.sleep(0.15)
        tmp = os.path.join(d, "tmp_ckpt")
        os.makedirs(tmp, exist_ok=True)
        json.dump({"i": i + 1}, open(os.path.join(tmp, "s.json"), "w"))
        tune.report({"score": config["x"] * (i + 1)}, checkpoint=train.Checkpoint.from_directory(tmp))

ray.init(num_cpus=2)
path = os.path.join(storage, "sweep")
if mode == "fresh":
    tuner = tune.Tuner(trainable, param_space={"x": tune.grid_search([1, 2, 3, 4, 5, 6])},
                       tune_config=tune.TuneConfig(metric="score", mode="max", max_concurrent_trials=2),
                       run_config=tune.RunConfig(storage_path=storage, name="sweep", verbose=1))
else:
    assert tune.Tuner.can_restore(path)
    tuner = tune.Tuner.restore(path, trainable)
grid = tuner.fit()
print("RESULT", grid.num_terminated, grid.num_errors, grid.get_best_result().config["x"], flush=True)
'''


def _check_trials(exp):
    """Every trial ran to iteration 8, each iteration logged exactly once."""
    dirs = [os.path.join(exp, d) for d in os.listdir(exp) if d.startswith("trainable_")]
    assert len(dirs) == 6, dirs
    starts = {}
    for d in dirs:
        with open(os.path.join(d, "result.json")) as f:
            iters = [json.loads(l)["training_iteration"] for l in f]
        assert iters == list(range(1, 9)), (d, iters)
        starts[d] = open(os.path.join(d, "starts.txt")).read().count("start")
    return starts


def _wait_for(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def _journal(exp):
    try:
        with open(os.path.join(exp, "experiment_journal.jsonl")) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def _terminated(exp):
    return sum(1 for e in _journal(exp) if e.get("status") == "TERMINATED")


def _running_with_checkpoint(exp, at_most=5):
    """A trial has a checkpoint in the journal, at most at iteration ``at_most`` of 8, and
    has not ended: stopping the driver now interrupts it mid-way (it has at least 0.45 s of
    work left and must resume from that checkpoint)."""
    latest, ended = {}, set()
    for e in _journal(exp):
        if e.get("ev") == "ckpt":
            latest[e["id"]] = e["iter"]
        elif e.get("status") == "TERMINATED":
            ended.add(e["id"])
    return any(it <= at_most for tid, it in latest.items() if tid not in ended)


@pytest.mark.timeout(180)
def test_restore_after_driver_kill(spawn_script, run_script, tmp_path):
    storage = str(tmp_path / "results")
    proc, tag, _, _ = spawn_script(SWEEP.replace("sys.argv[1], sys.argv[2]", f"{storage!r}, 'fresh'"))
    exp = os.path.join(storage, "sweep")
    # two trials done and another one mid-way (conditions, not a delay: the machine may be slow)
    assert _wait_for(lambda: _terminated(exp) >= 2 and _running_with_checkpoint(exp), 90), \
        proc.communicate(timeout=5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    w = run_script(SWEEP, args=(storage, "restore"), timeout=120)
    assert w.returncode == 0, w.stderr[-3000:]
    assert "RESULT 6 0 6" in w.stdout
    starts = _check_trials(exp)
    # finished trials never ran again; interrupted ones resumed (a second start), never-started ran once
    assert sum(1 for n in starts.values() if n == 1) >= 4, starts
    assert any(n == 2 for n in starts.values()), starts


@pytest.mark.timeout(180)
def test_walltime_signal_saves_and_restore_finishes(spawn_script, run_script, tmp_path):
    storage = str(tmp_path / "results")
    proc, tag, _, _ = spawn_script(SWEEP.replace("sys.argv[1], sys.argv[2]", f"{storage!r}, 'fresh'"))
    exp = os.path.join(storage, "sweep")
    assert _wait_for(lambda: _terminated(exp) >= 1 and _running_with_checkpoint(exp), 90)
    proc.send_signal(signal.SIGUSR1)                 # Slurm's early warning (--signal=USR1@...)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "Walltime signal: experiment state saved" in out
    with open(os.path.join(exp, "experiment_journal.jsonl")) as f:
        journal = f.read()
    assert '"ev":"interrupted"' in journal and '"status":"INTERRUPTED"' in journal
    w = run_script(SWEEP, args=(storage, "restore"), timeout=120)
    assert w.returncode == 0, w.stderr[-3000:]
    assert "RESULT 6 0 6" in w.stdout
    _check_trials(exp)


LOGGERS = r'''
import os, sys
os.environ["WANDB_MODE"] = "offline"
os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"   # MLflow 3: the local file store is opt-in
os.environ["WANDB_SILENT"] = "true"
import mpiray as ray
from mpiray import tune
from mpiray.air.integrations.mlflow import MLflowLoggerCallback
from mpiray.air.integrations.wandb import WandbLoggerCallback

def objective(config):
    for i in range(3):
        tune.report({"loss": config["x"] * (3 - i)})

ray.init(num_cpus=2)
root = sys.argv[1]
grid = tune.Tuner(objective, param_space={"x": tune.grid_search([1, 2])},
                  run_config=tune.RunConfig(storage_path=root, name="log", verbose=0, callbacks=[
                      MLflowLoggerCallback(tracking_uri="file://" + os.path.join(root, "mlruns"),
                                           experiment_name="tune-test"),
                      WandbLoggerCallback(project="tune-test", dir=root)])).fit()
import mlflow
from mlflow.tracking import MlflowClient
c = MlflowClient(tracking_uri="file://" + os.path.join(root, "mlruns"))
exp = c.get_experiment_by_name("tune-test")
runs = c.search_runs([exp.experiment_id])
print("MLFLOW", len(runs), sorted(r.data.params["x"] for r in runs),
      sorted(len(c.get_metric_history(r.info.run_id, "loss")) for r in runs),
      sorted(r.info.status for r in runs))
'''


@pytest.mark.timeout(180)
def test_mlflow_file_store_and_wandb_offline(run_script, tmp_path):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    root = str(tmp_path / "out")
    os.makedirs(root)
    w = run_script(LOGGERS, args=(root,), timeout=150)
    assert w.returncode == 0, w.stderr[-3000:]
    assert "MLFLOW 2 ['1', '2'] [3, 3] ['FINISHED', 'FINISHED']" in w.stdout, w.stdout
    offline = [d for d in os.listdir(os.path.join(root, "wandb")) if d.startswith("offline-run")]
    assert len(offline) == 2, os.listdir(os.path.join(root, "wandb"))
