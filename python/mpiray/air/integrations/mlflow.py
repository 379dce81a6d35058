"""``MLflowLoggerCallback`` (Ray's ``ray.air.integrations.mlflow``): one MLflow run per
trial with its config as parameters and every numeric result as metrics."""

import numbers

from ...tune.logger import LoggerCallback, _flatten


class MLflowLoggerCallback(LoggerCallback):
    def __init__(self, tracking_uri=None, *, registry_uri=None, experiment_name=None, tags=None,
                 tracking_token=None, save_artifact=False, log_params_on_trial_end=False):
        import mlflow  # noqa: F401  (a clear ImportError when missing)
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.tags = dict(tags or {})
        self.save_artifact = save_artifact
        self.log_params_on_trial_end = log_params_on_trial_end
        self._runs = {}
        self._client = None
        self._experiment_id = None

    def setup(self, *args, **kwargs):
        import os
        from mlflow.tracking import MlflowClient
        if self.tracking_token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.tracking_token
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default"
        exp = self._client.get_experiment_by_name(name)
        self._experiment_id = exp.experiment_id if exp else self._client.create_experiment(name)

    tracking_token = None

    def log_trial_start(self, trial):
        if trial.trial_id in self._runs:
            return
        tags = dict(self.tags, trial_name=str(trial))
        run = self._client.create_run(experiment_id=self._experiment_id, tags=tags, run_name=str(trial))
        self._runs[trial.trial_id] = run.info.run_id
        if not self.log_params_on_trial_end:
            self._log_params(trial)

    def _log_params(self, trial):
        from mlflow.entities import Param
        params = [Param(k, str(v)[:500]) for k, v in _flatten(trial.config or {}).items()]
        if params:
            self._client.log_batch(self._runs[trial.trial_id], params=params)

    def log_trial_result(self, iteration, trial, result):
        from mlflow.entities import Metric
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            self.log_trial_start(trial)
            run_id = self._runs[trial.trial_id]
        step = int(result.get("training_iteration", iteration))
        ts = int(result.get("timestamp", 0) * 1000)
        metrics = [Metric(k, float(v), ts, step) for k, v in _flatten(
            {k: v for k, v in result.items() if k != "config"}).items()
            if isinstance(v, numbers.Number) and not isinstance(v, bool)]
        self._client.log_batch(run_id, metrics=metrics)

    def log_trial_end(self, trial, failed=False):
        run_id = self._runs.pop(trial.trial_id, None)
        if run_id is None:
            return
        if self.log_params_on_trial_end:
            self._runs[trial.trial_id] = run_id
            self._log_params(trial)
            self._runs.pop(trial.trial_id)
        if self.save_artifact and trial.local_path:
            self._client.log_artifacts(run_id, trial.local_path)
        self._client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")
