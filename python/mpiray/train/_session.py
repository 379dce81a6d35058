"""The reporting session of the code running a trial (Tune) or a training worker (Train).

``train.report``/``tune.report``, ``get_checkpoint`` and ``get_context`` find the session of
the calling thread. mpiray runs many trials in one worker process (each on its own thread),
so the session is per thread; a thread the user starts inside a trial falls back to the only
session of the process when there is exactly one.

A library that runs user training code (Tune's trial runner, later Train's workers)
implements :class:`Session` and wraps the user's code in :func:`use_session`.
"""

import contextlib
import threading

_local = threading.local()
_all = set()
_all_lock = threading.Lock()


class Session:
    """What a runner provides to ``report``/``get_checkpoint``/``get_context``."""

    def report(self, metrics, checkpoint=None, checkpoint_dir_name=None):  # pragma: no cover
        raise NotImplementedError

    def get_checkpoint(self):  # pragma: no cover
        raise NotImplementedError

    def context(self):  # pragma: no cover
        """A dict with trial_name, trial_id, trial_dir, experiment_name, trial_resources,
        world_rank, world_size, local_rank, local_world_size, node_rank, metadata."""
        raise NotImplementedError


@contextlib.contextmanager
def use_session(session):
    prev = getattr(_local, "session", None)
    _local.session = session
    with _all_lock:
        _all.add(session)
    try:
        yield session
    finally:
        _local.session = prev
        with _all_lock:
            _all.discard(session)


def current_session():
    s = getattr(_local, "session", None)
    if s is not None:
        return s
    with _all_lock:
        if len(_all) == 1:
            return next(iter(_all))
    return None


def _require(what):
    s = current_session()
    if s is None:
        raise RuntimeError(f"{what} can only be called inside a Tune trial (a function passed to "
                           "tune.Tuner / tune.run) or a Train worker")
    return s


def report(metrics, *, checkpoint=None, checkpoint_dir_name=None):
    """Report a dict of metrics (and optionally a ``Checkpoint``) from the running trial or
    training worker. Returns at once: the result travels to the driver in a batch."""
    if not isinstance(metrics, dict):
        raise TypeError(f"report() expects a dict of metrics, got {type(metrics).__name__}")
    _require("report()").report(metrics, checkpoint=checkpoint, checkpoint_dir_name=checkpoint_dir_name)


def get_checkpoint():
    """The checkpoint to resume from (after a restore, a failure, a PBT exploit or a pause),
    or None."""
    return _require("get_checkpoint()").get_checkpoint()


class TrainContext:
    """Information about the running trial or worker (Ray's ``TrainContext``/``TuneContext``)."""

    def __init__(self, info):
        self._info = info

    def get_trial_name(self):
        return self._info.get("trial_name")

    def get_trial_id(self):
        return self._info.get("trial_id")

    def get_trial_dir(self):
        return self._info.get("trial_dir")

    def get_experiment_name(self):
        return self._info.get("experiment_name")

    def get_trial_resources(self):
        return self._info.get("trial_resources")

    def get_metadata(self):
        return dict(self._info.get("metadata") or {})

    def get_world_size(self):
        return self._info.get("world_size", 1)

    def get_world_rank(self):
        return self._info.get("world_rank", 0)

    def get_local_rank(self):
        return self._info.get("local_rank", 0)

    def get_local_world_size(self):
        return self._info.get("local_world_size", 1)

    def get_node_rank(self):
        return self._info.get("node_rank", 0)

    def get_storage(self):
        return self._info.get("storage")


def get_context():
    """The context of the running trial or worker."""
    return TrainContext(_require("get_context()").context())
