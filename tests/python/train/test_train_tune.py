"""A training run inside a Tune trial: Ray 2.60's way (a function trainable that builds and
fits a TorchTrainer with TuneReportCallback) and the older ``Tuner(trainer)`` (deprecated)."""

import os
import warnings

import pytest

from mpiray import train, tune
from mpiray.train import DataParallelTrainer, RunConfig, ScalingConfig
from mpiray.tune.integration.ray_train import TuneReportCallback

pytestmark = pytest.mark.usefixtures("train_cluster")


def torch_loop(config):
    import torch
    import torch.nn as nn
    from mpiray.train.torch import prepare_model
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    model = prepare_model(nn.Linear(3, 1))
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"])
    ctx = train.get_context()
    part = slice(ctx.get_world_rank() * 32, (ctx.get_world_rank() + 1) * 32)
    for step in range(4):
        loss = nn.functional.mse_loss(model(x[part]), y[part])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ck = None
        if ctx.get_world_rank() == 0 and step == 3:
            d = os.path.join(config["tmp"], f"ck-{os.getpid()}-{config['lr']}")
            os.makedirs(d, exist_ok=True)
            torch.save(model.state_dict(), os.path.join(d, "m.pt"))
            ck = train.Checkpoint.from_directory(d)
        train.report({"loss": loss.item(), "ws": ctx.get_world_size()}, checkpoint=ck)


def test_torch_trainer_inside_function_trainable(tmp_path):
    from mpiray.train.torch import TorchTrainer

    def driver(config):
        trial = tune.get_context()
        trainer = TorchTrainer(torch_loop, train_loop_config=dict(config, tmp=str(tmp_path)),
                               scaling_config=ScalingConfig(num_workers=2),
                               run_config=RunConfig(storage_path=str(tmp_path / "train"), name=trial.get_trial_id(),
                                                    callbacks=[TuneReportCallback()]))
        trainer.fit()

    grid = tune.Tuner(tune.with_resources(driver, {"CPU": 0}),
                      param_space={"lr": tune.grid_search([0.01, 0.2])},
                      tune_config=tune.TuneConfig(metric="loss", mode="min", max_concurrent_trials=1),
                      run_config=tune.RunConfig(storage_path=str(tmp_path), name="sweep", verbose=0)).fit()
    assert grid.num_errors == 0 and len(grid) == 2
    best = grid.get_best_result()
    assert best.config["lr"] == 0.2
    assert best.metrics["training_iteration"] == 4 and best.metrics["ws"] == 2
    # the training run's checkpoint path reached Tune, without a second copy
    ck = best.metrics["checkpoint_path"]
    assert ck.startswith(str(tmp_path / "train")) and os.path.exists(os.path.join(ck, "m.pt"))
    losses = [r.metrics["loss"] for r in grid]
    assert min(losses) < max(losses)


def plain_loop(config):
    for i in range(3):
        train.report({"score": config["x"] * (i + 1), "ws": train.get_context().get_world_size()})


def test_tuner_of_a_trainer_is_deprecated_but_works(tmp_path):
    trainer = DataParallelTrainer(plain_loop, train_loop_config={"x": 1},
                                  scaling_config=ScalingConfig(num_workers=2))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        tuner = tune.Tuner(trainer, param_space={"train_loop_config": {"x": tune.grid_search([2, 5])}},
                           tune_config=tune.TuneConfig(metric="score", mode="max"),
                           run_config=tune.RunConfig(storage_path=str(tmp_path), name="old", verbose=0))
    assert any(issubclass(x.category, DeprecationWarning) and "Trainer" in str(x.message) for x in w)
    grid = tuner.fit()
    assert grid.num_errors == 0
    best = grid.get_best_result()
    assert best.config["train_loop_config"]["x"] == 5 and best.metrics["score"] == 15 and best.metrics["ws"] == 2


def test_callback_outside_tune():
    with pytest.raises(RuntimeError, match="Tune session"):
        TuneReportCallback()
