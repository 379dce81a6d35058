"""Reading what a trial left in its directory."""

import json
import os

from ..train._checkpoint import Checkpoint
from ..train._result import Result


def read_results(path):
    out = []
    try:
        with open(os.path.join(path, "result.json")) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return out


def latest_checkpoint(path):
    names = sorted(n for n in os.listdir(path) if n.startswith("checkpoint_") and
                   os.path.isdir(os.path.join(path, n)))
    return Checkpoint(os.path.join(path, names[-1])) if names else None


def load_result_from_dir(path):
    if not os.path.isdir(path):
        raise RuntimeError(f"Trial folder {path} doesn't exist!")
    results = read_results(path)
    err = None
    if os.path.exists(os.path.join(path, "error.txt")):
        with open(os.path.join(path, "error.txt")) as f:
            err = RuntimeError(f.read())
    return Result(metrics=results[-1] if results else {}, checkpoint=latest_checkpoint(path),
                  error=err, path=path)
