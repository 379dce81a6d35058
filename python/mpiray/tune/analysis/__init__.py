"""``ExperimentAnalysis`` (Ray's): what ``tune.run`` returns, or the analysis of an
experiment directory (``ExperimentAnalysis(path)``), with Ray's methods and semantics."""

import json
import math
import os

from ..._extras import require

_CONFIG_PREFIX = "config"
_SCOPES = ("all", "last", "avg", "last-5-avg", "last-10-avg")


def _flatten(d, delimiter="/", prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{delimiter}{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, delimiter, key))
        else:
            out[key] = v
    return out


def _nan_or_inf(v):
    return isinstance(v, float) and (math.isnan(v) or math.isinf(v))


def _lookup(metric, metrics):
    """``metrics[metric]``, where ``a/b/c`` also finds nested dicts (as Ray)."""
    if metric in metrics:
        return metrics[metric]
    cur = metrics
    for part in metric.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


class ExperimentAnalysis:
    """The trials of an experiment and their results: best trial/config/checkpoint by a
    metric, the results as pandas DataFrames."""

    def __init__(self, experiment_checkpoint_path=None, *, storage_filesystem=None, trials=None,
                 default_metric=None, default_mode=None):
        if default_mode is not None and default_mode not in ("min", "max"):
            raise ValueError("`default_mode` has to be None or one of [min, max]")
        if trials is None:
            from ..tuner import Tuner, _restore_trials, _TUNER_PKL
            import pickle
            path = os.path.abspath(os.path.expanduser(os.fspath(experiment_checkpoint_path)))
            if not Tuner.can_restore(path):
                raise ValueError(f"No experiment found in {path!r}: it has no experiment_journal.jsonl and "
                                 "tuner.pkl (pass the experiment directory, storage_path/name)")
            with open(os.path.join(path, _TUNER_PKL), "rb") as f:
                state = pickle.load(f)
            restored = {"state": state, "resume_unfinished": False, "resume_errored": False,
                        "restart_errored": False, "path": path}

            class _NoSched:
                def on_trial_add(self, *a):
                    pass
            trials = _restore_trials(path, restored, None, _NoSched(), read_all=True)
            experiment_checkpoint_path = path
        self.trials = list(trials)
        self._experiment_path = experiment_checkpoint_path
        self.default_metric = default_metric
        self.default_mode = default_mode
        self._dfs = None

    @property
    def experiment_path(self):
        return self._experiment_path

    # ------------------------------------------------------------------ best trial etc.
    def _validate_metric(self, metric):
        if not metric and not self.default_metric:
            raise ValueError("No `metric` has been passed and `default_metric` has not been set. Please specify "
                             "the `metric` parameter.")
        return metric or self.default_metric

    def _validate_mode(self, mode):
        if not mode and not self.default_mode:
            raise ValueError("No `mode` has been passed and `default_mode` has not been set. Please specify the "
                             "`mode` parameter.")
        if mode and mode not in ("min", "max"):
            raise ValueError("If set, `mode` has to be one of [min, max]")
        return mode or self.default_mode

    def get_best_trial(self, metric=None, mode=None, scope="last", filter_nan_and_inf=True):
        """The trial with the best ``metric``: over each trial's last result
        (``scope="last"``), the average of all/last 5/last 10 results (``"avg"``,
        ``"last-5-avg"``, ``"last-10-avg"``) or its best result (``"all"``). None if no
        trial reported the metric."""
        if len(self.trials) == 1:
            return self.trials[0]
        metric = self._validate_metric(metric)
        mode = self._validate_mode(mode)
        if scope not in _SCOPES:
            raise ValueError(f"ExperimentAnalysis: attempting to get best trial for metric {metric} for scope "
                             f"{scope} not in {list(_SCOPES)}.")
        best, best_v = None, None
        for t in self.trials:
            m = t.metric_analysis.get(metric)
            if m is None:
                continue
            v = m[mode] if scope == "all" else m.get(scope)
            if v is None or (filter_nan_and_inf and _nan_or_inf(v)):
                continue
            if best_v is None or (v > best_v if mode == "max" else v < best_v):
                best, best_v = t, v
        return best

    def get_best_config(self, metric=None, mode=None, scope="last"):
        t = self.get_best_trial(metric, mode, scope)
        return t.config if t else None

    def _checkpoints_with_metric(self, trial, metric):
        return [(c, _lookup(metric, m)) for c, m in trial.checkpoints]

    def get_best_checkpoint(self, trial, metric=None, mode=None):
        """The kept checkpoint of ``trial`` with the best ``metric`` (default
        ``training_iteration``); NaN values are skipped; None without checkpoints."""
        metric = metric or self.default_metric or "training_iteration"
        mode = self._validate_mode(mode)
        cands = [(c, v) for c, v in self._checkpoints_with_metric(trial, metric)
                 if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))]
        if not cands:
            return None
        sign = -1 if mode == "min" else 1
        return max(cands, key=lambda cv: sign * cv[1])[0]

    def get_last_checkpoint(self, trial=None, metric="training_iteration", mode="max"):
        """The latest checkpoint of ``trial`` (default: the best trial by metric/mode)."""
        trial = trial or self.get_best_trial(metric, mode)
        return self.get_best_checkpoint(trial, "training_iteration", "max") if trial else None

    def get_all_configs(self, prefix=False):
        """trial_id -> config (flattened with ``config/`` keys when ``prefix``)."""
        return {t.trial_id: (_flatten({_CONFIG_PREFIX: t.config}) if prefix else t.config) for t in self.trials}

    def _need_defaults(self, what, alt):
        if not self.default_metric or not self.default_mode:
            raise ValueError(f"To fetch the `{what}`, pass a `metric` and `mode` parameter to `tune.run()`. "
                             f"Alternatively, use the `{alt}` method to set the metric and mode explicitly.")

    @property
    def best_trial(self):
        self._need_defaults("best_trial", "get_best_trial(metric, mode)")
        return self.get_best_trial(self.default_metric, self.default_mode)

    @property
    def best_config(self):
        self._need_defaults("best_config", "get_best_config(metric, mode)")
        return self.get_best_config(self.default_metric, self.default_mode)

    @property
    def best_checkpoint(self):
        self._need_defaults("best_checkpoint", "get_best_checkpoint(trial, metric, mode)")
        t = self.best_trial
        if t is None:
            raise ValueError(f"No best trial found. Please check if you specified the correct default metric "
                             f"({self.default_metric}) and mode ({self.default_mode}).")
        return self.get_best_checkpoint(t, self.default_metric, self.default_mode)

    @property
    def best_dataframe(self):
        self._need_defaults("best_result", "get_best_trial(metric, mode)")
        return self.trial_dataframes[self.best_trial.trial_id]

    @property
    def best_logdir(self):
        t = self.best_trial
        return t.local_path if t else None

    @property
    def best_result(self):
        self._need_defaults("best_result", "get_best_trial(metric, mode).last_result")
        return self.best_trial.last_result

    @property
    def best_result_df(self):
        pd = require("tune", "pandas")
        return pd.DataFrame.from_records([_flatten(self.best_result, self._delimiter())], index="trial_id")

    @property
    def results(self):
        """trial_id -> last result."""
        return {t.trial_id: t.last_result for t in self.trials}

    @property
    def results_df(self):
        pd = require("tune", "pandas")
        return pd.DataFrame.from_records([_flatten(t.last_result, self._delimiter()) for t in self.trials],
                                         index="trial_id")

    @staticmethod
    def _delimiter():
        return os.environ.get("TUNE_RESULT_DELIM", "/")

    # ------------------------------------------------------------------ per-trial frames
    def _fetch_trial_dataframe(self, trial):
        pd = require("tune", "pandas")
        if not trial.last_result:
            return pd.DataFrame()
        path = os.path.join(trial.local_path, "result.json")
        if os.path.exists(path):
            with open(path) as f:
                rows = []
                for line in f:
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        pass
            return pd.json_normalize(rows, sep="/") if rows else pd.DataFrame()
        csv = os.path.join(trial.local_path, "progress.csv")
        if os.path.exists(csv):
            return pd.read_csv(csv, dtype={"trial_id": str})
        raise FileNotFoundError(f"Could not fetch metrics for {trial}: both result.json and progress.csv were "
                                f"not found at {trial.local_path}")

    @property
    def trial_dataframes(self):
        """trial_id -> DataFrame of every result the trial reported (from result.json)."""
        if self._dfs is None:
            pd = require("tune", "pandas")
            dfs = {}
            for t in self.trials:
                try:
                    dfs[t.trial_id] = self._fetch_trial_dataframe(t)
                except Exception:
                    dfs[t.trial_id] = pd.DataFrame()
            self._dfs = dfs
        return self._dfs

    def dataframe(self, metric=None, mode=None):
        """One row per trial: its last result or, with ``metric`` and ``mode``, the result
        where ``metric`` was lowest/highest (not necessarily the last), plus ``config/...``
        columns and ``logdir``."""
        pd = require("tune", "pandas")
        if mode and mode not in ("min", "max"):
            raise ValueError("If set, `mode` has to be one of [min, max]")
        if mode and not metric:
            raise ValueError("If a `mode` is passed to `ExperimentAnalysis.dataframe(), you'll also have to pass "
                             "a `metric`!")
        rows = {}
        for tid, df in self.trial_dataframes.items():
            if df.empty:
                continue
            if metric not in df or not mode:
                row = df.iloc[-1]
            else:
                col = pd.to_numeric(df[metric], errors="coerce")
                if col.isna().all():
                    continue
                row = df.loc[col.idxmax() if mode == "max" else col.idxmin()]
            rows[tid] = row.to_dict()
        for tid, cfg in self.get_all_configs(prefix=True).items():
            if tid in rows:
                rows[tid].update(cfg)
                rows[tid]["logdir"] = tid
        return pd.DataFrame(list(rows.values()))

    def stats(self):
        return {}
