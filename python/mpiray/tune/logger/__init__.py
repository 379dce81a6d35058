"""Logger callbacks (Ray's ``ray.tune.logger``): ``result.json``, ``progress.csv`` and
TensorBoard event files in each trial directory.

Files stay open while the trial runs and are written through Python's buffers; the
controller flushes them about once a second, at each trial's end and on the walltime
signal, so thousands of results per second cost the driver microseconds each."""

import csv
import io
import json
import math
import numbers
import os
import pickle

from ..._extras import require
from ..callback import Callback

EXCLUDE_FROM_CSV = {"config"}


def _json_default(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return repr(o)


def _flatten(d, prefix="", out=None, delimiter="/"):
    if out is None:
        out = {}
    for k, v in d.items():
        key = f"{prefix}{delimiter}{k}" if prefix else str(k)
        if isinstance(v, dict):
            _flatten(v, key, out, delimiter)
        else:
            out[key] = v
    return out


class LoggerCallback(Callback):
    """Calls ``log_trial_start/result/end`` (Ray's LoggerCallback)."""

    def log_trial_start(self, trial):
        pass

    def log_trial_restore(self, trial):
        pass

    def log_trial_save(self, trial):
        pass

    def log_trial_result(self, iteration, trial, result):
        pass

    def log_trial_end(self, trial, failed=False):
        pass

    def flush(self, wait=True):
        pass

    def flush_trial(self, trial):
        """Write this trial's buffered results to the OS (before its checkpoint is journaled)."""

    def on_trial_start(self, iteration, trials, trial, **info):
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration, trials, trial, **info):
        self.log_trial_save(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.log_trial_result(iteration, trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.log_trial_end(trial, failed=True)

    def on_experiment_end(self, trials, **info):
        self.flush()


def truncate_logs(trial_dir, iteration):
    """Drop logged results after ``iteration`` (a trial resuming from an older checkpoint
    reports those iterations again: each appears once)."""
    path = os.path.join(trial_dir, "result.json")
    if os.path.exists(path):
        keep = []
        with open(path) as f:
            for line in f:
                try:
                    if json.loads(line).get("training_iteration", 0) <= iteration:
                        keep.append(line)
                except ValueError:
                    pass
        with open(path, "w") as f:
            f.writelines(keep)
    path = os.path.join(trial_dir, "progress.csv")
    if os.path.exists(path):
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if rows:
            header = rows[0]
            idx = header.index("training_iteration") if "training_iteration" in header else None
            kept = [header] + [r for r in rows[1:] if idx is None or (len(r) > idx and r[idx] and float(r[idx]) <= iteration)]
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows(kept)


class JsonLoggerCallback(LoggerCallback):
    """``params.json``/``params.pkl`` at the start, one JSON line per result in
    ``result.json``."""

    def __init__(self):
        self._files = {}

    def log_trial_start(self, trial):
        os.makedirs(trial.local_path, exist_ok=True)
        with open(os.path.join(trial.local_path, "params.json"), "w") as f:
            json.dump(trial.config, f, indent=2, sort_keys=True, default=_json_default)
        try:
            with open(os.path.join(trial.local_path, "params.pkl"), "wb") as f:
                import cloudpickle
                cloudpickle.dump(trial.config, f)
        except Exception:
            pass

    def log_trial_restore(self, trial):
        self._close(trial)

    def log_trial_result(self, iteration, trial, result):
        f = self._files.get(trial.trial_id)
        if f is None:
            f = self._files[trial.trial_id] = open(os.path.join(trial.local_path, "result.json"), "a")
        f.write(json.dumps(result, default=_json_default))
        f.write("\n")

    def log_trial_end(self, trial, failed=False):
        self._close(trial)

    def flush_trial(self, trial):
        f = self._files.get(trial.trial_id)
        if f is not None:
            f.flush()

    def _close(self, trial):
        f = self._files.pop(trial.trial_id, None)
        if f is not None:
            f.close()

    def flush(self, wait=True):
        for f in self._files.values():
            f.flush()


class CSVLoggerCallback(LoggerCallback):
    """``progress.csv``: one row per result, flattened keys (``a/b``), columns fixed by the
    first result (as Ray)."""

    def __init__(self):
        self._files = {}

    def log_trial_restore(self, trial):
        self._close(trial)

    def log_trial_result(self, iteration, trial, result):
        entry = self._files.get(trial.trial_id)
        flat = _flatten({k: v for k, v in result.items() if k not in EXCLUDE_FROM_CSV})
        if entry is None:
            path = os.path.join(trial.local_path, "progress.csv")
            exists = os.path.exists(path) and os.path.getsize(path) > 0
            f = open(path, "a", newline="")
            if exists:
                with open(path, newline="") as r:
                    fields = next(csv.reader(r))
            else:
                fields = list(flat.keys())
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if not exists:
                w.writeheader()
            entry = self._files[trial.trial_id] = (f, w)
        entry[1].writerow(flat)

    def log_trial_end(self, trial, failed=False):
        self._close(trial)

    def flush_trial(self, trial):
        e = self._files.get(trial.trial_id)
        if e is not None:
            e[0].flush()

    def _close(self, trial):
        e = self._files.pop(trial.trial_id, None)
        if e is not None:
            e[0].close()

    def flush(self, wait=True):
        for f, _ in self._files.values():
            f.flush()


class TBXLoggerCallback(LoggerCallback):
    """TensorBoard event files (tensorboardX): every numeric result key as
    ``ray/tune/<key>`` at step ``training_iteration``; hyperparameters at the end.

    tensorboardX fsyncs and starts a thread per writer, so the writing happens on one
    background thread of the driver; the experiment loop only queues the scalars."""

    VALID_HPARAMS = (str, bool, int, float, type(None))
    _SKIP = ("config", "pid", "timestamp", "date", "trial_id", "hostname", "node_ip", "done",
             "experiment_tag", "checkpoint_dir_name")

    def __init__(self):
        require("tune", "tensorboardX")  # fails early (MissingExtraError, an ImportError) when missing
        import queue
        import threading
        self._q = queue.SimpleQueue()
        self._writers = {}
        self._last = {}
        self._thread = threading.Thread(target=self._work, name="tune-tbx", daemon=True)
        self._thread.start()

    def _work(self):
        while True:
            item = self._q.get()
            op = item[0]
            try:
                if op == "result":
                    self._write(*item[1:])
                elif op == "end":
                    self._end(*item[1:])
                elif op == "flush":
                    for w in self._writers.values():
                        w.flush()
                    item[1].set()
            except Exception:
                pass

    def _write(self, trial_id, path, step, result):
        w = self._writers.get(trial_id)
        if w is None:
            w = self._writers[trial_id] = _EventFile(path)
        flat = _flatten({k: v for k, v in result.items() if k not in self._SKIP})
        w.scalars({f"ray/tune/{k}": v for k, v in flat.items()
                   if isinstance(v, numbers.Number) and not isinstance(v, bool) and math.isfinite(v)}, step)
        self._last[trial_id] = flat

    def _end(self, trial_id, config):
        w = self._writers.pop(trial_id, None)
        last = self._last.pop(trial_id, {})
        if w is None:
            return
        try:
            hp = {k: v for k, v in _flatten(config or {}).items() if isinstance(v, self.VALID_HPARAMS)}
            metrics = {f"ray/tune/{k}": v for k, v in last.items()
                       if isinstance(v, numbers.Number) and not isinstance(v, bool) and math.isfinite(v)}
            if hp:
                w.hparams(hp, metrics)
        finally:
            w.close()

    def log_trial_result(self, iteration, trial, result):
        self._q.put(("result", trial.trial_id, trial.local_path, result.get("training_iteration", iteration), result))

    def log_trial_end(self, trial, failed=False):
        self._q.put(("end", trial.trial_id, trial.config))

    def log_trial_restore(self, trial):
        self._q.put(("end", trial.trial_id, None))

    def flush(self, wait=True, timeout=30.0):
        import threading
        done = threading.Event()
        self._q.put(("flush", done))
        if wait:
            done.wait(timeout)


class _EventFile:
    """A TensorBoard event file written directly (tensorboardX's protobufs and record
    format; one event per result with all its scalars, no writer thread, no fsync)."""

    def __init__(self, logdir):
        import socket
        import time
        from tensorboardX.proto.event_pb2 import Event
        self._Event = Event
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
        self._f = open(os.path.join(logdir, name), "ab")
        self._event(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _event(self, ev):
        import struct
        from tensorboardX.record_writer import masked_crc32c
        data = ev.SerializeToString()
        header = struct.pack("Q", len(data))
        self._f.write(header + struct.pack("I", masked_crc32c(header)) + data +
                      struct.pack("I", masked_crc32c(data)))

    def scalars(self, values, step):
        import time
        from tensorboardX.proto.summary_pb2 import Summary
        summ = Summary(value=[Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._event(self._Event(wall_time=time.time(), step=int(step), summary=summ))

    def hparams(self, hp, metrics):
        import time
        from tensorboardX.summary import hparams
        for s in hparams(hp, metrics):
            self._event(self._Event(wall_time=time.time(), summary=s))
        self.scalars(metrics, 0)

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()


def default_logger_callbacks():
    cbs = [JsonLoggerCallback(), CSVLoggerCallback()]
    try:
        cbs.append(TBXLoggerCallback())
    except ImportError:
        pass
    return cbs


class Logger:
    """Ray's legacy per-trial Logger base (accepted for compatibility)."""

    def __init__(self, config, logdir, trial=None):
        self.config, self.logdir, self.trial = config, logdir, trial


__all__ = ["LoggerCallback", "JsonLoggerCallback", "CSVLoggerCallback", "TBXLoggerCallback", "Logger"]
