"""A Lightning Trainer inside a TorchTrainer (2 workers): RayDDPStrategy,
RayLightningEnvironment, prepare_trainer, RayTrainReportCallback.

    python lightning_ddp.py <storage> <default|mpiray>

Prints ``RESULT {json}``."""

import json
import sys

import mpiray
from mpiray import train
from mpiray.train import RunConfig, ScalingConfig, UserCallback
from mpiray.train.torch import TorchConfig, TorchTrainer


def loop(config):
    import lightning.pytorch as pl
    import torch
    import torch.nn as nn
    from mpiray.train.lightning import (RayDDPStrategy, RayLightningEnvironment, RayTrainReportCallback,
                                        prepare_trainer)
    from mpiray.train.torch import _mpiray_hook

    class Reg(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(4, 1)

        def training_step(self, batch, i):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            self.log("train_loss", loss, on_epoch=True, on_step=False, sync_dist=True)
            return loss

        def on_train_epoch_end(self):
            self.log("param_sum", float(sum(p.detach().sum() for p in self.parameters())))
            self.log("hook_buckets", float(_mpiray_hook.allreduced_buckets()))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-1.0], [2.0], [0.5]])
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32, shuffle=True)
    trainer = pl.Trainer(max_epochs=3, devices="auto", accelerator="cpu", strategy=RayDDPStrategy(),
                         plugins=[RayLightningEnvironment()], callbacks=[RayTrainReportCallback()],
                         enable_checkpointing=False, enable_progress_bar=False, logger=False,
                         enable_model_summary=False)
    trainer = prepare_trainer(trainer)
    trainer.fit(Reg(), train_dataloaders=dl)


class Keep(UserCallback):
    def __init__(self):
        self.reports = []

    def after_report(self, run_context, metrics, checkpoint):
        self.reports.append({"metrics": metrics, "checkpoint": checkpoint.path if checkpoint else None})


mpiray.init()
keep = Keep()
backend = None if sys.argv[2] == "default" else sys.argv[2]
result = TorchTrainer(loop, torch_config=TorchConfig(backend=backend), scaling_config=ScalingConfig(num_workers=2),
                      run_config=RunConfig(storage_path=sys.argv[1], name="lightning", callbacks=[keep])).fit()
print("RESULT " + json.dumps({"reports": keep.reports, "checkpoint": result.checkpoint.path}), flush=True)
