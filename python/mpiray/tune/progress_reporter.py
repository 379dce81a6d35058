"""The console output (as Ray 2.x prints it): a configuration box at the start, a status
table every 30 s (``Trial status: 2 RUNNING | 3 TERMINATED``, time, resource usage, current
best trial, one row per trial with its parameters and metrics), lines for trial starts and
ends, and the final table."""

import datetime
import math
import numbers
import sys
import time

_DEFAULT_COLUMNS = {"mean_accuracy": "acc", "mean_loss": "loss", "training_iteration": "iter",
                    "time_total_s": "total time (s)", "timesteps_total": "ts",
                    "episode_reward_mean": "reward"}
_AUTO = {"done", "training_iteration", "trial_id", "date", "timestamp", "time_this_iter_s",
         "time_total_s", "pid", "hostname", "node_ip", "time_since_restore",
         "iterations_since_restore", "checkpoint_dir_name", "config", "experiment_tag",
         "should_checkpoint"}
_ORDER = ["RUNNING", "TERMINATED", "PAUSED", "PENDING", "ERROR"]


def _fmt(v):
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.5g}"
    return str(v)


def _box(headers, rows, unicode_ok=True):
    cols = list(zip(*([headers] + rows))) if rows else [[h] for h in headers]
    widths = [max(len(str(c)) for c in col) for col in cols]
    if unicode_ok:
        tl, tr, bl, br, h, v, ml, mr = "╭", "╮", "╰", "╯", "─", "│", "├", "┤"
    else:
        tl = tr = bl = br = ml = mr = "+"
        h, v = "-", "|"
    inner = sum(widths) + 2 * len(widths)
    def line(cells):
        parts = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            s = str(c)
            parts.append(s.ljust(w) if i == 0 or not _numeric(s) else s.rjust(w))
        return v + " " + "  ".join(parts) + " " + v
    out = [tl + h * (inner) + tr, line(headers), ml + h * inner + mr]
    out += [line(r) for r in rows]
    out.append(bl + h * inner + br)
    return "\n".join(out)


def _numeric(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _utf8():
    enc = (getattr(sys.stdout, "encoding", "") or "").lower()
    return "utf" in enc


def _fmt_duration(seconds):
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}hr {m}min {s}s"
    if m:
        return f"{m}min {s}s"
    return f"{s}s"


