"""Trial schedulers' base (Ray's ``TrialScheduler``) and FIFO."""

from ..search.searcher import check_kwargs, check_mode


class TrialScheduler:
    """Decides, per result, whether a trial goes on (CONTINUE), stops early (STOP) or pauses
    (PAUSE: its actor stops; it resumes later from its latest checkpoint)."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    _metric = None
    _mode = None
    _supports_buffered_results = True

    @property
    def metric(self):
        return self._metric

    @property
    def mode(self):
        return self._mode

    def set_search_properties(self, metric, mode, **spec):
        if self._metric and metric and self._metric != metric:
            return False
        if self._mode and mode and self._mode != mode:
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def on_trial_add(self, tune_controller, trial):
        pass

    def on_trial_error(self, tune_controller, trial):
        pass

    def on_trial_result(self, tune_controller, trial, result):
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        pass

    def on_trial_remove(self, tune_controller, trial):
        pass

    def choose_trial_to_run(self, tune_controller):
        """The next trial to start (as Ray's FIFO): the first PENDING one, else the first
        PAUSED one; None when there is none."""
        for status in ("PENDING", "PAUSED"):
            for t in tune_controller.get_trials():
                if t.status == status and not _has_actor(tune_controller, t):
                    return t
        return None

    def debug_string(self):
        return ""

    def save(self, checkpoint_path):
        import pickle
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path):
        import pickle
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    def _score(self, result):
        """The metric with its sign: larger is better."""
        v = result.get(self._metric)
        if v is None:
            return None
        return v if self._mode == "max" else -v

    def __str__(self):
        return type(self).__name__


class FIFOScheduler(TrialScheduler):
    """Runs every trial to completion in the order they were added."""

    def __init__(self, **kwargs):
        check_kwargs("FIFOScheduler", kwargs)


def _has_actor(tune_controller, trial):
    """Whether the controller already started an actor for ``trial`` (it is PENDING until
    the actor runs)."""
    is_live = getattr(tune_controller, "is_live", None)
    return bool(is_live and is_live(trial))


def _percentile(values, q):
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
