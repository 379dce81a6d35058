"""The experiment's append-only journal (``experiment_journal.jsonl``).

One JSON line per event: a trial was created, saved a checkpoint, changed config or
resources, ended (TERMINATED/ERROR), paused, or the run was interrupted (walltime). Nothing is
ever rewritten, so 10,000 trials cost O(trials) writes in total, and a crash can at worst
leave a torn last line, which reading skips. Each line is flushed to the OS when written;
``sync()`` (fsync) runs on the walltime signal and at the end of the experiment.
"""

import base64
import json
import os
import time

import cloudpickle

JOURNAL = "experiment_journal.jsonl"


def _b64(obj):
    return base64.b64encode(cloudpickle.dumps(obj)).decode()


def _unb64(s):
    import pickle
    return pickle.loads(base64.b64decode(s))


def json_safe(d):
    out = {}
    for k, v in d.items():
        if k == "config":
            continue
        if isinstance(v, (int, float, str, bool, type(None))):
            out[k] = v
        else:
            try:
                json.dumps(v)
                out[k] = v
            except (TypeError, ValueError):
                out[k] = repr(v)
    return out


def _finite_all(d):
    import math
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in d.values())


class Journal:
    def __init__(self, experiment_path):
        self.path = os.path.join(experiment_path, JOURNAL)
        self._f = open(self.path, "a", buffering=1)

    def write(self, ev, **fields):
        fields["ev"] = ev
        fields["t"] = time.time()
        self._f.write(json.dumps(fields, separators=(",", ":")) + "\n")

    def trial_created(self, trial):
        self.write("trial", id=trial.trial_id, index=trial.index, tag=trial.experiment_tag,
                   config=_b64(trial.config), pgf=_b64(trial.placement_group_factory),
                   path=os.path.basename(trial.local_path))

    def checkpoint(self, trial):
        self.write("ckpt", id=trial.trial_id, path=os.path.basename(trial.checkpoint.path),
                   iter=trial.ckpt_iteration, time_total=trial.ckpt_time_total, index=trial.ckpt_index)

    def config_changed(self, trial):
        self.write("config", id=trial.trial_id, config=_b64(trial.config),
                   pgf=_b64(trial.placement_group_factory))

    def status(self, trial, status, error=None):
        extra = {}
        if status in ("TERMINATED", "ERROR") and trial.metric_analysis:
            # what ResultGrid/ExperimentAnalysis rank by (scope="avg", "last-5-avg", ...)
            extra["analysis"] = {k: v for k, v in trial.metric_analysis.items() if _finite_all(v)}
        self.write("status", id=trial.trial_id, status=status, result=json_safe(trial.last_result or {}),
                   failures=trial.run_metadata.num_failures, error=error, **extra)

    def sync(self):
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self):
        try:
            self.sync()
        finally:
            self._f.close()


def read(experiment_path):
    """The events of a journal, skipping a torn last line."""
    events = []
    with open(os.path.join(experiment_path, JOURNAL)) as f:
        for line in f:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events
