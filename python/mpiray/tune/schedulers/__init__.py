"""Trial schedulers (Ray's ``ray.tune.schedulers``)."""

from .async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from .hyperband import HyperBandScheduler
from .median_stopping_rule import MedianStoppingRule
from .pbt import PopulationBasedTraining
from .resource_changing_scheduler import DistributeResources, DistributeResourcesToTopJob, ResourceChangingScheduler
from .trial_scheduler import FIFOScheduler, TrialScheduler

_SCHEDULERS = {
    "fifo": FIFOScheduler, "async_hyperband": AsyncHyperBandScheduler, "asynchyperband": AsyncHyperBandScheduler,
    "asha": ASHAScheduler, "hyperband": HyperBandScheduler, "median_stopping_rule": MedianStoppingRule,
    "medianstopping": MedianStoppingRule, "pbt": PopulationBasedTraining,
    "resource_changing": ResourceChangingScheduler,
}


def create_scheduler(scheduler, **kwargs):
    """A scheduler by name (``"asha"``, ``"pbt"``, ...)."""
    key = str(scheduler).lower()
    if key not in _SCHEDULERS:
        raise ValueError(f"The `scheduler` argument must be one of {sorted(_SCHEDULERS)}. Got: {scheduler}")
    return _SCHEDULERS[key](**kwargs)


__all__ = ["TrialScheduler", "FIFOScheduler", "AsyncHyperBandScheduler", "ASHAScheduler",
           "HyperBandScheduler", "MedianStoppingRule", "PopulationBasedTraining",
           "ResourceChangingScheduler", "DistributeResources", "DistributeResourcesToTopJob",
           "create_scheduler"]
