"""Search algorithms (Ray's ``ray.tune.search``)."""

from .basic_variant import BasicVariantGenerator
from .concurrency_limiter import ConcurrencyLimiter
from .repeater import Repeater
from .sample import grid_search
from .searcher import SearchAlgorithm, SearchGenerator, Searcher

_SEARCHERS = {"variant_generator": BasicVariantGenerator, "random": BasicVariantGenerator}


def _lazy(name):
    if name == "optuna":
        from .optuna import OptunaSearch
        return OptunaSearch
    if name == "hyperopt":
        from .hyperopt import HyperOptSearch
        return HyperOptSearch
    return _SEARCHERS[name]


def create_searcher(search_alg, **kwargs):
    """A searcher by name: ``"variant_generator"``, ``"random"``, ``"optuna"``, ``"hyperopt"``."""
    names = sorted(list(_SEARCHERS) + ["optuna", "hyperopt"])
    if search_alg not in names:
        raise ValueError(f"The `search_alg` argument must be one of {names}. Got: {search_alg}")
    return _lazy(search_alg)(**kwargs)


__all__ = ["Searcher", "SearchAlgorithm", "SearchGenerator", "BasicVariantGenerator", "ConcurrencyLimiter",
           "Repeater", "grid_search", "create_searcher"]
