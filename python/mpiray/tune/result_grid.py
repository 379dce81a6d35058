"""``ResultGrid``: the results of a ``Tuner.fit()`` (Ray's)."""

import os

from .._extras import require
from ..train._result import Result


class ResultGrid:
    def __init__(self, trials, experiment_path, metric=None, mode=None):
        from .analysis import ExperimentAnalysis
        self._trials = list(trials)
        self._experiment_path = experiment_path
        self._analysis = ExperimentAnalysis(experiment_path, trials=self._trials, default_metric=metric,
                                            default_mode=mode)
        self._results = [self._trial_to_result(t) for t in self._trials]

    @property
    def experiment_path(self):
        return self._experiment_path

    @property
    def filesystem(self):
        return None

    def get_best_result(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        """The best trial's Result by ``metric``/``mode`` (default: TuneConfig's) over its last
        result (``scope="last"``), its best one (``"all"``), or the mean of all, the last 5 or
        the last 10 (``"avg"``, ``"last-5-avg"``, ``"last-10-avg"``)."""
        if len(self._trials) == 1:
            return self._results[0]
        if not metric and not self._analysis.default_metric:
            raise ValueError("No metric is provided. Either pass in a `metric` arg to `get_best_result` or specify "
                             "a metric in the `TuneConfig` of your `Tuner`.")
        if not mode and not self._analysis.default_mode:
            raise ValueError("No mode is provided. Either pass in a `mode` arg to `get_best_result` or specify a "
                             "mode in the `TuneConfig` of your `Tuner`.")
        best = self._analysis.get_best_trial(metric, mode, scope, filter_nan_and_inf)
        if best is None:
            msg = (f"No best trial found for the given metric: {metric or self._analysis.default_metric}. This "
                   "means that no trial has reported this metric")
            msg += (", or all values reported for this metric are NaN. To not ignore NaN values, you can set the "
                    "`filter_nan_and_inf` arg to False.") if filter_nan_and_inf else "."
            raise RuntimeError(msg)
        return self._results[self._trials.index(best)]

    def get_dataframe(self, filter_metric=None, filter_mode=None):
        """One row per trial: its last result, or with ``filter_metric``/``filter_mode`` the
        result where that metric was lowest/highest; ``config/...`` columns (Ray's)."""
        return self._analysis.dataframe(metric=filter_metric, mode=filter_mode)

    def __len__(self):
        return len(self._results)

    def __getitem__(self, i):
        return self._results[i]

    def __iter__(self):
        return iter(self._results)

    @property
    def errors(self):
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self):
        return sum(1 for t in self._trials if t.status == "ERROR")

    @property
    def num_terminated(self):
        return sum(1 for t in self._trials if t.status == "TERMINATED")

    def _trial_to_result(self, trial):
        metrics = dict(trial.last_result or {})
        if metrics:
            metrics["config"] = trial.config
        return Result(metrics=metrics, checkpoint=trial.checkpoint, error=trial.error, path=trial.local_path,
                      best_checkpoints=list(trial.checkpoints), metrics_dataframe=_LazyFrame(trial.local_path))

    def __repr__(self):
        return f"ResultGrid<[\n  " + ",\n  ".join(repr(r) for r in self._results) + "\n]>"


class _LazyFrame:
    """progress.csv as a pandas DataFrame, read when first used."""

    def __init__(self, path):
        self._path = path
        self._df = None

    def _load(self):
        if self._df is None:
            pd = require("tune", "pandas")
            p = os.path.join(self._path, "progress.csv")
            self._df = pd.read_csv(p) if os.path.exists(p) and os.path.getsize(p) else pd.DataFrame()
        return self._df

    def __getattr__(self, item):
        return getattr(self._load(), item)

    def __getitem__(self, item):
        return self._load()[item]

    def __len__(self):
        return len(self._load())

    def __repr__(self):
        return repr(self._load())


def _flat(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out
