"""``WandbLoggerCallback`` (Ray's ``ray.air.integrations.wandb``): one W&B run per trial
(``WANDB_MODE=offline`` writes them locally for ``wandb sync`` later, the usual set-up on
compute nodes without internet)."""

import numbers
import os

from ...tune.logger import LoggerCallback, _flatten

_EXCLUDE = {"config", "date", "hostname", "node_ip", "pid", "trial_id", "experiment_tag", "done",
            "checkpoint_dir_name"}


class WandbLoggerCallback(LoggerCallback):
    def __init__(self, project=None, group=None, api_key_file=None, api_key=None, excludes=None,
                 log_config=False, upload_checkpoints=False, save_checkpoints=False, upload_timeout=1800,
                 **kwargs):
        import wandb  # noqa: F401
        self.project = project
        self.group = group
        self.api_key_file = api_key_file
        self.api_key = api_key
        self.excludes = set(excludes or [])
        self.log_config = log_config
        self.kwargs = kwargs
        self._runs = {}

    def setup(self, *args, **kwargs):
        if self.api_key_file:
            with open(os.path.expanduser(self.api_key_file)) as f:
                os.environ["WANDB_API_KEY"] = f.read().strip()
        elif self.api_key:
            os.environ["WANDB_API_KEY"] = self.api_key

    def log_trial_start(self, trial):
        import wandb
        if trial.trial_id in self._runs:
            return
        kwargs = dict(self.kwargs)
        kwargs.setdefault("dir", trial.local_path)
        run = wandb.init(project=self.project, group=self.group or trial.experiment_path and os.path.basename(
            trial.experiment_path), name=str(trial), id=trial.trial_id, config=trial.config,
            reinit="create_new", resume="allow", **kwargs)
        self._runs[trial.trial_id] = run

    def log_trial_result(self, iteration, trial, result):
        run = self._runs.get(trial.trial_id)
        if run is None:
            self.log_trial_start(trial)
            run = self._runs[trial.trial_id]
        flat = _flatten({k: v for k, v in result.items() if k not in _EXCLUDE and k not in self.excludes})
        data = {k: v for k, v in flat.items() if isinstance(v, numbers.Number) and not isinstance(v, bool)}
        if self.log_config:
            run.config.update(trial.config, allow_val_change=True)
        run.log(data, step=int(result.get("training_iteration", iteration)))

    def log_trial_end(self, trial, failed=False):
        run = self._runs.pop(trial.trial_id, None)
        if run is not None:
            run.finish(exit_code=1 if failed else 0)
