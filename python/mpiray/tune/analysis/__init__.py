"""``ExperimentAnalysis`` (Ray's): what ``tune.run`` returns, or the analysis of an
experiment directory."""

import os

from ..._extras import require
from ..result_grid import ResultGrid


class ExperimentAnalysis:
    def __init__(self, experiment_checkpoint_path=None, *, trials=None, default_metric=None, default_mode=None,
                 storage_filesystem=None):
        if trials is None:
            from ..tuner import Tuner, _restore_trials, _TUNER_PKL
            import pickle
            path = os.path.abspath(os.fspath(experiment_checkpoint_path))
            if not Tuner.can_restore(path):
                raise ValueError(f"No experiment found in {path!r} (no experiment_journal.jsonl)")
            with open(os.path.join(path, _TUNER_PKL), "rb") as f:
                state = pickle.load(f)
            restored = {"state": state, "resume_unfinished": False, "resume_errored": False,
                        "restart_errored": False, "path": path}

            class _NoSched:
                def on_trial_add(self, *a):
                    pass
            trials = _restore_trials(path, restored, None, _NoSched())
            experiment_checkpoint_path = path
        self.trials = list(trials)
        self._experiment_path = experiment_checkpoint_path
        self.default_metric = default_metric
        self.default_mode = default_mode
        self._grid = ResultGrid(self.trials, experiment_checkpoint_path, default_metric, default_mode)

    @property
    def experiment_path(self):
        return self._experiment_path

    def _mm(self, metric, mode):
        metric = metric or self.default_metric
        mode = mode or self.default_mode
        if not metric or not mode:
            raise ValueError("To fetch the best trial, pass a `metric` and `mode` (or set them in tune.run).")
        return metric, mode

    def get_best_trial(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        metric, mode = self._mm(metric, mode)
        best, best_v = None, None
        for t in self.trials:
            v = ResultGrid._score(t, metric, mode, scope)
            if v is None or (filter_nan_and_inf and (v != v or abs(v) == float("inf"))):
                continue
            if best_v is None or (v > best_v if mode == "max" else v < best_v):
                best, best_v = t, v
        return best

    def get_best_config(self, metric=None, mode=None, scope="last"):
        t = self.get_best_trial(metric, mode, scope)
        return t.config if t else None

    def get_best_checkpoint(self, trial, metric=None, mode=None):
        metric, mode = self._mm(metric, mode)
        cands = [(c, m) for c, m in trial.checkpoints if metric in m]
        if not cands:
            return trial.checkpoint
        return (max if mode == "max" else min)(cands, key=lambda cm: cm[1][metric])[0]

    def get_last_checkpoint(self, trial=None, metric="training_iteration", mode="max"):
        trial = trial or self.get_best_trial(metric, mode)
        return trial.checkpoint if trial else None

    def get_all_configs(self, prefix=False):
        return {t.local_path: t.config for t in self.trials}

    @property
    def best_trial(self):
        return self.get_best_trial()

    @property
    def best_config(self):
        return self.get_best_config()

    @property
    def best_checkpoint(self):
        t = self.best_trial
        return self.get_best_checkpoint(t) if t else None

    @property
    def best_logdir(self):
        t = self.best_trial
        return t.local_path if t else None

    @property
    def best_result(self):
        t = self.best_trial
        return t.last_result if t else None

    @property
    def best_result_df(self):
        pd = require("tune", "pandas")
        t = self.best_trial
        return pd.DataFrame([{k: v for k, v in t.last_result.items() if k != "config"}])

    @property
    def results(self):
        return {t.trial_id: t.last_result for t in self.trials}

    @property
    def results_df(self):
        pd = require("tune", "pandas")
        return pd.DataFrame([{k: v for k, v in t.last_result.items() if k != "config"} for t in self.trials])

    def dataframe(self, metric=None, mode=None):
        return self._grid.get_dataframe(metric, mode)

    @property
    def trial_dataframes(self):
        pd = require("tune", "pandas")
        out = {}
        for t in self.trials:
            p = os.path.join(t.local_path, "progress.csv")
            if os.path.exists(p) and os.path.getsize(p):
                out[t.local_path] = pd.read_csv(p)
        return out

    def stats(self):
        return {}
