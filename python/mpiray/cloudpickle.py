"""``ray.cloudpickle``: the serializer mpiray ships functions and classes with (the
``cloudpickle`` package; Ray vendors a copy under this name)."""

from cloudpickle import *  # noqa: F401,F403
from cloudpickle import dump, dumps, load, loads  # noqa: F401
