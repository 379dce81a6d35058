"""Which checkpoints a run keeps, and the snapshot a resumed run starts from.

Every committed report (all workers reported it) passes through :meth:`record_report`; those
with a checkpoint are registered, the ones beyond ``CheckpointConfig(num_to_keep)`` deleted
(worst by ``checkpoint_score_attribute``, else oldest; never the latest), and the snapshot is
written atomically *before* anything is deleted, so a crash at any point leaves a snapshot
that names existing directories.
"""

import json
import logging
import math
import os
import shutil
import time

from .._checkpoint import Checkpoint
from .storage import write_atomic

logger = logging.getLogger("mpiray.train")

_VERSION = 1


class _Entry:
    __slots__ = ("dir_name", "metrics", "index")

    def __init__(self, dir_name, metrics, index):
        self.dir_name, self.metrics, self.index = dir_name, metrics, index

    def to_json(self):
        return {"checkpoint_dir_name": self.dir_name, "metrics": self.metrics, "report_index": self.index}


class CheckpointManager:
    """``storage``: the run's :class:`RunStorage`; ``config``: its CheckpointConfig (None when
    only reading a finished run)."""

    def __init__(self, storage, config):
        self.storage = storage
        self.config = config
        self.entries = []            # kept checkpoints, in order of report
        self.latest = None           # the latest committed checkpoint (_Entry)
        self.num_reports = 0         # committed reports so far (across restarts)
        self.last_metrics = None     # rank 0's metrics of the last committed report
        self.time_total_s = 0.0
        self.resumed = False
        self._load()

    # ------------------------------------------------------------------ snapshot
    def _load(self):
        p = self.storage.snapshot_path
        if not os.path.exists(p):
            return
        try:
            with open(p) as f:
                state = json.load(f)
            self.entries = [_Entry(e["checkpoint_dir_name"], e["metrics"], e["report_index"])
                            for e in state["checkpoints"]]
            lt = state.get("latest_checkpoint")
            self.latest = _Entry(lt["checkpoint_dir_name"], lt["metrics"], lt["report_index"]) if lt else None
            self.num_reports = int(state.get("num_reports", 0))
            self.last_metrics = state.get("last_metrics")
            self.time_total_s = float(state.get("time_total_s", 0.0))
            if self.config is None and state.get("score_attribute"):
                from .._train_config import CheckpointConfig
                self.config = CheckpointConfig(checkpoint_score_attribute=state["score_attribute"],
                                               checkpoint_score_order=state.get("score_order", "max"))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"cannot read the run's checkpoint snapshot {p}: {e}") from e
        # a checkpoint directory removed by hand is dropped with a warning, not an error later
        missing = [e for e in self.entries if not os.path.isdir(self.storage.checkpoint_path(e.dir_name))]
        for e in missing:
            logger.warning("checkpoint %s listed in %s is missing; ignoring it", e.dir_name, p)
        self.entries = [e for e in self.entries if e not in missing]
        if self.latest is not None and not os.path.isdir(self.storage.checkpoint_path(self.latest.dir_name)):
            self.latest = self.entries[-1] if self.entries else None
            if self.entries and self.config is not None and self.config.checkpoint_score_attribute:
                self.latest = max(self.entries, key=lambda e: e.index)
        self.resumed = True

    def save(self):
        state = {
            "version": _VERSION,
            "checkpoints": [e.to_json() for e in self.entries],
            "latest_checkpoint": self.latest.to_json() if self.latest else None,
            "num_reports": self.num_reports,
            "last_metrics": self.last_metrics,
            "time_total_s": self.time_total_s,
            "score_attribute": self.config.checkpoint_score_attribute if self.config else None,
            "score_order": self.config.checkpoint_score_order if self.config else "max",
            "saved_at": time.time(),
        }
        write_atomic(self.storage.snapshot_path, json.dumps(state, default=_json_default))

    # ------------------------------------------------------------------ reports
    def record_report(self, metrics, dir_name, time_this_iter_s=0.0):
        """A committed report (rank 0's ``metrics``; ``dir_name`` of its checkpoint or None).
        Returns the Checkpoint or None."""
        index = self.num_reports
        self.num_reports += 1
        self.last_metrics = metrics
        self.time_total_s += time_this_iter_s
        if dir_name is None:
            return None
        entry = _Entry(dir_name, metrics, index)
        self.latest = entry
        self.entries = [e for e in self.entries if e.dir_name != dir_name] + [entry]
        doomed = self._to_delete()
        self.entries = [e for e in self.entries if e not in doomed]
        self.save()
        for e in doomed:
            shutil.rmtree(self.storage.checkpoint_path(e.dir_name), ignore_errors=True)
        return Checkpoint(self.storage.checkpoint_path(dir_name))

    def _score(self, e):
        attr = self.config.checkpoint_score_attribute
        v = _lookup(e.metrics, attr)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or (isinstance(v, float) and math.isnan(v)):
            return -math.inf
        return v if self.config.checkpoint_score_order == "max" else -v

    def _ranked(self):
        """Kept checkpoints from worst to best."""
        if self.config is not None and self.config.checkpoint_score_attribute:
            return sorted(self.entries, key=lambda e: (self._score(e), e.index))
        return sorted(self.entries, key=lambda e: e.index)

    def _to_delete(self):
        if self.config is None or self.config.num_to_keep is None:
            return []
        ranked = self._ranked()
        if self.config.checkpoint_score_attribute:
            for e in ranked:
                if _lookup(e.metrics, self.config.checkpoint_score_attribute) is None:
                    logger.warning("checkpoint %s has no metric %r (checkpoint_score_attribute): it ranks "
                                   "lowest", e.dir_name, self.config.checkpoint_score_attribute)
                    break
        worst = ranked[:-self.config.num_to_keep]
        return [e for e in worst if e is not self.latest]

    def rewind_to_latest(self):
        """A (re)started worker group resumes from the latest checkpoint: report numbering
        continues after it (reports made after it are made again)."""
        self.num_reports = self.latest.index + 1 if self.latest else 0

    # ------------------------------------------------------------------ queries
    def latest_checkpoint(self):
        return Checkpoint(self.storage.checkpoint_path(self.latest.dir_name)) if self.latest else None

    def committed_dir_names(self):
        names = {e.dir_name for e in self.entries}
        if self.latest:
            names.add(self.latest.dir_name)
        return names

    def best_checkpoints(self):
        """``[(Checkpoint, metrics)]``: oldest first without a score attribute, else worst to
        best (as Ray)."""
        return [(Checkpoint(self.storage.checkpoint_path(e.dir_name)), e.metrics) for e in self._ranked()]

    def build_result(self, error=None, return_value=None):
        from .._train_result import Result
        return Result(metrics=self.last_metrics if self.last_metrics is not None else
                      (self.latest.metrics if self.latest else None),
                      checkpoint=self.latest_checkpoint(), error=error, path=self.storage.path,
                      metrics_dataframe=self.storage.metrics_dataframe(),
                      best_checkpoints=self.best_checkpoints(), return_value=return_value)


def _lookup(metrics, attr):
    """``metrics[attr]``, with ``a/b`` looking into nested dicts (as Ray's flattened keys)."""
    if attr in metrics:
        return metrics[attr]
    cur = metrics
    for part in attr.split("/"):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


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
