"""``ResultGrid``: the results of a ``Tuner.fit()`` (Ray's)."""

import os

from .._extras import require
from ..train._result import Result
from .error import TuneError


class ResultGrid:
    def __init__(self, trials, experiment_path, metric=None, mode=None):
        self._trials = list(trials)
        self._experiment_path = experiment_path
        self._metric = metric
        self._mode = mode
        self._results = [self._trial_to_result(t) for t in self._trials]

    @property
    def experiment_path(self):
        return self._experiment_path

    @property
    def filesystem(self):
        return None

    def get_best_result(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        """The best trial's Result by ``metric``/``mode`` (default: TuneConfig's) over its last
        result (``scope="last"``), all results (``"all"``), or the mean of the last 5/10
        (``"last-5-avg"``, ``"last-10-avg"``)."""
        if len(self._trials) == 1:
            return self._results[0]
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric or not mode:
            raise ValueError("No metric is provided. Either pass in a `metric` arg to `get_best_result` "
                             "or specify a metric in the `TuneConfig` of your `Tuner`.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if scope not in ("last", "avg", "last-5-avg", "last-10-avg", "all"):
            raise ValueError(f"ResultGrid's `scope` must be one of last, avg, last-5-avg, last-10-avg, all; got {scope}")
        best, best_v = None, None
        for t, r in zip(self._trials, self._results):
            v = self._score(t, metric, mode, scope)
            if v is None:
                continue
            if filter_nan_and_inf and (v != v or v in (float("inf"), float("-inf"))):
                continue
            if best_v is None or (v > best_v if mode == "max" else v < best_v):
                best, best_v = r, v
        if best is None:
            raise RuntimeError(f"No best trial found for the given metric: {metric}. This means that no "
                               "trial has reported this metric, or all values reported for this metric are NaN.")
        return best

    @staticmethod
    def _score(trial, metric, mode, scope):
        if scope == "last":
            v = trial.last_result.get(metric)
            return v if isinstance(v, (int, float)) else None
        m = trial.metric_analysis.get(metric)
        if m is None:
            return None
        if scope == "all":
            return m["max"] if mode == "max" else m["min"]
        if scope == "avg":
            return m["avg"]
        from ._trial_dir import read_results
        n = 5 if scope == "last-5-avg" else 10
        vals = [r[metric] for r in read_results(trial.local_path) if isinstance(r.get(metric), (int, float))][-n:]
        return sum(vals) / len(vals) if vals else None

    def get_dataframe(self, filter_metric=None, filter_mode=None):
        """One row per trial: its last result (or the best one by ``filter_metric``), with
        ``config/...`` columns and ``logdir``."""
        pd = require("tune", "pandas")
        rows = []
        for t in self._trials:
            if filter_metric:
                from ._trial_dir import read_results
                rs = [r for r in read_results(t.local_path) if filter_metric in r]
                if not rs:
                    continue
                fn = max if filter_mode == "max" else min
                res = fn(rs, key=lambda r: r[filter_metric])
            else:
                res = t.last_result
            row = {k: v for k, v in res.items() if k != "config"}
            for k, v in _flat(t.config).items():
                row[f"config/{k}"] = v
            row["logdir"] = os.path.basename(t.local_path)
            rows.append(row)
        return pd.DataFrame(rows)

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
