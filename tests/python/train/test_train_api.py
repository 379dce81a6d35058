"""mpiray.train's trainer, reports, checkpoints, storage and errors on an embedded cluster of
3 local workers (framework-free loops: DataParallelTrainer)."""

import csv
import json
import os
import tempfile
import time

import pytest

import mpiray as ray
from mpiray import train
from mpiray.train import (Checkpoint, CheckpointConfig, DataConfig, DataParallelTrainer, FailureConfig, Result,
                          RunConfig, ScalingConfig)

pytestmark = pytest.mark.usefixtures("train_cluster")


def rc(tmp_path, name="run", **kw):
    return RunConfig(storage_path=str(tmp_path), name=name, **kw)


def _ckpt(payload):
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "state.json"), "w") as f:
        json.dump(payload, f)
    return Checkpoint.from_directory(d)


def loop_reports(config):
    ctx = train.get_context()
    for i in range(config["n"]):
        ck = _ckpt({"i": i, "rank": ctx.get_world_rank()}) if ctx.get_world_rank() == 0 else None
        train.report({"i": i, "score": config["scores"][i], "rank": ctx.get_world_rank(),
                      "ws": ctx.get_world_size(), "local": ctx.get_local_rank(), "pid": os.getpid(),
                      "node_rank": ctx.get_node_rank(), "exp": ctx.get_experiment_name()}, checkpoint=ck)
    return {"rank0": "done"}


