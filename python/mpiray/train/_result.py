"""``Result``: the outcome of one trial or training run (Ray's ``ray.train.Result``)."""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ._checkpoint import Checkpoint


@dataclass
class Result:
    """metrics: the last reported result (with ``config``); checkpoint: the latest
    checkpoint; error: the exception of a trial that failed (its string is the remote
    traceback); path: the trial directory; best_checkpoints: [(Checkpoint, metrics)] kept by
    the CheckpointConfig."""

    metrics: Optional[Dict[str, Any]]
    checkpoint: Optional[Checkpoint]
    error: Optional[BaseException] = None
    path: Optional[str] = None
    metrics_dataframe: Any = None
    best_checkpoints: Optional[List[Tuple[Checkpoint, Dict[str, Any]]]] = None
    _storage_filesystem: Any = None

    @property
    def config(self):
        return (self.metrics or {}).get("config")

    @property
    def filesystem(self):
        return None

    @classmethod
    def from_path(cls, path):
        """The result stored in a trial directory (``result.json``, checkpoints, ``error.txt``)."""
        from ..tune._trial_dir import load_result_from_dir
        return load_result_from_dir(path)

    def get_best_checkpoint(self, metric, mode):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        cands = [(c, m) for c, m in (self.best_checkpoints or []) if metric in m]
        if not cands:
            if self.best_checkpoints:
                raise RuntimeError(f"No checkpoint of this result reported the metric {metric!r}")
            return None
        best = (max if mode == "max" else min)(cands, key=lambda cm: cm[1][metric])
        return best[0]

    def __repr__(self):
        metrics = {k: v for k, v in (self.metrics or {}).items() if k != "config"}
        parts = [f"metrics={metrics}", f"path={self.path!r}", f"checkpoint={self.checkpoint}"]
        if self.error is not None:
            parts.append(f"error={type(self.error).__name__}")
        return "Result(\n  " + ",\n  ".join(parts) + "\n)"
