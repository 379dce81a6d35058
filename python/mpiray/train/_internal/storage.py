"""A run's directory: checkpoints, the checkpoint manager's snapshot, ``progress.csv`` and
``result.json``.

Layout (``<storage_path>/<name>/``)::

    checkpoint_000003/            one per report that carried a checkpoint (report index)
    checkpoint_manager_snapshot.json   what resuming needs (committed checkpoints, report count)
    progress.csv, result.json     one row / line per report of rank 0, as Ray's loggers write
    trainer.pkl                   the trainer's arguments, for TorchTrainer.restore(path)
    error.txt                     the error of a run that failed

The storage path must be a file system every node of the job sees (a shared /scratch or the
home directory); workers write their checkpoint files straight into it.
"""

import csv
import json
import math
import numbers
import os
import shutil
import threading

SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"
CHECKPOINT_PREFIX = "checkpoint_"


def checkpoint_dir_name(report_index):
    return f"{CHECKPOINT_PREFIX}{report_index:06d}"


def write_atomic(path, text):
    tmp = f"{path}.tmp{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return repr(o)


def _flatten(d, prefix="", out=None):
    if out is None:
        out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            _flatten(v, key, out)
        else:
            out[key] = v
    return out


class RunStorage:
    """Paths of one run, and its result logs."""

    def __init__(self, storage_path, name, create=True):
        self.storage_path = storage_path
        self.name = name
        self.path = os.path.join(storage_path, name)
        if create:
            try:
                os.makedirs(self.path, exist_ok=True)
            except OSError as e:
                raise RuntimeError(f"cannot create the run directory {self.path}: {e} "
                                   "(RunConfig(storage_path=...) must be writable)") from e
        self._rows = None       # progress rows (flattened dicts), loaded lazily
        self._columns = None
        self._csv = None
        self._json = None

    @property
    def snapshot_path(self):
        return os.path.join(self.path, SNAPSHOT_FILE)

    def checkpoint_path(self, dir_name):
        return os.path.join(self.path, dir_name)

    # ------------------------------------------------------------------ result logs
    def log_result(self, row):
        """Append one report (a dict, auto-filled fields included) to result.json and
        progress.csv."""
        if self._json is None:
            self._json = open(os.path.join(self.path, "result.json"), "a")
        self._json.write(json.dumps(row, default=_json_default) + "\n")
        flat = {k: v for k, v in _flatten(row).items() if k != "config"}
        if self._rows is None:
            self._rows = self._read_progress()
            self._columns = list(self._rows[0].keys()) if self._rows else None
        self._rows.append(flat)
        if self._columns is None or any(k not in self._columns for k in flat):
            # a new column: write the file again with the union of the columns
            cols = list(self._columns or [])
            cols += [k for k in flat if k not in cols]
            self._columns = cols
            if self._csv is not None:
                self._csv.close()
            self._csv = open(os.path.join(self.path, "progress.csv"), "w", newline="")
            w = csv.DictWriter(self._csv, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for r in self._rows:
                w.writerow({k: _csv_value(r.get(k)) for k in cols})
        else:
            if self._csv is None:
                self._csv = open(os.path.join(self.path, "progress.csv"), "a", newline="")
            csv.DictWriter(self._csv, fieldnames=self._columns, extrasaction="ignore").writerow(
                {k: _csv_value(flat.get(k)) for k in self._columns})

    def flush(self):
        for f in (self._json, self._csv):
            if f is not None:
                f.flush()

    def close(self):
        for f in (self._json, self._csv):
            if f is not None:
                f.close()
        self._json = self._csv = None

    def _read_progress(self):
        p = os.path.join(self.path, "progress.csv")
        if not os.path.exists(p):
            return []
        with open(p, newline="") as f:
            return [dict(r) for r in csv.DictReader(f)]

    def metrics_dataframe(self):
        """progress.csv as a pandas DataFrame (None when there is no row or no pandas)."""
        self.flush()
        p = os.path.join(self.path, "progress.csv")
        if not os.path.exists(p) or os.path.getsize(p) == 0:
            return None
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            return None
        try:
            return pd.read_csv(p)
        except Exception:
            return None

    def write_error(self, text):
        try:
            with open(os.path.join(self.path, "error.txt"), "w") as f:
                f.write(text)
        except OSError:
            pass

    def clear_error(self):
        try:
            os.remove(os.path.join(self.path, "error.txt"))
        except OSError:
            pass

    def remove_checkpoint_dirs(self, keep):
        """Delete ``checkpoint_*`` directories that are not in ``keep`` (left by reports that
        were never committed, e.g. by a worker group that failed halfway through a report)."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return
        for n in names:
            if n.startswith(CHECKPOINT_PREFIX) and n not in keep and os.path.isdir(os.path.join(self.path, n)):
                shutil.rmtree(os.path.join(self.path, n), ignore_errors=True)


def _csv_value(v):
    if isinstance(v, float) and math.isnan(v):
        return ""
    if v is None:
        return ""
    if isinstance(v, (str, numbers.Number, bool)):
        return v
    return json.dumps(v, default=_json_default)