class TuneReporter:
    HEARTBEAT_S = 30.0

    def __init__(self, verbose, metric=None, mode=None, param_space=None, max_rows=20):
        self.verbose = int(verbose)
        self.metric = metric
        self.mode = mode
        self.max_rows = max_rows
        self._params = [k for k, v in _flat(param_space or {}).items() if _is_search(v)]
        self._start = time.time()
        self._last = time.time()
        self._metrics = None
        self._utf = _utf8()

    def experiment_started(self, name, path, searcher, scheduler, total):
        if self.verbose < 1:
            return
        total_s = "infinite" if total == float("inf") or total > sys.maxsize else str(total)
        print(_box(["Configuration for experiment", name],
                   [["Search algorithm", searcher], ["Scheduler", scheduler], ["Number of trials", total_s]],
                   self._utf))
        print(f"\nView detailed results here: {path}")
        print(f"To visualize your results with TensorBoard, run: `tensorboard --logdir {path}`\n", flush=True)

    def trial_started(self, trial):
        if self.verbose < 2:
            return
        print(f"Trial {trial} started with configuration:", flush=True)

    def trial_result(self, trial, result):
        if self.verbose < 2:
            return
        print(f"Trial {trial} finished iteration {result.get('training_iteration')} "
              f"at {time.strftime('%Y-%m-%d %H:%M:%S')}. Total running time: "
              f"{_fmt_duration(time.time() - self._start)}", flush=True)

    def trial_completed(self, trial):
        if self.verbose < 2:
            return
        print(f"Trial {trial} completed after {trial.last_result.get('training_iteration', 0)} iterations "
              f"at {time.strftime('%Y-%m-%d %H:%M:%S')}. Total running time: "
              f"{_fmt_duration(time.time() - self._start)}", flush=True)

    def trial_errored(self, trial):
        if self.verbose < 1:
            return
        print(f"Trial {trial} errored after {trial.last_result.get('training_iteration', 0)} iterations "
              f"at {time.strftime('%Y-%m-%d %H:%M:%S')}. Total running time: "
              f"{_fmt_duration(time.time() - self._start)}\nError file: {trial.error_file}", flush=True)

    def walltime(self, trials):
        if self.verbose >= 1:
            print("Walltime signal: experiment state saved; resume with Tuner.restore(path, trainable)",
                  flush=True)

    def heartbeat(self, trials, resources, force=False):
        if self.verbose < 1:
            return
        now = time.time()
        if not force and now - self._last < self.HEARTBEAT_S:
            return
        self._last = now
        if callable(resources):
            resources = resources()
        print(self.status_text(trials, resources, all_rows=force), flush=True)

    def final(self, trials, resources):
        if self.verbose < 1:
            return
        print(self.status_text(trials, resources, all_rows=True, final=True), flush=True)

    def status_text(self, trials, resources, all_rows=False, final=False):
        counts = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        status = " | ".join(f"{counts[s]} {s}" for s in _ORDER if s in counts)
        lines = [("\n" if not final else "\n") + f"Trial status: {status}",
                 f"Current time: {time.strftime('%Y-%m-%d %H:%M:%S')}. Total running time: "
                 f"{_fmt_duration(time.time() - self._start)}", resources]
        best = self._best(trials)
        if best is not None:
            t, v = best
            params = {k: _get(t.config, k) for k in self._params}
            lines.append(f"Current best trial: {t.trial_id} with {self.metric}={v} and params={params}")
        if self._metrics is None:
            self._metrics = self._infer_metrics(trials)
        metric_cols = [k for k in _DEFAULT_COLUMNS if any(k in t.last_result for t in trials)]
        user_cols = self._metrics or []
        headers = ["Trial name", "status"] + self._params + [_DEFAULT_COLUMNS[k] for k in metric_cols] + user_cols
        rows = []
        ordered = sorted(trials, key=lambda t: (_ORDER.index(t.status) if t.status in _ORDER else 9, t.index))
        shown = ordered if all_rows or len(ordered) <= self.max_rows else ordered[: self.max_rows]
        for t in shown:
            row = [str(t), t.status] + [_fmt(_get(t.config, k)) for k in self._params]
            row += [_fmt(t.last_result[k]) if k in t.last_result else "" for k in metric_cols]
            row += [_fmt(t.last_result[k]) if k in t.last_result else "" for k in user_cols]
            rows.append(row)
        lines.append(_box(headers, rows, self._utf))
        if len(shown) < len(ordered):
            more = {}
            for t in ordered[len(shown):]:
                more[t.status] = more.get(t.status, 0) + 1
            lines.append(", ".join(f"{n} more {s}" for s, n in more.items()))
        errored = [t for t in trials if t.status == "ERROR"]
        if final and errored:
            lines.append(f"\nNumber of errored trials: {len(errored)}")
            lines.append(_box(["Trial name", "# failures", "error file"],
                              [[str(t), str(t.num_failures), str(t.error_file)] for t in errored], self._utf))
        return "\n".join(lines) + "\n"

    def _best(self, trials):
        if not self.metric or not self.mode:
            return None
        cands = [(t, t.last_result[self.metric]) for t in trials
                 if isinstance(t.last_result.get(self.metric), numbers.Number)]
        if not cands:
            return None
        return (max if self.mode == "max" else min)(cands, key=lambda x: x[1])

    def _infer_metrics(self, trials):
        for t in trials:
            if t.last_result:
                keys = [k for k, v in t.last_result.items() if k not in _AUTO and k not in _DEFAULT_COLUMNS
                        and isinstance(v, (numbers.Number, type(None))) and not isinstance(v, bool)]
                if self.metric and self.metric in keys:
                    keys.remove(self.metric)
                    keys.insert(0, self.metric)
                return keys[:5]
        return None


def _is_search(v):
    from .search.sample import Domain
    return isinstance(v, Domain) or (isinstance(v, dict) and "grid_search" in v)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict) and not (len(v) == 1 and "grid_search" in v):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def _get(cfg, key):
    cur = cfg
    for p in key.split("/"):
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


class ProgressReporter:
    """Ray's reporter base (accepted in RunConfig(progress_reporter=...); mpiray prints its
    own table)."""


class CLIReporter(ProgressReporter):
    def __init__(self, metric_columns=None, parameter_columns=None, max_report_frequency=5, **kwargs):
        self.metric_columns = metric_columns
        self.parameter_columns = parameter_columns
        self.max_report_frequency = max_report_frequency


class JupyterNotebookReporter(CLIReporter):
    pass
