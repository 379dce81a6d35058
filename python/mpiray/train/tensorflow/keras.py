"""Keras callbacks that report to mpiray.train (Ray's ``ray.train.tensorflow.keras``)."""

import os
import shutil
import tempfile

from ... import train
from .._checkpoint import Checkpoint

def _keras_callback_base():
    """The Callback class of the Keras that ``tf.keras`` is (Keras 2 with TF_USE_LEGACY_KERAS)."""
    try:
        import tensorflow as tf
        return tf.keras.callbacks.Callback
    except Exception:  # pragma: no cover
        return object


_KerasCallback = _keras_callback_base()

_WHEN = {"epoch_end", "train_batch_end", "test_end", "train_end", "validation_end"}


class ReportCheckpointCallback(_KerasCallback):
    """Report Keras ``logs`` (all, one key, a list, or ``{report_key: log_key}``) and save the
    model as a checkpoint (``model.keras``) when ``checkpoint_on`` happens (default: every
    epoch end). Every rank saves (a collective under MultiWorkerMirroredStrategy); rank 0's
    file is the checkpoint."""

    CHECKPOINT_NAME = "model.keras"

    def __init__(self, checkpoint_on="epoch_end", report_metrics_on="epoch_end", metrics=None):
        super().__init__()
        self._ckpt_on = {checkpoint_on} if isinstance(checkpoint_on, str) else set(checkpoint_on)
        self._report_on = {report_metrics_on} if isinstance(report_metrics_on, str) else set(report_metrics_on)
        bad = (self._ckpt_on | self._report_on) - _WHEN
        if bad:
            raise ValueError(f"unknown events {sorted(bad)}; choose from {sorted(_WHEN)}")
        self._metrics = metrics

    def _select(self, logs):
        logs = {k: float(v) if hasattr(v, "__float__") else v for k, v in (logs or {}).items()}
        if self._metrics is None:
            return logs
        if isinstance(self._metrics, str):
            return {self._metrics: logs[self._metrics]}
        if isinstance(self._metrics, dict):
            return {k: logs[v] for k, v in self._metrics.items()}
        return {k: logs[k] for k in self._metrics}

    def _handle(self, logs, when):
        if when not in self._ckpt_on and when not in self._report_on:
            return
        metrics = self._select(logs)
        ckpt = None
        tmp = None
        if when in self._ckpt_on:
            # every rank saves (under MultiWorkerMirroredStrategy saving is a collective
            # operation); rank 0's files become the checkpoint
            tmp = tempfile.mkdtemp(prefix="mpiray-keras-")
            self.model.save(os.path.join(tmp, self.CHECKPOINT_NAME))
            if train.get_context().get_world_rank() == 0:
                ckpt = Checkpoint.from_directory(tmp)
        train.report(metrics, checkpoint=ckpt)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    def on_epoch_end(self, epoch, logs=None):
        self._handle(logs, "epoch_end")

    def on_train_batch_end(self, batch, logs=None):
        self._handle(logs, "train_batch_end")

    def on_test_end(self, logs=None):
        self._handle(logs, "test_end")
        self._handle(logs, "validation_end")

    def on_train_end(self, logs=None):
        self._handle(logs, "train_end")


ReportCallback = ReportCheckpointCallback
