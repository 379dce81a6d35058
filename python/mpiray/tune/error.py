"""Tune's errors (Ray's ``ray.tune.error``)."""


class TuneError(Exception):
    """A problem of the experiment itself (not of one trial)."""


class TuneStopTrialError(TuneError):
    pass