def test_reports_result_fields_and_files(tmp_path):
    scores = [0.5, 0.9, 0.1, 0.7, 0.3]
    trainer = DataParallelTrainer(loop_reports, train_loop_config={"n": 5, "scores": scores},
                                  scaling_config=ScalingConfig(num_workers=3),
                                  run_config=rc(tmp_path, checkpoint_config=CheckpointConfig(
                                      num_to_keep=2, checkpoint_score_attribute="score")))
    result = trainer.fit()
    assert isinstance(result, Result)
    assert result.error is None and result.return_value == {"rank0": "done"}
    assert result.path == str(tmp_path / "run")
    m = result.metrics
    assert m["i"] == 4 and m["rank"] == 0 and m["ws"] == 3 and m["exp"] == "run"
    # the latest checkpoint is kept even though its score is not among the 2 best
    assert result.checkpoint.path == str(tmp_path / "run" / "checkpoint_000004")
    assert json.load(open(os.path.join(result.checkpoint.path, "state.json"))) == {"i": 4, "rank": 0}
    best = [(os.path.basename(c.path), mm["score"]) for c, mm in result.best_checkpoints]
    assert best == [("checkpoint_000004", 0.3), ("checkpoint_000003", 0.7), ("checkpoint_000001", 0.9)]
    assert result.get_best_checkpoint("score", "max").path.endswith("checkpoint_000001")
    on_disk = sorted(n for n in os.listdir(result.path) if n.startswith("checkpoint_0"))
    assert on_disk == ["checkpoint_000001", "checkpoint_000003", "checkpoint_000004"]
    # every worker its own process
    pids = {json.loads(l)["pid"] for l in open(os.path.join(result.path, "result.json"))}
    assert len(pids) == 1  # result.json holds rank 0's reports
    # progress.csv / result.json: one row per report, Ray's auto-filled columns
    with open(os.path.join(result.path, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["training_iteration"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [float(r["score"]) for r in rows] == scores
    for col in ("timestamp", "time_this_iter_s", "time_total_s", "date", "checkpoint_dir_name", "hostname"):
        assert col in rows[0]
    lines = [json.loads(l) for l in open(os.path.join(result.path, "result.json"))]
    assert [l["i"] for l in lines] == [0, 1, 2, 3, 4]
    df = result.metrics_dataframe
    assert list(df["score"]) == scores
    # reading it back
    again = Result.from_path(result.path)
    assert again.metrics["i"] == 4 and again.checkpoint.path == result.checkpoint.path
    assert [os.path.basename(c.path) for c, _ in again.best_checkpoints] == [b[0] for b in best]


def loop_ranks(config):
    ctx = train.get_context()
    train.report({"pid": os.getpid(), "rank": ctx.get_world_rank(), "local": ctx.get_local_rank(),
                  "lws": ctx.get_local_world_size(), "env_rank": os.environ["RANK"],
                  "env_ws": os.environ["WORLD_SIZE"]})


class Collect(train.UserCallback):
    def __init__(self):
        self.reports = []

    def after_report(self, run_context, metrics, checkpoint):
        self.reports.append((metrics, checkpoint))


def test_each_worker_has_its_own_process_and_ranks(tmp_path):
    cb = Collect()
    DataParallelTrainer(loop_ranks, scaling_config=ScalingConfig(num_workers=3),
                        run_config=rc(tmp_path, callbacks=[cb])).fit()
    (metrics, ckpt), = cb.reports
    assert ckpt is None
    assert [m["rank"] for m in metrics] == [0, 1, 2]
    assert len({m["pid"] for m in metrics}) == 3
    assert [m["env_rank"] for m in metrics] == ["0", "1", "2"] and {m["env_ws"] for m in metrics} == {"3"}
    assert sorted(m["local"] for m in metrics) == [0, 1, 2] and {m["lws"] for m in metrics} == {3}


def loop_shards(config):
    shard = train.get_dataset_shard("train")
    rows = [int(r) for b in shard.iter_batches(batch_size=4) for r in b]
    whole = list(train.get_dataset_shard("val").iter_rows())
    train.report({"rows": rows, "val": len(whole)})


def test_dataset_shards_are_disjoint(tmp_path):
    import numpy as np
    cb = Collect()
    DataParallelTrainer(loop_shards, scaling_config=ScalingConfig(num_workers=3),
                        datasets={"train": np.arange(20), "val": list(range(7))},
                        dataset_config=DataConfig(datasets_to_split=["train"]),
                        run_config=rc(tmp_path, callbacks=[cb])).fit()
    (metrics, _), = cb.reports
    parts = [m["rows"] for m in metrics]
    assert sorted(sum(parts, [])) == list(range(20))
    assert all(len(p) in (6, 7) for p in parts)
    assert all(set(a).isdisjoint(b) for i, a in enumerate(parts) for b in parts[i + 1:])
    assert [m["val"] for m in metrics] == [7, 7, 7]


def loop_resume(config):
    ck = train.get_checkpoint()
    start = json.load(open(os.path.join(ck.path, "state.json")))["i"] + 1 if ck else 0
    for i in range(start, config["n"]):
        if i == config.get("stop_at"):
            raise RuntimeError("interrupted")
        ck = _ckpt({"i": i}) if train.get_context().get_world_rank() == 0 else None
        train.report({"i": i, "start": start}, checkpoint=ck)


def test_fit_again_resumes_and_restore(tmp_path):
    cfg = {"n": 6, "stop_at": 3}
    with pytest.raises(train.TrainingFailedError) as ei:
        DataParallelTrainer(loop_resume, train_loop_config=cfg, scaling_config=ScalingConfig(num_workers=2),
                            run_config=rc(tmp_path, name="r")).fit()
    assert isinstance(ei.value, train.WorkerGroupError)
    assert "interrupted" in str(ei.value) and "Traceback" in str(ei.value)
    assert os.path.exists(tmp_path / "r" / "error.txt")
    # Ray 2.60: fit() with the same name and storage resumes
    r = DataParallelTrainer(loop_resume, train_loop_config={"n": 5}, scaling_config=ScalingConfig(num_workers=2),
                            run_config=rc(tmp_path, name="r")).fit()
    assert r.metrics == {"i": 4, "start": 3}
    assert not os.path.exists(tmp_path / "r" / "error.txt")
    # TorchTrainer.restore-style: the saved arguments, resumed from the latest checkpoint
    assert DataParallelTrainer.can_restore(str(tmp_path / "r"))
    with pytest.warns(DeprecationWarning):
        t = DataParallelTrainer.restore(str(tmp_path / "r"), train_loop_config={"n": 7})
    r2 = t.fit()
    assert r2.metrics == {"i": 6, "start": 5}
    df = r2.metrics_dataframe
    assert list(df["i"]) == [0, 1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="does not exist"):
        DataParallelTrainer.restore(str(tmp_path / "missing"))


def loop_fail_once(config):
    ck = train.get_checkpoint()
    start = json.load(open(os.path.join(ck.path, "state.json")))["i"] + 1 if ck else 0
    for i in range(start, 4):
        if i == 2 and not os.path.exists(config["mark"]) and train.get_context().get_world_rank() == 1:
            open(config["mark"], "w").close()
            raise ValueError("transient")
        ck = _ckpt({"i": i}) if train.get_context().get_world_rank() == 0 else None
        train.report({"i": i, "start": start}, checkpoint=ck)


def test_failure_config_restarts_from_checkpoint(tmp_path):
    r = DataParallelTrainer(loop_fail_once, train_loop_config={"mark": str(tmp_path / "mark")},
                            scaling_config=ScalingConfig(num_workers=2),
                            run_config=rc(tmp_path, failure_config=FailureConfig(max_failures=1))).fit()
    assert r.metrics == {"i": 3, "start": 2}
    assert list(r.metrics_dataframe["i"]) == [0, 1, 2, 3]


def loop_raise_rank1(config):
    for i in range(100):
        if train.get_context().get_world_rank() == 1 and i == 2:
            raise KeyError("bad key on rank 1")
        train.report({"i": i})
        time.sleep(0.02)


def test_error_on_one_rank_stops_everything(tmp_path):
    before = ray.available_resources().get("CPU")
    with pytest.raises(train.WorkerGroupError) as ei:
        DataParallelTrainer(loop_raise_rank1, scaling_config=ScalingConfig(num_workers=3),
                            run_config=rc(tmp_path)).fit()
    e = ei.value
    assert list(e.worker_failures) == [1] and isinstance(e.worker_failures[1], KeyError)
    text = str(e)
    assert "rank 1" in text and "bad key on rank 1" in text and "loop_raise_rank1" in text
    # the workers and their placement group are gone: all CPUs free again
    assert ray.available_resources().get("CPU") == before
    from mpiray.util.state import list_actors
    assert not [a for a in list_actors(limit=1000) if a.get("state") == "ALIVE" and "TrainWorker" in str(a)]


def test_infeasible_scaling_config_names_resources(tmp_path):
    t0 = time.time()
    with pytest.raises(train.ControllerError) as ei:
        DataParallelTrainer(loop_ranks, scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 5}),
                            run_config=rc(tmp_path)).fit()
    assert time.time() - t0 < 20
    msg = str(ei.value)
    assert "can never be placed" in msg and "CPU: 10" in msg and "CPU: 3" in msg
    with pytest.raises(train.ControllerError, match="licence"):
        DataParallelTrainer(loop_ranks, scaling_config=ScalingConfig(num_workers=1,
                                                                      resources_per_worker={"licence": 1}),
                            run_config=rc(tmp_path, name="b")).fit()


def loop_bad_checkpoint(config):
    train.report({"x": 1}, checkpoint=Checkpoint("/nonexistent/mpiray-ckpt"))


def test_bad_input():
    with pytest.raises(RuntimeError, match="report"):
        train.report({"x": 1})
    with pytest.raises(RuntimeError):
        train.get_context()
    with pytest.raises(ValueError, match="not a directory"):
        Checkpoint.from_directory("/nonexistent/dir")
    with pytest.raises(ValueError):
        ScalingConfig(num_workers=(3, 2))
    with pytest.raises(ValueError):
        ScalingConfig(num_workers="2")
    with pytest.raises(ValueError, match="use_gpu"):
        ScalingConfig(num_workers=1, resources_per_worker={"GPU": 1})
    with pytest.raises(ValueError, match="num_to_keep"):
        CheckpointConfig(num_to_keep=0)
    with pytest.raises(DeprecationWarning):
        RunConfig(verbose=1)
    with pytest.raises(ValueError, match="0 or 1 arguments"):
        DataParallelTrainer(lambda a, b: None)
    with pytest.raises(ValueError, match="RunConfig"):
        from mpiray import tune
        DataParallelTrainer(loop_ranks, run_config=tune.RunConfig())


def test_missing_checkpoint_dir_in_report(tmp_path):
    with pytest.raises(train.WorkerGroupError, match="does not exist"):
        DataParallelTrainer(loop_bad_checkpoint, scaling_config=ScalingConfig(num_workers=1),
                            run_config=rc(tmp_path)).fit()


def test_local_mode(tmp_path):
    r = DataParallelTrainer(loop_reports, train_loop_config={"n": 2, "scores": [1, 2]},
                            scaling_config=ScalingConfig(num_workers=0), run_config=rc(tmp_path)).fit()
    assert r.metrics["pid"] == os.getpid() and r.metrics["ws"] == 1
    assert r.checkpoint.path.endswith("checkpoint_000001")


def test_default_storage_and_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MPIRAY_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    c = RunConfig()
    assert c.storage_path == str(tmp_path) and c.name.startswith("ray_train_run-")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert RunConfig().name == "ray_train_run-slurm4242"
    monkeypatch.delenv("MPIRAY_RESULTS_DIR")
    assert RunConfig().storage_path == os.path.expanduser("~/mpiray_results")


@pytest.mark.timeout(180)
def test_walltime_signal_checkpoints_and_the_next_run_resumes(spawn_script, run_script, tmp_path):
    """The early-warning signal (what Slurm's --signal sends) outside Slurm: the loops see
    get_preemption_info(), save a checkpoint, the job exits 0; the same script run again
    resumes from that checkpoint (tests/slurm: the same with sbatch --requeue)."""
    import signal
    from pathlib import Path
    script = (Path(__file__).parent / "scripts" / "walltime.py").read_text()
    script = script.replace("sys.argv[1]", repr(str(tmp_path))).replace(
        "sys.argv[2] if len(sys.argv) > 2 else None", "'wt'")
    proc, tag, _, _ = spawn_script(script, env={"MPIRAY_NUM_WORKERS": "2", "MPIRAY_TRAIN_WALLTIME_GRACE_S": "20"})
    lines = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "EPOCH 6" in line:
            proc.send_signal(signal.SIGUSR1)
            break
    out, err = proc.communicate(timeout=90)
    text = "".join(lines) + out
    assert proc.returncode == 0, text + err
    saved = [l for l in text.splitlines() if "SAVED ON WARNING AT EPOCH" in l]
    assert saved and "TRAINING DONE" not in text, text + err
    epoch = int(saved[0].split("AT EPOCH ")[1].split()[0])
    world = run_script(script, env={"MPIRAY_NUM_WORKERS": "2"}, timeout=120)
    assert world.returncode == 0, world
    assert f"RESUMED FROM EPOCH {epoch + 1} (checkpoint_" in world.stdout, world
    assert f"TRAINING DONE run=wt epoch=29 start={epoch + 1}" in world.stdout, world


def test_mlflow_logger_callback_sees_every_report(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient
    from mpiray.air.integrations.mlflow import MLflowLoggerCallback
    uri = "file://" + str(tmp_path / "mlruns")
    DataParallelTrainer(loop_reports, train_loop_config={"n": 3, "scores": [1, 2, 3]},
                        scaling_config=ScalingConfig(num_workers=2),
                        run_config=rc(tmp_path, name="ml", callbacks=[
                            MLflowLoggerCallback(tracking_uri=uri, experiment_name="train-test")])).fit()
    c = MlflowClient(tracking_uri=uri)
    (run,) = c.search_runs([c.get_experiment_by_name("train-test").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "ml"
    assert [m.value for m in c.get_metric_history(run.info.run_id, "score")] == [1, 2, 3]
    assert run.data.params["n"] == "3"


def test_torch_trainer_restore(tmp_path):
    from mpiray.train.torch import TorchConfig, TorchTrainer
    with pytest.raises(train.WorkerGroupError):
        TorchTrainer(loop_resume, train_loop_config={"n": 4, "stop_at": 2}, torch_config=TorchConfig(timeout_s=60),
                     scaling_config=ScalingConfig(num_workers=2), run_config=rc(tmp_path, name="t")).fit()
    with pytest.warns(DeprecationWarning):
        t = TorchTrainer.restore(str(tmp_path / "t"), train_loop_config={"n": 4})
    assert isinstance(t, TorchTrainer) and t.backend_config.timeout_s == 60
    r = t.fit()
    assert r.metrics == {"i": 3, "start": 2}


STUCK = r'''
import os, time
import mpiray
from mpiray import train
from mpiray.train import DataParallelTrainer, RunConfig, ScalingConfig

def loop(config):
    if train.get_context().get_world_rank() == 0:
        time.sleep(0.5)
        raise RuntimeError("rank 0 gives up")
    print("STUCK PID", os.getpid(), flush=True)
    while True:              # never reports, never returns: only ending its process stops it
        time.sleep(0.05)

mpiray.init()
t0 = time.time()
try:
    DataParallelTrainer(loop, scaling_config=ScalingConfig(num_workers=2),
                        run_config=RunConfig(storage_path=os.getcwd(), name="stuck")).fit()
except train.WorkerGroupError as e:
    print("FAILED IN", round(time.time() - t0, 1), "s:", str(e).splitlines()[1], flush=True)
'''


@pytest.mark.timeout(120)
def test_a_loop_that_never_stops_does_not_hang_the_job(run_script):
    world = run_script(STUCK, env={"MPIRAY_NUM_WORKERS": "2", "MPIRAY_TRAIN_STOP_GRACE_S": "2"}, timeout=100)
    assert world.returncode == 0, world
    line = [l for l in world.stdout.splitlines() if l.startswith("FAILED IN")][0]
    assert "rank 0" in line and float(line.split()[2]) < 30, line
    assert "does not stop; ending its worker process" in world.stderr or "did not stop" in world.stderr, world
