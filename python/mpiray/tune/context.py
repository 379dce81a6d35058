"""``tune.get_context()`` (Ray's TuneContext)."""

from ..train._session import TrainContext, _require


class TuneContext(TrainContext):
    """The running trial's name, id, directory and resources."""


def get_context():
    return TuneContext(_require("tune.get_context()").context())
