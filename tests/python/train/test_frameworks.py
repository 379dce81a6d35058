"""TensorflowTrainer (TF_CONFIG, MultiWorkerMirroredStrategy, Keras callback) and Lightning
(RayDDPStrategy, RayLightningEnvironment, prepare_trainer, RayTrainReportCallback) on 2 real
workers, run as scripts (``python script.py``)."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"


def _need(*modules):
    # find_spec, not importorskip: importing TensorFlow and Lightning into the pytest process
    # costs seconds and, both with torch in one process, aborts
    for m in modules:
        if importlib.util.find_spec(m) is None:
            pytest.skip(f"{m} is not installed (scripts/install-deps installs it)")


def _result(world):
    for line in world.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"no RESULT line:\n{world}")


@pytest.mark.timeout(300)
def test_tensorflow_multi_worker_mirrored(run_script, tmp_path):
    _need("tensorflow", "tf_keras")
    world = run_script((SCRIPTS / "tf_mwms.py").read_text(), args=(tmp_path,), env={"MPIRAY_NUM_WORKERS": "2"},
                       timeout=280)
    assert world.returncode == 0, world
    res = _result(world)
    reps = res["reports"]
    assert len(reps) == 4
    for r in reps:
        ranks = r["metrics"]
        # both workers were one MultiWorkerMirroredStrategy cluster of 2 (TF_CONFIG)...
        assert sorted(m["task"] for m in ranks) == [0, 1] and {m["workers"] for m in ranks} == {2}
        # ...that kept their weights equal
        assert len({round(m["w_sum"], 5) for m in ranks}) == 1
        assert os.path.exists(os.path.join(r["checkpoint"], "model.keras"))
    losses = [r["metrics"][0]["loss"] for r in reps]
    assert losses[-1] < 0.1 * losses[0], losses
    assert res["checkpoint"] == reps[-1]["checkpoint"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["mpiray"])   # gloo DDP itself: test_torch.py
def test_lightning_ddp(run_script, tmp_path, backend):
    _need("lightning")
    world = run_script((SCRIPTS / "lightning_ddp.py").read_text(), args=(tmp_path, backend),
                       env={"MPIRAY_NUM_WORKERS": "2"}, timeout=280)
    assert world.returncode == 0, world
    res = _result(world)
    reps = res["reports"]
    assert [r["metrics"][0]["epoch"] for r in reps] == [0, 1, 2]
    losses = [r["metrics"][0]["train_loss"] for r in reps]
    assert losses[-1] < 0.2 * losses[0], losses
    for r in reps[1:]:
        ranks = r["metrics"]
        assert len({round(m["param_sum"], 5) for m in ranks}) == 1      # DDP kept them equal
        hook = [m["hook_buckets"] for m in ranks]
        assert all(h > 0 for h in hook) if backend == "mpiray" else hook == [0, 0], hook
    ckpt = os.path.join(res["checkpoint"], "checkpoint.ckpt")
    assert os.path.exists(ckpt)
    import torch
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 2 and "state_dict" in state
