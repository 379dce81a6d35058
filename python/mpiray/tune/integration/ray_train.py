"""Running mpiray.train inside a Tune trial (Ray's ``ray.tune.integration.ray_train``).

    def train_driver(config):
        trainer = TorchTrainer(loop, train_loop_config=config,
                               scaling_config=ScalingConfig(num_workers=2),
                               run_config=RunConfig(name=tune.get_context().get_trial_id(),
                                                    storage_path=...,
                                                    callbacks=[TuneReportCallback()]))
        trainer.fit()

    tune.Tuner(train_driver, param_space={...}).fit()

The callback runs in the trial (``fit()`` runs there) and reports rank 0's metrics of every
training report to Tune, with ``checkpoint_path`` set to the training run's checkpoint when
the report had one (the checkpoint is not copied again, as in Ray).
"""

from ...train._callback import UserCallback
from ...train._session import current_session

CHECKPOINT_PATH_KEY = "checkpoint_path"


class TuneReportCallback(UserCallback):
    """Propagate metrics and checkpoint paths from the training workers to Tune."""

    def __init__(self):
        s = current_session()
        if s is None or not hasattr(s, "trial_id"):
            raise RuntimeError("TuneReportCallback must be used in a Tune session.")
        self._session = s

    def after_report(self, run_context, metrics, checkpoint):
        m = dict(metrics[0])
        if checkpoint is not None:
            m[CHECKPOINT_PATH_KEY] = checkpoint.path
        self._session.report(m)
