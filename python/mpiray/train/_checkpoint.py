"""``Checkpoint``: a directory of files a trial or a training run saved (Ray's
``ray.train.Checkpoint``, local and shared file systems only).

A checkpoint is only a path. ``train.report(..., checkpoint=Checkpoint.from_directory(d))``
copies ``d`` into the run's storage (the trial directory), so the reporter may delete ``d``
afterwards, exactly as in Ray. On a cluster the storage path must be a file system every node
sees (the usual ``/scratch`` or home directory), as Ray requires without cloud storage.
"""

import contextlib
import json
import os
import shutil
import tempfile
import uuid

_METADATA_FILE = ".metadata.json"


class Checkpoint:
    """A directory of checkpoint files (``path``), with an optional JSON metadata dict."""

    def __init__(self, path, filesystem=None):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"Checkpoint path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        self.filesystem = filesystem  # accepted for Ray compatibility; local paths only

    @classmethod
    def from_directory(cls, path):
        """A checkpoint of the files in directory ``path``."""
        if not os.path.isdir(path):
            raise ValueError(f"Checkpoint.from_directory: {path!r} is not a directory")
        return cls(os.path.abspath(os.fspath(path)))

    def to_directory(self, path=None):
        """Copy the checkpoint's files to ``path`` (default: a new temporary directory) and
        return that directory."""
        dest = os.fspath(path) if path is not None else os.path.join(
            tempfile.gettempdir(), f"checkpoint_tmp_{uuid.uuid4().hex}")
        os.makedirs(dest, exist_ok=True)
        if os.path.abspath(dest) != os.path.abspath(self.path):
            shutil.copytree(self.path, dest, dirs_exist_ok=True)
        return dest

    @contextlib.contextmanager
    def as_directory(self):
        """A local directory with the checkpoint's files (the checkpoint's own directory:
        nothing is copied for local storage). Do not modify the files."""
        yield self.path

    def get_metadata(self):
        """The metadata dict saved with ``set_metadata``/``update_metadata`` (empty if none)."""
        try:
            with open(os.path.join(self.path, _METADATA_FILE)) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def set_metadata(self, metadata):
        with open(os.path.join(self.path, _METADATA_FILE), "w") as f:
            json.dump(metadata, f)

    def update_metadata(self, metadata):
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    def __eq__(self, other):
        return isinstance(other, Checkpoint) and os.path.abspath(other.path) == os.path.abspath(self.path)

    def __hash__(self):
        return hash(os.path.abspath(self.path))

    def __repr__(self):
        return f"Checkpoint(filesystem=local, path={self.path})"

    def __fspath__(self):
        return self.path
